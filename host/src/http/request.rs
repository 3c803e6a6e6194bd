//! One HTTP request: the host's own endpoints, then the route, a declared body size over the
//! limit refused at once, Spin's request headers, and the component's answer (its body read once
//! the request is admitted), or the status for why there is none.
//!
//! Failures the client caused are 4xx; failures of the guest (trap, deadline, memory limit)
//! are 5xx for that request alone, logged with the component id. All errors are JSON
//! `{"error": "..."}`.

use super::response::{HostResponse, Reply, json_error};
use super::{grpc, protocol};
use crate::manifest::RouteMatch;
use crate::runtime::access::{Refused, Tokens};
use crate::runtime::invoke::{BodyBytes, LoadedModels};
use crate::runtime::{App, InvokeError, LoadedComponent};
use crate::telemetry::audit::{AuditLog, AuditRecord, rfc3339};
use crate::telemetry::metrics;
use crate::telemetry::request_id;
use crate::telemetry::traces::clip;
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::Instrument;
use tracing::field::Empty;

/// Answers one request, in a `request` span carrying its id (the client's `x-request-id`, or a
/// new one, returned either way and passed to the guest), route, component, placement, status
/// and duration; then writes its audit line, if there is an audit log.
pub async fn handle(app: &App, audit: Option<&AuditLog>, mut req: Request<Incoming>, client: SocketAddr) -> Reply {
    let started = Instant::now();
    let arrived = std::time::SystemTime::now();
    let id = request_id::take_or_make(req.headers().get(request_id::HEADER));
    let id_header = HeaderValue::from_str(&id).ok();
    if let Some(value) = &id_header {
        req.headers_mut().insert(request_id::HEADER, value.clone());
    }
    let path = req.uri().path().to_owned();
    let grpc = grpc::is_call(&req);
    let malformed = malformed(&req);
    // Routed before the span exists, so that it is made with its fields rather than filled in;
    // a gRPC call's route is known once its message is read.
    let matched = if grpc || malformed.is_some() { None } else { app.router().route(&path) };
    let component = matched.as_ref().and_then(|m| app.component(m.component));
    let placement = component.map(|c| c.placement());
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = req.method().as_str(),
        path = clip(&path),
        principal = Empty,
        route = matched.as_ref().map(|m| m.route.as_str()),
        component = component.map(|c| c.id.as_str()),
        model = path.strip_prefix("/v2/models/").and_then(|rest| rest.split('/').next()).map(clip),
        engine = placement.map(|p| p.backend.name()),
        device = placement.map(|p| p.device.as_str()),
        status = Empty,
        duration_us = Empty,
    );
    // Written even if the client goes away (the future is dropped): as status 499, cancelled.
    let mut pending = audit.map(|audit| PendingAudit {
        audit,
        arrived,
        started,
        request_id: id.clone(),
        client,
        method: req.method().clone(),
        path: path.clone(),
        route: matched.as_ref().map(|m| m.route.clone()),
        component: component.map(|c| &**c),
        done: false,
    });
    let mut caller = Caller { client, span: &span, started, principal: None };
    let mut response = match (malformed, grpc) {
        (Some((status, why)), _) => {
            let refused = json_error(status, why);
            metrics::host_request_answered(refused.status(), started.elapsed());
            refused.map(Either::Left)
        }
        (None, true) => grpc::serve(app, req, &mut caller).instrument(span.clone()).await,
        (None, false) => answer(app, req, &path, matched, &mut caller).instrument(span.clone()).await.map(Either::Left),
    };
    let principal = caller.principal;
    if let Some(forwarded) = response.extensions_mut().remove::<grpc::Forwarded>()
        && let Some(pending) = &mut pending
    {
        pending.route = Some(forwarded.route);
        pending.component = app.component(&forwarded.component).map(|c| &**c);
    }
    // A gRPC reply is an HTTP 200 whatever its status; the span and the audit line say its status.
    let status = if grpc { grpc::http_status(&response).as_u16() } else { response.status().as_u16() };
    let took = started.elapsed();
    span.record("status", i64::from(status)).record("duration_us", took.as_micros() as i64);
    tracing::debug!(parent: &span, status, "answered");
    if let Some(value) = id_header {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    if let Some(pending) = &mut pending {
        let models = response.extensions_mut().remove::<LoadedModels>().unwrap_or_default().0;
        let bytes_in = response.extensions_mut().remove::<BodyBytes>().map_or(0, |b| b.0);
        let sent = response.extensions_mut().remove::<grpc::SentBytes>().map(|b| b.0);
        let bytes_out = sent.or(http_body::Body::size_hint(response.body()).exact()).unwrap_or(0);
        pending.write(principal.as_deref(), status, &models, bytes_in, bytes_out, false);
    }
    response
}

/// Why a request's head is unfit to route, beyond what hyper refuses, and its status: a Host
/// header missing from HTTP/1.1 (RFC 9112 §3.2), given twice, or not a `host[:port]`; a `.` or
/// `..` segment in the path (also percent-encoded), which a proxy in front would resolve to
/// another route than the one the path names here (400); chunked applied twice (400); or a
/// transfer coding besides chunked, which hyper does not decode (501, as RFC 9112 §6.1 asks).
fn malformed<B>(req: &Request<B>) -> Option<(StatusCode, String)> {
    // RFC 9110 §5.6.1: empty list elements are ignored.
    let codings: Vec<&[u8]> = req
        .headers()
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(coding) = codings.iter().find(|c| !c.eq_ignore_ascii_case(b"chunked")) {
        let why = format!(
            "the transfer coding {:?} is not supported: send the body chunked, or with a Content-Length",
            clip(&String::from_utf8_lossy(coding))
        );
        return Some((StatusCode::NOT_IMPLEMENTED, why));
    }
    if codings.len() > 1 {
        // hyper would undo one, and hand the function the other's framing as its body.
        return Some((StatusCode::BAD_REQUEST, "the body is chunked more than once: chunked goes once, last (RFC 9112 §6.1)".into()));
    }
    head_problem(req).map(|why| (StatusCode::BAD_REQUEST, why))
}

fn head_problem<B>(req: &Request<B>) -> Option<String> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == http::Version::HTTP_11 => return Some("an HTTP/1.1 request needs a Host header".into()),
        (None, _) => {}
        (Some(_), Some(_)) => return Some("a request carries one Host header, not several".into()),
        (Some(host), None) => {
            if host.to_str().ok().and_then(|h| h.parse::<http::uri::Authority>().ok()).is_none() {
                return Some(format!("the Host header {:?} is not a host[:port]", clip(&String::from_utf8_lossy(host.as_bytes()))));
            }
        }
    }
    // `%2e%2e` is the longest spelling; longer segments are not looked at twice.
    let dot = |segment: &str| segment.len() <= 6 && matches!(segment.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..");
    let path = req.uri().path();
    path.split('/').any(dot).then(|| format!("the path {} has a '.' or '..' segment: send the path it stands for", clip(path)))
}

/// What the audit line of a request in progress says, whatever happens to it.
struct PendingAudit<'a> {
    audit: &'a AuditLog,
    arrived: std::time::SystemTime,
    started: Instant,
    request_id: String,
    client: SocketAddr,
    method: http::Method,
    path: String,
    route: Option<String>,
    component: Option<&'a LoadedComponent>,
    done: bool,
}

impl PendingAudit<'_> {
    fn write(&mut self, principal: Option<&str>, status: u16, models: &[String], bytes_in: u64, bytes_out: u64, cancelled: bool) {
        self.done = true;
        let placement = self.component.map(|c| c.placement());
        self.audit.record(&AuditRecord {
            time: rfc3339(self.arrived),
            request_id: &self.request_id,
            principal,
            client: self.client.to_string(),
            method: clip(self.method.as_str()),
            path: clip(&self.path),
            route: self.route.as_deref(),
            component: self.component.map(|c| c.id.as_str()),
            models,
            engine: placement.map(|p| p.backend.name()),
            device: placement.map(|p| p.device.as_str()),
            status,
            bytes_in,
            bytes_out,
            duration_us: self.started.elapsed().as_micros() as u64,
            cancelled,
        });
    }
}

impl Drop for PendingAudit<'_> {
    fn drop(&mut self) {
        if !self.done {
            // 499: the client closed the request before its answer (nginx's code for it).
            self.write(None, 499, &[], 0, 0, true);
        }
    }
}

/// Who sent a request, and who they are once a token says so.
pub struct Caller<'s> {
    /// Their address.
    pub client: SocketAddr,
    /// The request's span.
    pub span: &'s tracing::Span,
    /// When the request arrived.
    pub started: Instant,
    /// The principal their token names.
    pub principal: Option<String>,
}

/// Answers a request (a client's, or the one a gRPC call becomes): the host's endpoints, or the
/// route `matched` and its component, each behind the tokens it needs.
pub async fn answer<'a, B>(
    app: &'a App,
    req: Request<B>,
    path: &str,
    matched: Option<RouteMatch<'a>>,
    caller: &mut Caller<'_>,
) -> HostResponse
where
    B: http_body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (client, span, started, principal) = (caller.client, caller.span, caller.started, &mut caller.principal);
    let host_answer = match protocol::serve(app, req.method(), path) {
        // Health stays open for probes; the rest of the host's endpoints follow host_access.
        Some(response) => match app.host_access().filter(|_| !protocol::is_health(path)) {
            Some(tokens) => refusal(tokens, req.headers().get(http::header::AUTHORIZATION), span, principal).unwrap_or(response),
            None => response,
        },
        None => match matched {
            Some(matched) => {
                let Some(component) = app.component(matched.component) else {
                    return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("route {} has no component", matched.route));
                };
                let mut req = req;
                // Only the host says who called; once the app uses tokens at all, they are the
                // host's business and no function sees one, even one sent to an open route.
                req.headers_mut().remove(PRINCIPAL_HEADER);
                let authorization = match app.uses_access() {
                    true => req.headers_mut().remove(http::header::AUTHORIZATION),
                    false => req.headers().get(http::header::AUTHORIZATION).cloned(),
                };
                if let Some(tokens) = &component.access {
                    if let Some(refused) = refusal(tokens, authorization.as_ref(), span, principal) {
                        component.metrics.answered(refused.status(), started.elapsed());
                        return refused;
                    }
                    if let Some(name) = principal.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
                        req.headers_mut().insert(PRINCIPAL_HEADER, name);
                    }
                }
                let response = to_component(app, component, req, &matched, client).await;
                component.metrics.answered(response.status(), started.elapsed());
                return response;
            }
            None => json_error(StatusCode::NOT_FOUND, format!("no route matches {path}")),
        },
    };
    metrics::host_request_answered(host_answer.status(), started.elapsed());
    host_answer
}

/// The header that tells a function which principal called it, when its route needs a token.
pub const PRINCIPAL_HEADER: &str = "spindle-principal";

/// Checks the request's bearer token against `tokens`: the principal goes into `principal` and
/// the span, or the refusal is a 401 that says only what was missing or wrong.
#[must_use]
fn refusal(
    tokens: &Tokens,
    authorization: Option<&HeaderValue>,
    span: &tracing::Span,
    principal: &mut Option<String>,
) -> Option<HostResponse> {
    match tokens.authenticate(authorization) {
        Ok(name) => {
            span.record("principal", name);
            *principal = Some(name.to_owned());
            None
        }
        Err(refused) => {
            let mut response = json_error(StatusCode::UNAUTHORIZED, &refused);
            let challenge = match refused {
                Refused::Missing => r#"Bearer realm="spindle""#,
                Refused::Invalid => r#"Bearer realm="spindle", error="invalid_token""#,
            };
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            Some(response)
        }
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Runs the request through the component its route names.
async fn to_component<B>(
    app: &App,
    component: &LoadedComponent,
    req: Request<B>,
    matched: &RouteMatch<'_>,
    client: SocketAddr,
) -> HostResponse
where
    B: http_body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = component.limits.max_body_bytes;
    let (mut parts, body) = req.into_parts();
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|n| n > limit as u64) {
        component.metrics.failed("body_too_large");
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, InvokeError::BodyTooLarge { limit });
    }
    add_spin_headers(&mut parts, matched, client);
    match app.invoke(component, Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(e) => {
            component.metrics.failed(e.cause());
            let status = match e {
                InvokeError::QueueFull { .. } | InvokeError::ModelBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
                InvokeError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                InvokeError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
                InvokeError::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
                InvokeError::Guest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                InvokeError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            };
            let mut response = json_error(status, &e);
            if let InvokeError::QueueFull { .. } | InvokeError::ModelBusy { .. } = e {
                response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    }
}

/// Gives the guest the full URL and Spin's routing headers, as `spin up` does.
fn add_spin_headers(parts: &mut Parts, matched: &RouteMatch<'_>, client: SocketAddr) {
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
}
