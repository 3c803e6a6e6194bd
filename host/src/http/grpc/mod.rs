//! The Open Inference Protocol over gRPC: `inference.GRPCInferenceService`, on the same listener
//! as REST (HTTP/2, clear text with prior knowledge or TLS), told apart by
//! `content-type: application/grpc`.
//!
//! Every call becomes the REST request that asks the same thing and goes the same way as one:
//! the host's endpoints (`ServerLive`, `ServerReady`, `ModelReady`, `ServerMetadata`,
//! `ModelStatistics`, `RepositoryIndex`) or the model's route and its function (`ModelMetadata`,
//! `ModelConfig`, and `ModelInfer` as binary tensors), with the caller's metadata as headers, so
//! tokens, limits, metrics and the audit log apply as they do to REST, and no function changes.
//! The REST answer is then decoded into the reply; a REST error becomes the gRPC status of the
//! same meaning with the same message.
//!
//! Messages are read whole first, bounded like a REST body: no larger than the largest body a
//! component accepts (plus room for the framing) and within the longest body timeout.

pub mod infer;
pub mod messages;

use super::request::{Caller, answer};
use super::response::{Reply, json_error};
use crate::manifest::ComponentId;
use crate::runtime::App;
use crate::runtime::invoke::{BodyBytes, LoadedModels};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use messages::{
    Empty, ModelConfigResponse, ModelInferRequest, ModelInferResponse, ModelMetadataResponse, ModelReadyResponse, ModelRequest,
    ModelStatisticsResponse, RepositoryIndexRequest, RepositoryIndexResponse, ServerLiveResponse, ServerMetadataResponse,
    ServerReadyResponse,
};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};

/// The service's path prefix.
pub const SERVICE: &str = "/inference.GRPCInferenceService/";

/// Room for a message's framing beyond the tensors it carries.
const FRAMING_ROOM: usize = 64 << 10;

/// The route and component a call was forwarded to, on its reply, for the request's span and
/// audit line.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The route, as the manifest writes it.
    pub route: String,
    /// The component.
    pub component: ComponentId,
}

/// The size of the reply's message, on the reply (its body's length is not known in advance).
#[derive(Clone, Copy, Debug)]
pub struct SentBytes(pub u64);

/// The calls served; any other is `UNIMPLEMENTED` before its message is read.
const SERVED: [&str; 9] = [
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
];

/// Bytes of gRPC messages the host holds at once, read or being read, over all calls: each call
/// reserves its message's declared length before reading it, so no client makes the host hold
/// more than this in messages whose token and admission are not checked yet.
const MESSAGE_BUDGET_KIB: usize = 256 << 10;

/// Longest message in a status; the rest is cut (clients refuse huge `grpc-message` headers).
const MAX_STATUS_MESSAGE: usize = 1024;

/// Whether `req` is a call to the inference service (gRPC with protobuf; gRPC-Web is not).
pub fn is_call<B>(req: &Request<B>) -> bool {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    req.uri().path().starts_with(SERVICE) && matches!(essence, "application/grpc" | "application/grpc+proto")
}

/// The status a reply carries (in its headers when the call failed before a message, in its
/// trailers after one: then success) as the HTTP status of the same meaning, for the span, the
/// audit line and metrics.
pub fn http_status(reply: &Reply) -> StatusCode {
    let code = reply.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
    match code.map(Code::from_i32) {
        None | Some(Code::Ok) => StatusCode::OK,
        Some(Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange) => StatusCode::BAD_REQUEST,
        Some(Code::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Some(Code::PermissionDenied) => StatusCode::FORBIDDEN,
        Some(Code::NotFound) => StatusCode::NOT_FOUND,
        Some(Code::ResourceExhausted) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(Code::Cancelled) => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Some(Code::Unimplemented) => StatusCode::NOT_IMPLEMENTED,
        Some(Code::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(Code::DeadlineExceeded) => StatusCode::GATEWAY_TIMEOUT,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Answers a call to the inference service. Its reply carries what the span and the audit line
/// need: [`BodyBytes`], [`SentBytes`], [`LoadedModels`] and, once routed, [`Forwarded`].
pub async fn serve<B>(app: &App, req: Request<B>, caller: &mut Caller<'_>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.version() != http::Version::HTTP_2 {
        return json_error(StatusCode::BAD_REQUEST, "gRPC needs HTTP/2 (prior knowledge in clear text, or TLS with ALPN h2)")
            .map(Either::Left);
    }
    let mut call = Call { app, caller, metadata: HeaderMap::new(), forwarded: None, models: Vec::new(), max_body: 0, received: 0, sent: 0 };
    let deadline = grpc_timeout(req.headers());
    let answered = match deadline {
        Some(after) => tokio::time::timeout(after, answer_call(req, &mut call)).await.unwrap_or_else(|_| {
            status_reply(Status::deadline_exceeded(format!("the call's grpc-timeout of {} ms passed", after.as_millis())))
        }),
        None => answer_call(req, &mut call).await,
    };
    let mut reply = answered;
    if call.forwarded.is_none() {
        // Refused before any REST request was made: count it as the host's.
        crate::telemetry::metrics::host_request_answered(http_status(&reply), call.caller.started.elapsed());
    }
    let extensions = reply.extensions_mut();
    extensions.insert(BodyBytes(call.received));
    extensions.insert(SentBytes(call.sent));
    extensions.insert(LoadedModels(call.models));
    if let Some(forwarded) = call.forwarded {
        extensions.insert(forwarded);
    }
    reply
}

/// The client's deadline, from `grpc-timeout` (an integer of at most 8 digits and a unit).
fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Reads the call's message (its declared length first: too large, or more than the budget has
/// room for, is refused before the rest is read) and answers it.
async fn answer_call<B>(req: Request<B>, call: &mut Call<'_, '_, '_>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = req.uri().path().strip_prefix(SERVICE).unwrap_or_default().to_owned();
    if req.method() != Method::POST {
        return status_reply(Status::unimplemented(format!("use POST for gRPC calls, not {}", req.method())));
    }
    if !SERVED.contains(&method.as_str()) {
        return status_reply(Status::unimplemented(format!(
            "{SERVICE}{} is not served here (served: {})",
            crate::telemetry::traces::clip(&method),
            SERVED.join(", ")
        )));
    }
    let components = call.app.components();
    call.max_body = components.iter().map(|c| c.limits.max_body_bytes).max().unwrap_or(0);
    let max_message = call.max_body.saturating_add(FRAMING_ROOM);
    let wait = components.iter().map(|c| c.limits.body_timeout).max().unwrap_or(std::time::Duration::from_secs(30));
    let (parts, body) = req.into_parts();
    let (message, _reserved) = match read_message(body, max_message, wait).await {
        Ok(read) => read,
        Err(status) => return status_reply(status),
    };
    call.received = message.len() as u64;
    call.metadata = forwarded_headers(&parts.headers);
    let req = Request::from_parts(parts, Full::new(message));
    let call_ref = call;
    let reply = match method.as_str() {
        "ServerLive" => {
            unary(max_message, req, |_: tonic::Request<Empty>| call_ref.json::<ServerLiveResponse>(get("/v2/health/live"))).await
        }
        "ServerReady" => {
            unary(max_message, req, |_: tonic::Request<Empty>| call_ref.ready::<ServerReadyResponse>("/v2/health/ready".into())).await
        }
        "ModelReady" => {
            unary(max_message, req, |r: tonic::Request<ModelRequest>| async move {
                let r = r.into_inner();
                call_ref.ready::<ModelReadyResponse>(infer::model_path(&r.name, &r.version, "/ready")?).await
            })
            .await
        }
        "ServerMetadata" => unary(max_message, req, |_: tonic::Request<Empty>| call_ref.json::<ServerMetadataResponse>(get("/v2"))).await,
        "ModelMetadata" => {
            unary(max_message, req, |r: tonic::Request<ModelRequest>| async move {
                let r = r.into_inner();
                call_ref.json::<ModelMetadataResponse>(get(&infer::model_path(&r.name, &r.version, "")?)).await
            })
            .await
        }
        "ModelConfig" => {
            unary(max_message, req, |r: tonic::Request<ModelRequest>| async move {
                let r = r.into_inner();
                let config = call_ref.json::<messages::ModelConfig>(get(&infer::model_path(&r.name, &r.version, "/config")?)).await?;
                Ok(tonic::Response::new(ModelConfigResponse { config: Some(config.into_inner()) }))
            })
            .await
        }
        "ModelStatistics" => {
            unary(max_message, req, |r: tonic::Request<ModelRequest>| async move {
                let r = r.into_inner();
                let path = match r.name.as_str() {
                    "" => "/v2/models/stats".to_owned(),
                    _ => infer::model_path(&r.name, &r.version, "/stats")?,
                };
                call_ref.json::<ModelStatisticsResponse>(get(&path)).await
            })
            .await
        }
        "RepositoryIndex" => {
            unary(max_message, req, |_: tonic::Request<RepositoryIndexRequest>| {
                call_ref.json::<RepositoryIndexResponse>(Request::post("/v2/repository/index").body(Bytes::new()))
            })
            .await
        }
        "ModelInfer" => unary(max_message, req, |r: tonic::Request<ModelInferRequest>| call_ref.infer(r.into_inner())).await,
        other => {
            return status_reply(Status::unimplemented(format!(
                "{SERVICE}{other} is not served here (served: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, \
                 ModelInfer, ModelConfig, ModelStatistics, RepositoryIndex)"
            )));
        }
    };
    reply.map(Either::Right)
}

/// Reads a unary call's message: its five-byte prefix first, whose declared length must be
/// within `max_message` and find room in the message budget (held until the call ends, through
/// the permit returned), then the rest, all within `wait`.
async fn read_message<B>(body: B, max_message: usize, wait: std::time::Duration) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Status>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    let budget = BUDGET.get_or_init(|| Arc::new(Semaphore::new(MESSAGE_BUDGET_KIB)));
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut message = BytesMut::new();
        let mut reserved = None;
        let mut expected = usize::MAX;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Status::invalid_argument(format!("could not read the message: {}", e.into())))?;
            let Ok(data) = frame.into_data() else { continue };
            if message.len() + data.len() > expected {
                return Err(Status::invalid_argument("a unary call carries one message; more bytes followed it"));
            }
            message.extend_from_slice(&data);
            if reserved.is_none() && message.len() >= 5 {
                let declared = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
                if declared > max_message {
                    return Err(Status::resource_exhausted(format!("a {declared}-byte message exceeds the {max_message}-byte limit")));
                }
                let kib = u32::try_from(declared.div_ceil(1024) + 1).unwrap_or(u32::MAX);
                reserved = Some(budget.clone().try_acquire_many_owned(kib).map_err(|_| {
                    Status::unavailable(format!(
                        "the host is holding {} MiB of gRPC messages already; retry shortly",
                        MESSAGE_BUDGET_KIB >> 10
                    ))
                })?);
                expected = declared + 5;
                message.reserve(expected.saturating_sub(message.len()));
            }
        }
        Ok((message.freeze(), reserved))
    };
    tokio::time::timeout(wait, read)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded(format!("the message did not arrive within {} ms", wait.as_millis()))))
}

/// A gRPC reply with only a status (a trailers-only response).
fn status_reply(status: Status) -> Reply {
    shorten(status).into_http::<tonic::body::Body>().map(Either::Right)
}

/// `status` with its message cut to [`MAX_STATUS_MESSAGE`] bytes.
fn shorten(status: Status) -> Status {
    if status.message().len() <= MAX_STATUS_MESSAGE {
        return status;
    }
    let mut end = MAX_STATUS_MESSAGE;
    while !status.message().is_char_boundary(end) {
        end -= 1;
    }
    Status::with_metadata(status.code(), format!("{}…", &status.message()[..end]), status.metadata().clone())
}

fn get(path: &str) -> http::Result<Request<Bytes>> {
    Request::get(path).body(Bytes::new())
}

/// The caller's metadata, as the headers of the REST request a call becomes: without gRPC's own.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = headers.clone();
    for name in [http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH, http::header::TE] {
        forwarded.remove(name);
    }
    let grpc_own: Vec<_> = forwarded.keys().filter(|k| k.as_str().starts_with("grpc-")).cloned().collect();
    for name in grpc_own {
        forwarded.remove(name);
    }
    forwarded
}

/// One call while it is answered: what it learns for the span, the audit line and metrics.
struct Call<'a, 'c, 's> {
    app: &'a App,
    caller: &'c mut Caller<'s>,
    metadata: HeaderMap,
    forwarded: Option<Forwarded>,
    models: Vec<String>,
    /// The largest body any component accepts: what a call's tensors may take.
    max_body: usize,
    received: u64,
    sent: u64,
}

impl Call<'_, '_, '_> {
    /// Runs `req` the way a REST request goes: the host's endpoints or the route's component.
    async fn forward(&mut self, req: http::Result<Request<Bytes>>) -> Result<http::Response<Bytes>, Status> {
        let mut req = req.map_err(|e| Status::invalid_argument(format!("not a request: {e}")))?;
        let mut headers = self.metadata.clone();
        headers.extend(req.headers_mut().drain());
        *req.headers_mut() = headers;
        let path = req.uri().path().to_owned();
        let matched = self.app.router().route(&path);
        if let Some(matched) = &matched {
            let model = path.strip_prefix("/v2/models/").and_then(|rest| rest.split('/').next());
            let span = self.caller.span;
            span.record("route", matched.route.as_str()).record("component", matched.component.as_str()).record("model", model);
            if let Some(placement) = self.app.component(matched.component).map(|c| c.placement()) {
                span.record("engine", placement.backend.name()).record("device", placement.device.as_str());
            }
            self.forwarded = Some(Forwarded { route: matched.route.clone(), component: matched.component.clone() });
        }
        let mut response = answer(self.app, req.map(Full::new), &path, matched, self.caller).await;
        if let Some(LoadedModels(models)) = response.extensions_mut().remove::<LoadedModels>() {
            self.models.extend(models);
        }
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok(http::Response::from_parts(parts, body))
    }

    /// The REST answer to `req`, decoded as `T`; an error status becomes the gRPC status.
    async fn json<T: DeserializeOwned + prost::Message>(
        &mut self,
        req: http::Result<Request<Bytes>>,
    ) -> Result<tonic::Response<T>, Status> {
        let response = self.forward(req).await?;
        if !response.status().is_success() {
            return Err(status_of(&response));
        }
        self.reply(decode(&response)?)
    }

    /// A readiness answer: the protocol's "not ready" is a 4xx, which is `ready: false` here, as
    /// Triton answers it (an unknown model too).
    async fn ready<T: DeserializeOwned + prost::Message + Default>(&mut self, path: String) -> Result<tonic::Response<T>, Status> {
        let response = self.forward(get(&path)).await?;
        match response.status() {
            s if s.is_success() => self.reply(decode(&response)?),
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => self.reply(T::default()),
            _ => Err(status_of(&response)),
        }
    }

    async fn infer(&mut self, request: ModelInferRequest) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let path = infer::model_path(&request.model_name, &request.model_version, "/infer")?;
        let rest = infer::to_rest(request, self.max_body)?;
        let req = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(infer::HEADER_LENGTH, rest.header_length)
            .body(rest.body);
        let response = self.forward(req).await?;
        if !response.status().is_success() {
            return Err(status_of(&response));
        }
        let header_length = response.headers().get(infer::HEADER_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse().ok());
        self.reply(infer::from_rest(response.into_body(), header_length)?)
    }

    fn reply<T: prost::Message>(&mut self, message: T) -> Result<tonic::Response<T>, Status> {
        self.sent = message.encoded_len() as u64 + 5;
        Ok(tonic::Response::new(message))
    }
}

fn decode<T: DeserializeOwned>(response: &http::Response<Bytes>) -> Result<T, Status> {
    serde_json::from_slice(response.body()).map_err(|e| Status::internal(format!("the answer is not the protocol's JSON: {e}")))
}

/// The gRPC status of a REST error answer, with its `{"error": ...}` message.
fn status_of(response: &http::Response<Bytes>) -> Status {
    let message = serde_json::from_slice::<serde_json::Value>(response.body())
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&response.body()[..response.body().len().min(MAX_STATUS_MESSAGE)]).into_owned());
    let code = match response.status() {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        s if s.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, message);
    if let Some(retry) = response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok())
        && let Ok(value) = retry.parse()
    {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

/// Decodes the call's message as `M`, answers it with `handler`, and encodes its reply or status.
async fn unary<M, R, F, Fut>(max_message: usize, req: Request<Full<Bytes>>, handler: F) -> http::Response<tonic::body::Body>
where
    M: prost::Message + Default + Send + 'static,
    R: prost::Message + Send + 'static,
    F: FnOnce(tonic::Request<M>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, Status>>,
{
    let codec = tonic_prost::ProstCodec::<R, M>::default();
    let handler = |request| async move { handler(request).await.map_err(shorten) };
    tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(max_message), None).unary(Once::new(handler), req).await
}

/// A unary handler from a closure that runs once: tonic decodes the message, calls it, and
/// encodes its reply or status.
struct Once<F>(Option<F>);

impl<F> Once<F> {
    fn new(f: F) -> Self {
        Self(Some(f))
    }
}

impl<F, Fut, M, R> tower_service::Service<tonic::Request<M>> for Once<F>
where
    F: FnOnce(tonic::Request<M>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<R>, Status>>,
{
    type Response = tonic::Response<R>;
    type Error = Status;
    type Future = futures::future::Either<Fut, std::future::Ready<Result<tonic::Response<R>, Status>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<M>) -> Self::Future {
        match self.0.take() {
            Some(f) => futures::future::Either::Left(f(request)),
            None => futures::future::Either::Right(std::future::ready(Err(Status::internal("a unary call answered twice")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rest(status: u16, body: &str) -> http::Response<Bytes> {
        http::Response::builder().status(status).body(Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn rest_errors_become_statuses_with_their_message() {
        for (http, code) in [
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (404, Code::NotFound),
            (413, Code::ResourceExhausted),
            (503, Code::Unavailable),
            (504, Code::DeadlineExceeded),
            (500, Code::Internal),
        ] {
            let status = status_of(&rest(http, r#"{"error": "input 'x': expected shape [1, 2], got [3]"}"#));
            assert_eq!(status.code(), code, "{http}");
            assert_eq!(status.message(), "input 'x': expected shape [1, 2], got [3]");
        }
    }

    #[test]
    fn grpc_timeouts_parse_and_nonsense_is_ignored() {
        let timeout = |v: &'static str| {
            grpc_timeout(&HeaderMap::from_iter([(http::header::HeaderName::from_static("grpc-timeout"), HeaderValue::from_static(v))]))
        };
        assert_eq!(timeout("250m"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(timeout("2S"), Some(std::time::Duration::from_secs(2)));
        assert_eq!(timeout("123456789S"), None, "more than 8 digits");
        assert_eq!(timeout("5x"), None);
        assert_eq!(timeout("S"), None);
    }

    #[test]
    fn grpc_metadata_is_forwarded_without_grpc_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("grpc-timeout", HeaderValue::from_static("1S"));
        let forwarded = forwarded_headers(&headers);
        assert_eq!(forwarded.len(), 1);
        assert_eq!(forwarded["authorization"], "Bearer abc");
    }

    #[test]
    fn the_json_answers_decode_into_the_messages() {
        let config: messages::ModelConfig = serde_json::from_str(
            r#"{"name": "cifar10", "platform": "onnxruntime_onnx", "backend": "spindle", "max_batch_size": 64,
                "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [32, 32, 3]}],
                "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}],
                "dynamic_batching": {"max_queue_delay_microseconds": 2000}}"#,
        )
        .unwrap();
        assert_eq!(config.input[0].data_type, 11);
        assert_eq!(config.input[0].dims, vec![32, 32, 3]);
        assert_eq!(config.dynamic_batching.unwrap().max_queue_delay_microseconds, 2000);
        let index: RepositoryIndexResponse = serde_json::from_str(r#"[{"name": "m", "state": "READY", "component": "c"}]"#).unwrap();
        assert_eq!(index.models[0].state, "READY");
        assert!(serde_json::from_str::<messages::ModelConfig>(r#"{"input": [{"data_type": "TYPE_NOPE"}]}"#).is_err());
    }
}
