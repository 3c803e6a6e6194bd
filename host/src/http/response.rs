//! Responses the host writes itself: JSON bodies, and errors as `{"error": "..."}`; and what a
//! connection is answered with, which may also be a gRPC reply.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// A response body the host has in full.
pub type HostResponse = Response<Full<Bytes>>;

/// What a connection sends back: a body in full, or a gRPC reply (its message, then trailers).
pub type ConnectionBody = http_body_util::Either<Full<Bytes>, tonic::body::Body>;

/// A response as a connection sends it.
pub type Reply = Response<ConnectionBody>;

/// A `200` with a JSON body.
pub fn json(body: &serde_json::Value) -> HostResponse {
    json_with_status(StatusCode::OK, body)
}

/// A JSON error response: `{"error": message}`.
pub fn json_error(status: StatusCode, message: impl std::fmt::Display) -> HostResponse {
    json_with_status(status, &serde_json::json!({ "error": message.to_string() }))
}

pub(super) fn json_with_status(status: StatusCode, body: &serde_json::Value) -> HostResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
