//! The listener and its connections: accept (at most `--max-connections` open at once), TLS
//! when configured (rustls, ALPN `h2` and `http/1.1`), one hyper connection task each speaking
//! HTTP/1.1 or HTTP/2 (prior knowledge in clear text), every request handed to
//! [`super::request::handle`]; and the drain at shutdown: stop accepting, let requests in flight
//! finish, close idle connections.

use super::request;
use crate::runtime::{App, LiveApp};
use crate::telemetry::audit::AuditLog;
use anyhow::{Context, Result, bail};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// While draining, how long a connection that has not sent a request yet gets to send one.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// HTTP/2 streams (requests) one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

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
    audit: Option<Arc<AuditLog>>,
    tls: Option<TlsAcceptor>,
    listener: TcpListener,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(app: App, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let connections = Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS));
        Ok(Self {
            live: Arc::new(LiveApp::new(app)),
            audit: None,
            tls: None,
            listener,
            connections,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Keeps at most `n` connections open; the next is accepted when one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self.connections = Arc::new(Semaphore::new(self.max_connections));
        self
    }

    /// Speaks TLS on the listener with `acceptor` ([`tls_acceptor`]).
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Writes one audit line per request to `log`.
    pub fn audit_log(mut self, log: AuditLog) -> Self {
        self.audit = Some(Arc::new(log));
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
            let audit = self.audit.clone();
            let tls = self.tls.clone();
            let draining = draining.clone();
            tokio::spawn(async move {
                let _open = open;
                let _counted = OpenConnection::new();
                let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let counted = requests.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = live.current();
                    let audit = audit.clone();
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move { Ok::<_, std::convert::Infallible>(request::handle(&app, audit.as_deref(), req, client).await) }
                });
                let closed = match tls {
                    None => serve_connection(TokioIo::new(stream), service, draining, requests).await,
                    Some(tls) => match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), service, draining, requests).await,
                        Ok(Err(e)) => return tracing::debug!(%client, "TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(%client, "TLS handshake timed out"),
                    },
                };
                if let Err(e) = closed {
                    tracing::debug!(%client, "connection closed: {e}");
                }
            });
        }
        let Server { live, listener, connections, max_connections, .. } = self;
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

/// Serves one connection, HTTP/1.1 or HTTP/2 (by ALPN over TLS, by prior knowledge in clear
/// text), until it closes; once `draining` turns true, finishes the requests in flight and
/// closes.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    mut draining: tokio::sync::watch::Receiver<bool>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = super::response::HostResponse> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        closed = conn.as_mut() => closed,
        () = async {
            drop(draining.wait_for(|d| *d).await);
            // A connection that has not had its first request read yet may have one on the way
            // (sent before the drain began): closing it now would lose it.
            let began = tokio::time::Instant::now();
            while requests.load(std::sync::atomic::Ordering::Relaxed) == 0 && began.elapsed() < FIRST_REQUEST_WAIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// `--tls-cert` and `--tls-key`: a rustls server config offering `h2` and `http/1.1`.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}: not a readable PEM file", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("--tls-key {}: no PEM private key in it", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
