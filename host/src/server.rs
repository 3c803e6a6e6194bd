//! The HTTP front: route a request, give it a fresh instance, return what the guest answered.
//!
//! Failures the client caused are 4xx; failures of the guest (trap, deadline, memory limit)
//! are 5xx for that request alone, logged with the component id. All errors are JSON
//! `{"error": "..."}`.

use crate::app::{App, EPOCH_TICK, LoadedComponent};
use crate::instance::InstanceState;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wasmtime::AsContextMut;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::Prepared;

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

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until the process ends.
    pub async fn serve(self) -> Result<()> {
        // An OS thread, not a task: guests that never yield must not be able to stop the clock.
        let engine = self.app.engine.weak();
        std::thread::Builder::new().name("spindle-epoch".into()).spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
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
                    async move { Ok::<_, std::convert::Infallible>(handle(app, req, client).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%client, "connection closed: {e}");
                }
            });
        }
    }
}

/// A JSON error response.
pub fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn handle(app: Arc<App>, req: Request<Incoming>, client: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if let Some(response) = crate::protocol::serve(&app, req.method(), &path) {
        return response;
    }
    let Some(matched) = app.router.route(&path) else {
        return json_error(StatusCode::NOT_FOUND, format!("no route matches {path}"));
    };
    let Some(component) = app.components.get(matched.component).cloned() else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("route {} has no component", matched.route));
    };
    let limit = component.limits.max_body_bytes;
    let (mut parts, body) = req.into_parts();
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds the {limit}-byte limit"));
    }
    let body_timeout = component.limits.body_timeout;
    let body = match tokio::time::timeout(body_timeout, Limited::new(body, limit).collect()).await {
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {} ms", body_timeout.as_millis()),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds the {limit}-byte limit"));
        }
        Ok(Err(e)) => return json_error(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")),
    };

    let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let full_url = format!("http://{host}{path_and_query}");
    if let Ok(uri) = full_url.parse() {
        parts.uri = uri;
    }
    for (name, value) in [
        ("spin-full-url", full_url.as_str()),
        ("spin-path-info", matched.path_info.as_str()),
        ("spin-matched-route", matched.route.as_str()),
        ("spin-component-route", matched.route.trim_end_matches("/...")),
        ("spin-raw-component-route", matched.route.as_str()),
        ("spin-base-path", "/"),
        ("spin-client-addr", &client.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            parts.headers.insert(name, value);
        }
    }
    let request = Request::from_parts(parts, Full::new(body));

    let Ok(_slot) = component.admission.enter().await else {
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "component '{}' is at its limit of {} running and {} queued requests; retry shortly",
                component.id, component.limits.max_concurrent, component.limits.max_queued
            ),
        );
        response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let deadline = component.limits.timeout;
    match tokio::time::timeout(deadline, run_guest(&app, &component, request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::error!(component = %component.id, "guest failed: {e:?}");
            let cause = match e.chain().find_map(|c| c.downcast_ref::<wasmtime::Trap>()) {
                Some(trap) => format!("trapped: {trap}"),
                None => format!("failed: {}", e.root_cause()),
            };
            json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("component '{}' {cause}", component.id))
        }
        Err(_) => {
            tracing::warn!(component = %component.id, "request exceeded its {deadline:?} deadline");
            json_error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("component '{}' did not answer within its {} ms deadline", component.id, deadline.as_millis()),
            )
        }
    }
}

/// Instantiates the component in a fresh store, runs its handler and collects the response.
async fn run_guest(app: &App, component: &LoadedComponent, request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>> {
    let pre = app.instance_pre(component).await?;
    let mut store = app.new_store(component)?;
    let proxy = pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from).context("instantiating")?;
    let request = request.map(|body| body.map_err(|never| match never {}).boxed_unsync());
    let (tx, rx) = futures::channel::oneshot::channel();
    let prepared = Prepared::new(store.as_context_mut(), &proxy, request, InstanceState::http, tx)?;
    let response = store
        .run_concurrent(async |accessor| -> Result<Response<Full<Bytes>>> {
            let (ran, response) = futures::join!(prepared.run(accessor, std::future::pending::<()>()), async {
                let response = rx.await.context("the guest returned no response")??;
                let (parts, body) = response.into_parts();
                let body = body.collect().await.map_err(|e| anyhow::anyhow!("reading the guest's response body: {e:?}"))?;
                anyhow::Ok(Response::from_parts(parts, Full::new(body.to_bytes())))
            });
            ran?;
            response
        })
        .await??;
    Ok(response)
}

impl Server {
    /// The app's routes, as `(route, component)`.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.app.router.routes().map(|(r, c)| (r, c.to_string())).collect()
    }
}
