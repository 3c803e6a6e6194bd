//! The admin listener (`--admin-listen`, loopback by default): `GET /metrics` in Prometheus'
//! text format. Nothing a tenant's client reaches: it is a separate socket, so it is never on the
//! public address unless the operator puts it there.

use super::metrics::sample_process;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Connections the admin listener serves at once.
const MAX_ADMIN_CONNECTIONS: usize = 16;

/// The bound admin listener.
pub struct Admin {
    listener: TcpListener,
    metrics: PrometheusHandle,
}

impl Admin {
    /// Binds `addr`; a port already taken is an error naming it.
    pub async fn bind(addr: SocketAddr, metrics: PrometheusHandle) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the admin listener --admin-listen {addr}"))?;
        Ok(Self { listener, metrics })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until the process ends.
    pub async fn serve(self) {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let Ok((stream, _)) = self.listener.accept().await else { continue };
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let response: Result<Response<Full<Bytes>>, http::Error> = match (req.method(), req.uri().path()) {
                            (&Method::GET, "/metrics") => {
                                sample_process();
                                Response::builder()
                                    .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(metrics.render())))
                            }
                            (_, path) => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from(
                                    serde_json::json!({"error": format!("no admin endpoint {path}; try GET /metrics")}).to_string(),
                                ))),
                        };
                        response
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
