//! The Open Inference Protocol (KServe v2) model endpoints, for any function's models.
//!
//! ```ignore
//! const CONFIG: &str = include_str!("../../../models/cifar10/model.json");
//! let models = [spindle_sdk::oip::ModelConfig::from_json(CONFIG)?];
//! let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
//! if let Some(response) = spindle_sdk::oip::serve(method.as_str(), path, header, &body, &models) {
//!     return response;
//! }
//! ```
//!
//! Serves `GET /v2/models/{m}[/versions/{v}]` (metadata), `.../ready`, `.../config` (what
//! `perf_analyzer` needs) and `POST .../infer` with JSON tensors and Triton's binary tensor
//! extension in both directions. Errors are `{"error": "..."}`: 400 for bad requests, 404 for
//! unknown models or versions, naming the tensor and the expected versus received shape or type.

use crate::{ElementType, Model, Tensor, json_tensor};
use serde::Deserialize;
use serde_json::{Value, json};

/// The binary tensor extension's header: the length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A model's declared description (our analogue of Triton's `config.pbtxt`), read from the
/// `model.json` its pipeline writes beside the ONNX file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name, as in `/v2/models/{name}`.
    pub name: String,
    /// E.g. `onnxruntime_onnx`.
    pub platform: String,
    /// Available versions; the first is the default.
    pub versions: Vec<String>,
    /// Largest batch (the first dimension of every tensor is the batch when this is > 0).
    pub max_batch_size: u32,
    /// Inputs, in order.
    pub inputs: Vec<TensorConfig>,
    /// Outputs, in order.
    pub outputs: Vec<TensorConfig>,
    /// Triton's `dynamic_batching` settings, which the host's batcher follows; answered as they
    /// are in `config`.
    #[serde(default)]
    pub dynamic_batching: Option<Value>,
}

/// One declared tensor: `-1` marks a variable dimension.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorConfig {
    /// Tensor name.
    pub name: String,
    /// Protocol datatype (`FP32`, `INT64`, ...).
    pub datatype: String,
    /// Shape, `-1` for variable dimensions.
    pub shape: Vec<i64>,
}

impl ModelConfig {
    /// Parses a `model.json`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid model description: {e}"))
    }

    fn metadata(&self) -> Value {
        let tensors =
            |ts: &[TensorConfig]| ts.iter().map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape})).collect::<Vec<_>>();
        json!({
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": tensors(&self.inputs),
            "outputs": tensors(&self.outputs),
        })
    }

    /// Triton's model configuration, as `perf_analyzer` reads it.
    fn config(&self) -> Value {
        let batched = self.max_batch_size > 0;
        let tensors = |ts: &[TensorConfig]| {
            ts.iter()
                .map(|t| {
                    let dims = if batched { &t.shape[1..] } else { &t.shape[..] };
                    json!({"name": t.name, "data_type": format!("TYPE_{}", t.datatype), "dims": dims})
                })
                .collect::<Vec<_>>()
        };
        let mut config = json!({
            "name": self.name,
            "platform": self.platform,
            "backend": "spindle",
            "max_batch_size": self.max_batch_size,
            "input": tensors(&self.inputs),
            "output": tensors(&self.outputs),
        });
        if let Some(batching) = &self.dynamic_batching {
            config["dynamic_batching"] = batching.clone();
        }
        config
    }
}

/// A response: status, headers, body.
pub type Response = spin_sdk::http::Response<Body>;
/// A whole response body.
pub type Body = http_body_util::Full<bytes::Bytes>;

/// A JSON answer with `status`.
pub fn json(status: u16, body: &Value) -> Response {
    let mut response = spin_sdk::http::Response::new(Body::from(body.to_string()));
    *response.status_mut() = spin_sdk::http::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert("content-type", spin_sdk::http::HeaderValue::from_static("application/json"));
    response
}

/// A JSON error answer, `{"error": "..."}`.
pub fn error(status: u16, message: impl Into<String>) -> Response {
    json(status, &json!({ "error": message.into() }))
}

/// Answers a protocol request for one of `models`, or `None` when `path` is not under
/// `/v2/models/`. `header` looks a request header up by lower-case name.
pub fn serve(method: &str, path: &str, header: impl Fn(&str) -> Option<String>, body: &[u8], models: &[ModelConfig]) -> Option<Response> {
    let rest = path.strip_prefix("/v2/models/")?;
    let mut parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let name = parts.remove(0);
    let Some(model) = models.iter().find(|m| m.name == name) else {
        return Some(error(
            404,
            format!("unknown model '{name}' (this function serves: {:?})", models.iter().map(|m| &m.name).collect::<Vec<_>>()),
        ));
    };
    if parts.first() == Some(&"versions") {
        let version = parts.get(1).copied().unwrap_or("");
        if !model.versions.iter().any(|v| v == version) {
            return Some(error(404, format!("model '{name}' has no version '{version}' (versions: {:?})", model.versions)));
        }
        parts.drain(..2.min(parts.len()));
    }
    let endpoint = parts.join("/");
    Some(match (method, endpoint.as_str()) {
        ("GET", "") => json(200, &model.metadata()),
        ("GET", "ready") => json(200, &json!({"name": model.name, "ready": true})),
        ("GET", "config") => json(200, &model.config()),
        ("POST", "infer") => infer(model, header(HEADER_LENGTH), body).unwrap_or_else(|(status, message)| error(status, message)),
        (_, "" | "ready" | "config") => error(405, format!("use GET for /v2/models/{name}/{endpoint}")),
        (_, "infer") => error(405, "use POST for infer"),
        _ => error(404, format!("no such endpoint /v2/models/{name}/{endpoint}")),
    })
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    data: Option<json_tensor::Flat>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

fn bad(message: impl Into<String>) -> Failure {
    (400, message.into())
}

/// Maps a protocol datatype to the wasi:nn element type, or says why it cannot be carried.
pub fn element_type(datatype: &str) -> Result<ElementType, String> {
    Ok(match datatype {
        "FP32" => ElementType::F32,
        "FP64" => ElementType::F64,
        "FP16" => ElementType::F16,
        "UINT8" => ElementType::U8,
        "INT32" => ElementType::I32,
        "INT64" => ElementType::I64,
        other => return Err(format!("datatype {other} cannot be passed to wasi:nn (supported: FP32, FP64, FP16, UINT8, INT32, INT64)")),
    })
}

fn datatype_name(ty: ElementType) -> &'static str {
    match ty {
        ElementType::F32 => "FP32",
        ElementType::F64 => "FP64",
        ElementType::F16 => "FP16",
        ElementType::Bf16 => "BF16",
        ElementType::U8 => "UINT8",
        ElementType::I32 => "INT32",
        ElementType::I64 => "INT64",
    }
}

fn shape_matches(declared: &[i64], got: &[i64]) -> bool {
    declared.len() == got.len() && declared.iter().zip(got).all(|(&d, &g)| g >= 0 && (d == -1 || d == g))
}

/// An inference request, decoded and checked against its model's declaration: what
/// [`serve`] hands the model.
#[derive(Debug)]
pub struct Decoded {
    /// The request's `id`, echoed in the answer.
    pub id: Option<String>,
    /// Every declared input, by name, with the data the request sent.
    pub inputs: Vec<(String, Tensor)>,
    /// The outputs to answer, by name, and whether each goes out as binary data.
    pub outputs: Vec<(String, bool)>,
}

/// A refusal: HTTP status and message.
pub type Failure = (u16, String);

/// Decodes an infer request body for `model`: JSON, or JSON followed by binary tensors when
/// `header_length` (the `Inference-Header-Content-Length` header) is given. Every failure is a
/// 400 naming what was wrong.
pub fn decode(model: &ModelConfig, header_length: Option<&str>, body: &[u8]) -> Result<Decoded, Failure> {
    let (json_part, mut binary) = match header_length {
        Some(value) => {
            let n: usize = value.trim().parse().map_err(|_| bad(format!("{HEADER_LENGTH} '{value}' is not a byte count")))?;
            if n > body.len() {
                return Err(bad(format!("{HEADER_LENGTH} is {n} but the body has only {} bytes", body.len())));
            }
            (&body[..n], &body[n..])
        }
        None => (body, &[][..]),
    };
    let request: InferRequest = serde_json::from_slice(json_part).map_err(|e| bad(format!("invalid inference request: {e}")))?;
    let mut named = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        if named.iter().any(|(n, _)| n == &input.name) {
            return Err(bad(format!("input '{}' is given twice", input.name)));
        }
        let declared = model.inputs.iter().find(|t| t.name == input.name).ok_or_else(|| {
            bad(format!(
                "unknown input '{}'; model '{}' takes {:?}",
                input.name,
                model.name,
                model.inputs.iter().map(|t| &t.name).collect::<Vec<_>>()
            ))
        })?;
        if input.datatype != declared.datatype {
            return Err(bad(format!("input '{}': expected datatype {}, got {}", input.name, declared.datatype, input.datatype)));
        }
        if !shape_matches(&declared.shape, &input.shape) {
            return Err(bad(format!("input '{}': expected shape {:?}, got {:?}", input.name, declared.shape, input.shape)));
        }
        let ty = element_type(&input.datatype).map_err(|e| bad(format!("input '{}': {e}", input.name)))?;
        // `shape_matches` refused negative sizes already; never let one wrap into a huge u64.
        if input.shape.iter().any(|&d| d < 0) {
            return Err(bad(format!("input '{}': shape {:?} has a negative dimension", input.name, input.shape)));
        }
        let bytes_needed = spindle_tensor::byte_len(input.shape.iter().map(|&d| d as u64), ty)
            .ok_or_else(|| bad(format!("input '{}': shape {:?} is too large", input.name, input.shape)))?;
        let dims = input
            .shape
            .iter()
            .map(|&d| u32::try_from(d))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| bad(format!("input '{}': shape {:?} has a dimension over {}", input.name, input.shape, u32::MAX)))?;
        let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
        let data = match (binary_size, &input.data) {
            (Some(size), _) => {
                let size =
                    size.as_u64().ok_or_else(|| bad(format!("input '{}': binary_data_size must be a byte count", input.name)))? as usize;
                if size != bytes_needed {
                    return Err(bad(format!(
                        "input '{}': binary_data_size is {size} but shape {:?} of {} needs {bytes_needed} bytes",
                        input.name, input.shape, input.datatype
                    )));
                }
                if binary.len() < size {
                    return Err(bad(format!(
                        "input '{}': binary data is truncated: {size} bytes declared, {} left in the body",
                        input.name,
                        binary.len()
                    )));
                }
                let (this, rest) = binary.split_at(size);
                binary = rest;
                this.to_vec()
            }
            (None, Some(data)) => json_data(&input.name, ty, &input.shape, data, bytes_needed)?,
            (None, None) => return Err(bad(format!("input '{}' has neither data nor binary_data_size", input.name))),
        };
        named.push((input.name.clone(), Tensor::from_bytes(&dims, ty, data)));
    }
    if !binary.is_empty() {
        return Err(bad(format!("{} bytes of binary data follow the inputs that no binary_data_size accounts for", binary.len())));
    }
    if let Some(missing) = model.inputs.iter().find(|t| !named.iter().any(|(n, _)| n == &t.name)) {
        return Err(bad(format!("missing input '{}'", missing.name)));
    }
    let binary_default = request.parameters.as_ref().and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool).unwrap_or(false);
    let wanted: Vec<(String, bool)> = match &request.outputs {
        None => model.outputs.iter().map(|t| (t.name.clone(), binary_default)).collect(),
        Some(outputs) => {
            let mut wanted = Vec::new();
            for o in outputs {
                if !model.outputs.iter().any(|t| t.name == o.name) {
                    return Err(bad(format!(
                        "unknown output '{}'; model '{}' has {:?}",
                        o.name,
                        model.name,
                        model.outputs.iter().map(|t| &t.name).collect::<Vec<_>>()
                    )));
                }
                let binary = o.parameters.as_ref().and_then(|p| p.get("binary_data")).and_then(Value::as_bool).unwrap_or(binary_default);
                wanted.push((o.name.clone(), binary));
            }
            wanted
        }
    };
    Ok(Decoded { id: request.id, inputs: named, outputs: wanted })
}

fn infer(model: &ModelConfig, header_length: Option<String>, body: &[u8]) -> Result<Response, Failure> {
    let Decoded { id, inputs: named, outputs: wanted } = decode(model, header_length.as_deref(), body)?;
    let session = Model::open(&model.name).map_err(|e| (500, e.to_string()))?;
    let inputs: Vec<(&str, Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let outputs = session.run(&inputs).map_err(|e| match e.kind() {
        crate::ErrorKind::InvalidInput => bad(e.to_string()),
        _ => (500, e.to_string()),
    })?;

    let mut binary_out = Vec::new();
    let mut output_json = Vec::new();
    for (name, as_binary) in &wanted {
        let tensor = outputs.get(name).map_err(|e| (500, e.to_string()))?;
        let shape: Vec<u32> = tensor.shape().to_vec();
        let datatype = datatype_name(tensor.element_type());
        if *as_binary {
            binary_out.extend_from_slice(tensor.bytes());
            output_json.push(json!({"name": name, "datatype": datatype, "shape": shape,
                                    "parameters": {"binary_data_size": tensor.bytes().len()}}));
        } else {
            output_json.push(json!({"name": name, "datatype": datatype, "shape": shape, "data": values(tensor)?}));
        }
    }
    let mut answer = json!({"model_name": model.name, "model_version": model.versions.first(), "outputs": output_json});
    if let Some(id) = id {
        answer["id"] = Value::String(id);
    }
    let header = answer.to_string().into_bytes();
    if binary_out.is_empty() {
        return Ok(json(200, &answer));
    }
    let header_length = header.len();
    let mut body = header;
    body.extend_from_slice(&binary_out);
    let mut response = spin_sdk::http::Response::new(Body::from(body));
    response.headers_mut().insert("content-type", spin_sdk::http::HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(HEADER_LENGTH, header_length.into());
    Ok(response)
}

fn json_data(name: &str, ty: ElementType, shape: &[i64], data: &json_tensor::Flat, bytes_needed: usize) -> Result<Vec<u8>, Failure> {
    let values = data.numbers().map_err(|e| bad(format!("input '{name}': {e}")))?;
    let elements = bytes_needed / ty.size();
    if values.len() != elements {
        return Err(bad(format!("input '{name}': shape {shape:?} needs {elements} values, got {}", values.len())));
    }
    let integral = |v: f64, lo: f64, hi: f64| {
        (v.fract() == 0.0 && v >= lo && v <= hi)
            .then_some(v)
            .ok_or_else(|| bad(format!("input '{name}': {v} is not a valid {}", datatype_name(ty))))
    };
    let mut out = Vec::with_capacity(bytes_needed);
    for &v in values {
        match ty {
            ElementType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            ElementType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            ElementType::U8 => out.push(integral(v, 0.0, 255.0)? as u8),
            ElementType::I32 => out.extend_from_slice(&(integral(v, i32::MIN as f64, i32::MAX as f64)? as i32).to_le_bytes()),
            ElementType::I64 => out.extend_from_slice(&(integral(v, i64::MIN as f64, i64::MAX as f64)? as i64).to_le_bytes()),
            ElementType::F16 | ElementType::Bf16 => {
                return Err(bad(format!("input '{name}': {} tensors must be sent as binary data", datatype_name(ty))));
            }
        }
    }
    Ok(out)
}

fn values(tensor: &Tensor) -> Result<Value, Failure> {
    let internal = |e: crate::Error| (500, e.to_string());
    Ok(match tensor.element_type() {
        ElementType::F32 => json!(tensor.to_f32().map_err(internal)?),
        ElementType::F64 => json!(tensor.to_f64().map_err(internal)?),
        ElementType::U8 => json!(tensor.to_u8().map_err(internal)?),
        ElementType::I32 => json!(tensor.to_i32().map_err(internal)?),
        ElementType::I64 => json!(tensor.to_i64().map_err(internal)?),
        other => return Err((500, format!("output of type {other} cannot be written as JSON; ask for binary_data"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"name": "m", "platform": "onnxruntime_onnx", "versions": ["1"], "max_batch_size": 8,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 500}}"#;

    fn call(method: &str, path: &str, body: &str) -> (u16, Value) {
        let model = ModelConfig::from_json(CONFIG).unwrap();
        let r = serve(method, path, |_| None, body.as_bytes(), &[model]).expect("handled");
        let status = r.status().as_u16();
        let body = futures_body(r.into_body());
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn futures_body(body: Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        let collected = body.collect();
        let mut collected = std::pin::pin!(collected);
        let waker = std::task::Waker::noop();
        match collected.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(Ok(c)) => c.to_bytes().to_vec(),
            _ => unreachable!("a Full body is ready at once"),
        }
    }

    #[test]
    fn metadata_config_and_versions() {
        let (status, meta) = call("GET", "/v2/models/m", "");
        assert_eq!(status, 200);
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, 2]));
        let (_, config) = call("GET", "/v2/models/m/versions/1/config", "");
        assert_eq!(config["max_batch_size"], 8);
        assert_eq!(config["dynamic_batching"]["max_queue_delay_microseconds"], 500);
        assert_eq!(config["input"][0]["dims"], json!([2]));
        assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(call("GET", "/v2/models/m/versions/2", "").0, 404);
        assert_eq!(call("GET", "/v2/models/other", "").0, 404);
        assert!(serve("GET", "/elsewhere", |_| None, b"", &[]).is_none());
    }

    #[test]
    fn bad_infer_requests_name_the_tensor() {
        let cases = [
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
                "input 'x': expected shape [-1, 2], got [1, 3]",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}"#,
                "input 'x': expected datatype FP32, got INT64",
            ),
            (r#"{"inputs": [{"name": "z", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}"#, "unknown input 'z'"),
            (r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1]}]}"#, "needs 2 values, got 1"),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#,
                "binary data is truncated",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#,
                "binary_data_size is 4 but shape [1, 2] of FP32 needs 8 bytes",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [100000000, 2], "datatype": "FP32", "parameters": {"binary_data_size": 0}}]}"#,
                "input 'x': shape [100000000, 2] is too large",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [9223372036854775807, 2], "datatype": "FP32", "data": []}]}"#,
                "input 'x': shape [9223372036854775807, 2] is too large",
            ),
            (r#"{"inputs": []}"#, "missing input 'x'"),
            (
                r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                               {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [3, 4]}]}"#,
                "input 'x' is given twice",
            ),
            (r#"{"inputs": "#, "invalid inference request"),
        ];
        for (body, message) in cases {
            let (status, answer) = call("POST", "/v2/models/m/infer", body);
            assert_eq!(status, 400, "{body}");
            assert!(answer["error"].as_str().unwrap().contains(message), "{answer} lacks {message}");
        }
        assert!(element_type("BYTES").unwrap_err().contains("cannot be passed to wasi:nn"));
    }
}
