//! The pipeline behind the Open Inference Protocol, as model `all-MiniLM-L6-v2`: input `text`
//! (`BYTES`, shape `[-1]`, one UTF-8 string per element, as JSON strings or in the binary tensor
//! extension's length-prefixed form), output `embedding` (`FP32`, `[-1, 384]`), as JSON or binary
//! data when asked (`binary_data` or `binary_data_output`).

use crate::openai::{MAX_INPUTS, MODEL_ID};
use crate::pipeline::{DIMENSIONS, Embedder, Refusal, check_texts, check_tokens};
use serde_json::{Value, json};
use spindle_sdk::oip::{HEADER_LENGTH, Response, error};

fn metadata() -> Value {
    json!({
        "name": MODEL_ID,
        "versions": ["1"],
        "platform": "spindle_pipeline",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, DIMENSIONS]}],
    })
}

fn config() -> Value {
    json!({
        "name": MODEL_ID,
        "platform": "spindle_pipeline",
        "backend": "spindle",
        "max_batch_size": 0,
        "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}],
        "output": [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [-1, DIMENSIONS]}],
    })
}

/// Answers `/v2/models/all-MiniLM-L6-v2[/versions/1][/ready|/config|/infer]`.
pub fn serve(method: &str, path: &str, header_length: Option<&str>, body: &[u8]) -> Response {
    let Some(rest) = path.strip_prefix("/v2/models/").and_then(|r| r.strip_prefix(MODEL_ID)) else {
        return error(404, format!("unknown model in {path} (this function serves '{MODEL_ID}')"));
    };
    let rest = match rest.strip_prefix("/versions/") {
        Some(versioned) => match versioned.split_once('/').unwrap_or((versioned, "")) {
            ("1", tail) => tail.to_owned(),
            (other, _) => return error(404, format!("model '{MODEL_ID}' has no version '{other}' (versions: [\"1\"])")),
        },
        None => rest.trim_start_matches('/').to_owned(),
    };
    match (method, rest.trim_end_matches('/')) {
        ("GET", "") => spindle_sdk::oip::json(200, &metadata()),
        ("GET", "ready") => spindle_sdk::oip::json(200, &json!({"name": MODEL_ID, "ready": true})),
        ("GET", "config") => spindle_sdk::oip::json(200, &config()),
        ("POST", "infer") => infer(header_length, body).unwrap_or_else(|(status, message)| error(status, message)),
        (_, "" | "ready" | "config") => error(405, format!("use GET for {path}")),
        (_, "infer") => error(405, "use POST for infer"),
        (_, other) => error(404, format!("no such endpoint /v2/models/{MODEL_ID}/{other}")),
    }
}

type Failure = (u16, String);

fn bad(message: impl Into<String>) -> Failure {
    (400, message.into())
}

fn infer(header_length: Option<&str>, body: &[u8]) -> Result<Response, Failure> {
    let (json_part, binary) = match header_length {
        Some(value) => {
            let n: usize = value.trim().parse().map_err(|_| bad(format!("{HEADER_LENGTH} '{value}' is not a byte count")))?;
            if n > body.len() {
                return Err(bad(format!("{HEADER_LENGTH} is {n} but the body has only {} bytes", body.len())));
            }
            body.split_at(n)
        }
        None => (body, &[][..]),
    };
    let request: Value = serde_json::from_slice(json_part).map_err(|e| bad(format!("invalid inference request: {e}")))?;
    let inputs = request.get("inputs").and_then(Value::as_array).ok_or_else(|| bad("the request has no inputs"))?;
    let [input] = inputs.as_slice() else {
        return Err(bad(format!("model '{MODEL_ID}' takes one input, 'text'; got {}", inputs.len())));
    };
    if input.get("name").and_then(Value::as_str) != Some("text") {
        return Err(bad(format!("unknown input {}; model '{MODEL_ID}' takes 'text'", input.get("name").unwrap_or(&Value::Null))));
    }
    if input.get("datatype").and_then(Value::as_str) != Some("BYTES") {
        return Err(bad(format!("input 'text': expected datatype BYTES, got {}", input.get("datatype").unwrap_or(&Value::Null))));
    }
    let shape: Option<Vec<u64>> = input.get("shape").and_then(Value::as_array).and_then(|dims| dims.iter().map(Value::as_u64).collect());
    let Some([count]) = shape.as_deref() else {
        return Err(bad(format!("input 'text': expected shape [-1], got {}", input.get("shape").unwrap_or(&Value::Null))));
    };
    let count = *count;
    if count > MAX_INPUTS as u64 {
        return Err(bad(format!("input 'text' has {count} elements; at most {MAX_INPUTS}")));
    }
    let binary_size = input.get("parameters").and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
    let texts: Vec<String> = match (binary_size, input.get("data")) {
        (Some(size), _) => {
            if size as usize != binary.len() {
                return Err(bad(format!("input 'text': binary_data_size is {size} but {} bytes follow the header", binary.len())));
            }
            length_prefixed(binary)?
        }
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("input 'text': every element must be a string")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("input 'text' has neither data nor binary_data_size")),
    };
    if texts.len() as u64 != count {
        return Err(bad(format!("input 'text': shape [{count}] but {} strings", texts.len())));
    }
    check_texts(&texts, |i| format!("input 'text': element {i}")).map_err(bad)?;
    let embedder = Embedder::load().map_err(failure)?;
    let sequences = texts.iter().map(|t| embedder.tokenize(t)).collect::<Result<Vec<_>, _>>().map_err(failure)?;
    check_tokens(&sequences).map_err(bad)?;
    let embeddings = embedder.embed(&sequences).map_err(failure)?;
    let binary_default = request.get("parameters").and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool).unwrap_or(false);
    let as_binary = request
        .get("outputs")
        .and_then(Value::as_array)
        .and_then(|o| o.iter().find(|o| o.get("name").and_then(Value::as_str) == Some("embedding")))
        .and_then(|o| o.get("parameters")?.get("binary_data")?.as_bool())
        .unwrap_or(binary_default);
    let flat: Vec<f32> = embeddings.into_iter().flatten().collect();
    let shape = [count as usize, DIMENSIONS];
    let mut output = json!({"name": "embedding", "datatype": "FP32", "shape": shape});
    let mut answer = json!({"model_name": MODEL_ID, "model_version": "1"});
    if let Some(id) = request.get("id") {
        answer["id"] = id.clone();
    }
    if !as_binary {
        output["data"] = json!(flat);
        answer["outputs"] = json!([output]);
        return Ok(spindle_sdk::oip::json(200, &answer));
    }
    let bytes: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    output["parameters"] = json!({"binary_data_size": bytes.len()});
    answer["outputs"] = json!([output]);
    let mut body = answer.to_string().into_bytes();
    let header_length = body.len();
    body.extend_from_slice(&bytes);
    let mut response = spin_sdk::http::Response::new(spindle_sdk::oip::Body::from(body));
    response.headers_mut().insert("content-type", spin_sdk::http::HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(HEADER_LENGTH, header_length.into());
    Ok(response)
}

/// BYTES elements in the binary tensor extension's form: a little-endian u32 length, then that
/// many bytes of UTF-8, for each.
fn length_prefixed(mut data: &[u8]) -> Result<Vec<String>, Failure> {
    let mut texts = Vec::new();
    while !data.is_empty() {
        if texts.len() == MAX_INPUTS {
            return Err(bad(format!("input 'text' has more than {MAX_INPUTS} elements")));
        }
        let (length, rest) = data.split_at_checked(4).ok_or_else(|| bad("input 'text': a length prefix is cut short"))?;
        let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let (text, rest) = rest.split_at_checked(length).ok_or_else(|| bad("input 'text': an element is longer than the data left"))?;
        texts.push(String::from_utf8(text.to_vec()).map_err(|_| bad(format!("input 'text': element {} is not UTF-8", texts.len())))?);
        data = rest;
    }
    Ok(texts)
}

fn failure(refusal: Refusal) -> Failure {
    match refusal {
        Refusal::Input(message) => (400, message),
        Refusal::Internal(message) => (500, message),
    }
}
