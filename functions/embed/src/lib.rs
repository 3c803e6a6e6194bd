//! all-MiniLM-L6-v2 sentence embeddings behind HTTP, the whole pipeline in the function:
//! tokenisation (Hugging Face's `tokenizers`, WordPiece from the mounted `tokenizer.json`), the
//! int8 encoder through `wasi:nn`, mean pooling over the attention mask, L2 normalisation.
//!
//! - OpenAI's `POST /v1/embeddings` and `GET /v1/models[/{id}]` ([`openai`]);
//! - the Open Inference Protocol under `/v2/models/all-MiniLM-L6-v2/...`, text in as `BYTES`
//!   ([`oip`]).

mod oip;
mod openai;
mod pipeline;

use spin_sdk::http::{Request, body::IncomingBodyExt};
use spindle_sdk::oip::Response;

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let header_length = req.headers().get(spindle_sdk::oip::HEADER_LENGTH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match req.into_body().bytes().await {
        Ok(body) => body,
        Err(e) => {
            return openai_answer((
                400,
                serde_json::json!({"error": {"message": format!("could not read the request body: {e}"), "type": "invalid_request_error", "param": null, "code": null}}),
            ));
        }
    };
    if path.starts_with("/v2/models/") {
        return oip::serve(&method, &path, header_length.as_deref(), &body);
    }
    let answer = match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/v1/embeddings") => openai::embeddings(&body),
        ("GET", "/v1/models") => openai::models(None),
        ("GET", model) if model.starts_with("/v1/models/") => openai::models(model.strip_prefix("/v1/models/")),
        (_, "/v1/embeddings") => method_not_allowed("POST"),
        (_, "/v1/models") => method_not_allowed("GET"),
        (_, other) => (
            404,
            serde_json::json!({"error": {"message": format!("no such endpoint {other}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ),
    };
    openai_answer(answer)
}

fn method_not_allowed(allowed: &str) -> openai::Answer {
    (405, serde_json::json!({"error": {"message": format!("use {allowed}"), "type": "invalid_request_error", "param": null, "code": null}}))
}

fn openai_answer((status, body): openai::Answer) -> Response {
    spindle_sdk::oip::json(status, &body)
}
