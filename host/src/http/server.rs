//! The listener and its connections: accept, one hyper HTTP/1.1 connection task each, every
//! request handed to [`super::request::handle`].

use super::request;
use crate::runtime::App;
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener and the app behind it.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(app: App, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        Ok(Self { app: Arc::new(app), listener })
    }

    /// The app being served.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The app's routes, as `(route, component)`.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.app.router().routes().map(|(r, c)| (r, c.to_string())).collect()
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<()> {
        loop {
            let (stream, client) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%client, "TCP_NODELAY: {e}");
            }
            let app = self.app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, std::convert::Infallible>(request::handle(&app, req, client).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%client, "connection closed: {e}");
                }
            });
        }
    }
}
