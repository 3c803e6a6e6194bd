//! OpenAI's embeddings API: `POST /v1/embeddings`, and `GET /v1/models[/{id}]`.
//!
//! `input` is a string, a list of strings, a list of token ids or a list of those; `model` is
//! `all-MiniLM-L6-v2`; `encoding_format` is `float` or `base64` (little-endian f32s);
//! `dimensions` is refused (the model gives 384). `usage` counts the tokens the model sees,
//! `[CLS]` and `[SEP]` included. Inputs over 256 tokens are cut, and their indices listed in
//! `usage.truncated_inputs`; with `"truncate": false` (an extension, as text-embeddings-inference
//! names it) they are a 400 instead. Errors have OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}`.

use crate::pipeline::{DIMENSIONS, Embedder, MAX_TOKENS, Refusal, Sequence};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

/// The model's name, as its users know it.
pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
/// Other names it answers to.
const ALIASES: [&str; 1] = ["sentence-transformers/all-MiniLM-L6-v2"];
/// Most inputs in one request, as OpenAI allows.
pub const MAX_INPUTS: usize = 2048;

/// An answer: status and JSON body.
pub type Answer = (u16, Value);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsRequest {
    input: Input,
    model: String,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
    #[serde(default, rename = "user")]
    _user: Option<String>,
    #[serde(default)]
    truncate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

fn error(status: u16, message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Answer {
    let kind = if status >= 500 { "server_error" } else { "invalid_request_error" };
    (status, json!({"error": {"message": message.into(), "type": kind, "param": param, "code": code}}))
}

/// `POST /v1/embeddings`.
pub fn embeddings(body: &[u8]) -> Answer {
    let request: EmbeddingsRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) if e.to_string().contains("untagged enum Input") => {
            return error(
                400,
                "the request is not a valid embeddings request: 'input' must be a string, a list of strings, a list of token ids or a list of such lists",
                Some("input"),
                None,
            );
        }
        Err(e) => return error(400, format!("the request is not a valid embeddings request: {e}"), None, None),
    };
    if request.model != MODEL_ID && !ALIASES.contains(&request.model.as_str()) {
        return error(
            404,
            format!("The model '{}' does not exist; this function serves '{MODEL_ID}'", request.model),
            None,
            Some("model_not_found"),
        );
    }
    if request.dimensions.is_some() {
        return error(
            400,
            format!("'dimensions' is not supported: {MODEL_ID} always gives {DIMENSIONS} dimensions"),
            Some("dimensions"),
            None,
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error(400, format!("encoding_format must be 'float' or 'base64', not '{other}'"), Some("encoding_format"), None);
        }
    };
    let embedder = match Embedder::load() {
        Ok(embedder) => embedder,
        Err(refusal) => return refused(refusal),
    };
    let sequences = match sequences(&embedder, request.input) {
        Ok(sequences) => sequences,
        Err(answer) => return answer,
    };
    if let Err(message) = crate::pipeline::check_tokens(&sequences) {
        return error(400, message, Some("input"), None);
    }
    let truncated: Vec<usize> = sequences.iter().enumerate().filter(|(_, s)| s.truncated).map(|(i, _)| i).collect();
    if request.truncate == Some(false)
        && let Some(&first) = truncated.first()
    {
        return error(
            400,
            format!("input {first} is longer than the model's {MAX_TOKENS} tokens, and \"truncate\": false was asked"),
            Some("input"),
            None,
        );
    }
    let embeddings = match embedder.embed(&sequences) {
        Ok(embeddings) => embeddings,
        Err(refusal) => return refused(refusal),
    };
    let tokens: usize = sequences.iter().map(|s| s.ids.len()).sum();
    let data: Vec<Value> = embeddings
        .iter()
        .enumerate()
        .map(|(index, embedding)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(embedding)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut usage = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    if !truncated.is_empty() {
        usage["truncated_inputs"] = json!(truncated);
    }
    (200, json!({"object": "list", "data": data, "model": MODEL_ID, "usage": usage}))
}

fn sequences(embedder: &Embedder, input: Input) -> Result<Vec<Sequence>, Answer> {
    let bad = |message: String| error(400, message, Some("input"), None);
    let count = match &input {
        Input::Text(_) | Input::Tokens(_) => 1,
        Input::Texts(texts) => texts.len(),
        Input::TokenLists(lists) => lists.len(),
    };
    if count == 0 {
        return Err(bad("input is an empty list; give at least one string".into()));
    }
    if count > MAX_INPUTS {
        return Err(bad(format!("input has {count} items; at most {MAX_INPUTS}")));
    }
    let texts = match input {
        Input::Text(text) => vec![text],
        Input::Texts(texts) => texts,
        Input::Tokens(ids) => return Ok(vec![from_ids(embedder, &ids, None)?]),
        Input::TokenLists(lists) => return lists.iter().enumerate().map(|(i, ids)| from_ids(embedder, ids, Some(i))).collect(),
    };
    crate::pipeline::check_texts(&texts, |i| format!("input[{i}]")).map_err(bad)?;
    texts.iter().map(|text| embedder.tokenize(text).map_err(refused)).collect()
}

fn from_ids(embedder: &Embedder, ids: &[i64], index: Option<usize>) -> Result<Sequence, Answer> {
    let at = index.map_or_else(String::new, |i| format!("[{i}]"));
    if ids.is_empty() {
        return Err(error(400, format!("input{at} is an empty list of tokens"), Some("input"), None));
    }
    if ids.len() > crate::pipeline::MAX_TEXT_BYTES {
        return Err(error(
            400,
            format!("input{at} has {} tokens; at most {}", ids.len(), crate::pipeline::MAX_TEXT_BYTES),
            Some("input"),
            None,
        ));
    }
    embedder.sequence_of_ids(ids).map_err(|refusal| match refusal {
        Refusal::Input(message) => error(400, format!("input{at}: {message}"), Some("input"), None),
        other => refused(other),
    })
}

fn refused(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::Input(message) => error(400, message, Some("input"), None),
        Refusal::Internal(message) => error(500, message, None, None),
    }
}

/// `GET /v1/models` and `GET /v1/models/{id}`.
pub fn models(id: Option<&str>) -> Answer {
    let model = json!({"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "spindle"});
    match id {
        None => (200, json!({"object": "list", "data": [model]})),
        Some(id) if id == MODEL_ID || ALIASES.contains(&id) => (200, model),
        Some(id) => error(404, format!("The model '{id}' does not exist"), None, Some("model_not_found")),
    }
}
