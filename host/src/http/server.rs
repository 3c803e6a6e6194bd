//! The listener and its connections: accept (at most `--max-connections` open at once), one hyper
//! HTTP/1.1 connection task each, every request handed to [`super::request::handle`].

use super::request;
use crate::runtime::App;
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once by default; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// A bound listener and the app behind it.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    connections: Arc<Semaphore>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(app: App, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        Ok(Self { app: Arc::new(app), listener, connections: Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS)) })
    }

    /// Keeps at most `n` connections open; the next is accepted when one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.connections = Arc::new(Semaphore::new(n.max(1)));
        self
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
            let open = self.connections.clone().acquire_owned().await.context("the connection limit closed")?;
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
                let _open = open;
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
