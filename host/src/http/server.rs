//! The listener and its connections: accept (at most `--max-connections` open at once), one hyper
//! HTTP/1.1 connection task each, every request handed to [`super::request::handle`]; and the
//! drain at shutdown: stop accepting, let requests in flight finish, close idle connections.

use super::request;
use crate::runtime::{App, LiveApp};
use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// While draining, how long a connection that has not sent a request yet gets to send one.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// Connections open at once by default; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Counts an open connection in the gauge while it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!(crate::telemetry::metrics::OPEN_CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::metrics::OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// A bound listener and the app behind it.
pub struct Server {
    live: Arc<LiveApp>,
    listener: TcpListener,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(app: App, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let connections = Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS));
        Ok(Self { live: Arc::new(LiveApp::new(app)), listener, connections, max_connections: DEFAULT_MAX_CONNECTIONS })
    }

    /// Keeps at most `n` connections open; the next is accepted when one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self.connections = Arc::new(Semaphore::new(self.max_connections));
        self
    }

    /// The app new requests get now.
    pub fn app(&self) -> Arc<App> {
        self.live.current()
    }

    /// The app being served, to reload it.
    pub fn live(&self) -> Arc<LiveApp> {
        self.live.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The app's routes, as `(route, component)`.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.app().router().routes().map(|(r, c)| (r, c.to_string())).collect()
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<()> {
        self.serve_until(std::future::pending(), Duration::ZERO).await
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting (new connections are
    /// refused), answers readiness false, lets every request in flight finish and closes each
    /// connection after its current request, for up to `grace`; then returns. The app, and its
    /// staging folders, go with the last holder of [`Server::live`] (at the latest when the
    /// runtime ends).
    pub async fn serve_until(self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) -> Result<()> {
        let (drain, draining) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let open = tokio::select! {
                () = &mut shutdown => break,
                open = self.connections.clone().acquire_owned() => open.context("the connection limit closed")?,
            };
            let (stream, client) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%client, "TCP_NODELAY: {e}");
            }
            let live = self.live.clone();
            let mut draining = draining.clone();
            tokio::spawn(async move {
                let _open = open;
                let _counted = OpenConnection::new();
                let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let counted = requests.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = live.current();
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move { Ok::<_, std::convert::Infallible>(request::handle(&app, req, client).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let closed = tokio::select! {
                    closed = conn.as_mut() => closed,
                    () = async {
                        drop(draining.wait_for(|d| *d).await);
                        // A connection that has not had its first request read yet may have one
                        // on the way (sent before the drain began): closing it now would lose it.
                        let began = tokio::time::Instant::now();
                        while requests.load(std::sync::atomic::Ordering::Relaxed) == 0 && began.elapsed() < FIRST_REQUEST_WAIT {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    } => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = closed {
                    tracing::debug!(%client, "connection closed: {e}");
                }
            });
        }
        let Server { live, listener, connections, max_connections } = self;
        live.start_draining();
        drop(listener);
        let _ = drain.send(true);
        let in_flight = max_connections - connections.available_permits();
        tracing::info!("draining: {in_flight} connections open, up to {} s for their requests", grace.as_secs());
        let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, connections.acquire_many(all)).await.is_err() {
            tracing::warn!(
                "{} connections still open after {} s; stopping anyway",
                max_connections - connections.available_permits(),
                grace.as_secs()
            );
        }
        drop(live);
        Ok(())
    }
}
