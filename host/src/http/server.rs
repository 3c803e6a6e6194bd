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
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// While draining, how long a connection that has not sent a request yet gets to send one.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// HTTP/2 streams (requests) one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may wait on its client, each way.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No request open on it (HTTP/1.1 keep-alive, HTTP/2), or nothing sent on it yet.
    pub idle: Duration,
    /// A request's line and headers, from their first byte (slowloris).
    pub header: Duration,
    /// A write of the response that makes no progress: a client that stops reading.
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { idle: Duration::from_secs(60), header: Duration::from_secs(30), send: Duration::from_secs(60) }
    }
}

/// Connections the kernel queues while all `--max-connections` are taken (capped by
/// `net.core.somaxconn`); past it, new clients' SYNs are dropped and retried seconds later.
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

/// HTTP/2 pings to find dead peers, and how long a ping may go unanswered.
const HTTP2_PING_EVERY: Duration = Duration::from_secs(20);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once by default; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Counts an open connection in the gauge while it lives, and returns the heap a burst of
/// connections leaves behind once most of it has gone.
struct OpenConnection;

/// Connections open now, and the most open since the heap was last trimmed.
static OPEN: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// A burst smaller than this is not worth a trim.
const TRIM_AFTER_PEAK: usize = 256;
/// A trim is pending or running; the next waits for it.
static TRIM_PENDING: AtomicBool = AtomicBool::new(false);
/// How long a trim waits for the rest of a burst to close; also the least time between two
/// trims, so clients that open and close bursts on purpose get at most about one a second.
const TRIM_DELAY: Duration = Duration::from_secs(1);

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!(crate::telemetry::metrics::OPEN_CONNECTIONS).increment(1.0);
        let open = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        PEAK.fetch_max(open, Ordering::Relaxed);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::metrics::OPEN_CONNECTIONS).decrement(1.0);
        let open = OPEN.fetch_sub(1, Ordering::Relaxed) - 1;
        let peak = PEAK.load(Ordering::Relaxed);
        // Once three quarters of a burst's connections have closed, the close that gets here
        // first while no trim is pending resets the peak and schedules one.
        let due = peak >= TRIM_AFTER_PEAK && open <= peak / 4 && !TRIM_PENDING.load(Ordering::Relaxed);
        if due
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && PEAK.compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            TRIM_PENDING.store(true, Ordering::Relaxed);
            runtime.spawn(async {
                tokio::time::sleep(TRIM_DELAY).await;
                let _ = tokio::task::spawn_blocking(trim_heap).await;
                TRIM_PENDING.store(false, Ordering::Relaxed);
            });
        }
    }
}

/// glibc's malloc keeps what a burst's connections freed (their buffers, some tens of KiB
/// each) in its per-thread arenas for reuse, so RSS stays at the burst's height: 5,000
/// connections left ~165 MiB behind. `malloc_trim` hands the free pages of every arena back.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes each arena's lock itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A bound listener and the app behind it.
pub struct Server {
    live: Arc<LiveApp>,
    audit: Option<Arc<AuditLog>>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    listener: TcpListener,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]) with a listen queue
    /// of `backlog` connections.
    pub async fn bind(app: App, addr: SocketAddr, backlog: u32) -> Result<Self> {
        let listener = listen(addr, backlog).with_context(|| format!("binding {addr}"))?;
        let connections = Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS));
        Ok(Self {
            live: Arc::new(LiveApp::new(app)),
            audit: None,
            tls: None,
            timeouts: Timeouts::default(),
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

    /// How long connections may wait on their clients.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
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
            let timeouts = self.timeouts;
            let draining = draining.clone();
            tokio::spawn(async move {
                let _open = open;
                let _counted = OpenConnection::new();
                let activity = Arc::new(Activity::default());
                let counted = activity.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = live.current();
                    let audit = audit.clone();
                    let open = counted.request_began();
                    async move {
                        let response = request::handle(&app, audit.as_deref(), req, client).await;
                        drop(open);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let closed = match tls {
                    None => {
                        // Nothing sent yet: no protocol is chosen, so no timeout of hyper's runs.
                        let mut first = [0u8; 1];
                        let mut stopping = draining.clone();
                        let arrived = tokio::select! {
                            peeked = tokio::time::timeout(timeouts.idle.min(timeouts.header), stream.peek(&mut first)) => matches!(peeked, Ok(Ok(1..))),
                            () = async {
                                drop(stopping.wait_for(|d| *d).await);
                                tokio::time::sleep(FIRST_REQUEST_WAIT).await;
                            } => false,
                        };
                        if !arrived {
                            return tracing::debug!(%client, "closed: nothing sent in time");
                        }
                        let stream = SendDeadline::new(stream, timeouts.send);
                        serve_connection(TokioIo::new(stream), None, service, draining, activity, timeouts).await
                    }
                    Some(tls) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(SendDeadline::new(stream, timeouts.send))).await {
                            Ok(Ok(stream)) => {
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                serve_connection(TokioIo::new(stream), Some(h2), service, draining, activity, timeouts).await
                            }
                            Ok(Err(e)) => return tracing::debug!(%client, "TLS handshake failed: {e}"),
                            Err(_) => return tracing::debug!(%client, "TLS handshake timed out"),
                        }
                    }
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

/// What a connection is doing: requests begun, open now, and when the last one ended.
#[derive(Default)]
struct Activity {
    begun: AtomicUsize,
    open: AtomicUsize,
    /// When it last went idle, as milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: OnceLock<tokio::time::Instant>,
}

/// Counts a request as open while it lives.
struct OpenRequest(Arc<Activity>);

impl Activity {
    fn request_began(self: &Arc<Self>) -> OpenRequest {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(self.clone())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(tokio::time::Instant::now).elapsed().as_millis() as u64
    }

    /// How long no request has been open, or zero while one is.
    fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2 (`h2`: as TLS's ALPN chose; `None`: by the
/// client's first bytes, HTTP/2 with prior knowledge), until it closes. A connection with no
/// request open for `timeouts.idle` is closed; once `draining` turns true, the requests in
/// flight finish and it closes.
async fn serve_connection<I, S>(
    io: I,
    h2: Option<bool>,
    service: S,
    mut draining: tokio::sync::watch::Receiver<bool>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = super::response::Reply> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    activity.now_ms();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match h2 {
        Some(true) => builder.http2_only(),
        Some(false) => builder.http1_only(),
        None => builder,
    };
    builder.http1().timer(TokioTimer::new()).header_read_timeout(timeouts.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .keep_alive_interval(HTTP2_PING_EVERY)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let idle = async {
        loop {
            let left = timeouts.idle.saturating_sub(activity.idle_for());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.max(Duration::from_millis(100))).await;
        }
    };
    let drained = async {
        drop(draining.wait_for(|d| *d).await);
        // A connection that has not had its first request read yet may have one on the way
        // (sent before the drain began): closing it now would lose it.
        let began = tokio::time::Instant::now();
        while activity.begun.load(Ordering::Relaxed) == 0 && began.elapsed() < FIRST_REQUEST_WAIT {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        closed = conn.as_mut() => closed,
        () = drained => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = idle => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// A listening socket on `addr` with a queue of `backlog` connections (tokio's own `bind` asks
/// for 128, which a burst of clients past `--max-connections` overflows).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A connection's stream whose writes fail once one has made no progress for `limit`: a client
/// that stops reading its response cannot hold the connection, its slot and the response's
/// memory for longer (the idle timeout's graceful close waits for the write too).
struct SendDeadline<S> {
    stream: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SendDeadline<S> {
    fn new(stream: S, limit: Duration) -> Self {
        Self { stream, limit, stalled: None }
    }

    /// After a write returned `Pending`: waits on the deadline, or fails once it passed.
    fn stall<T>(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing of its response for {} s", limit.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, polled: Poll<std::io::Result<T>>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progressed(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progressed(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.progressed(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.progressed(polled, cx)
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
