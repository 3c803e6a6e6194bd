//! Just enough of the Open Inference Protocol (KServe v2) for `perf_analyzer`: model metadata,
//! Triton's model configuration, and `infer` with JSON tensors or Triton's binary tensor
//! extension, both ways. One FP32 input and one FP32 output, the first dimension the batch.

use serde::Deserialize;
use serde_json::{Value, json};

/// The binary tensor extension's header: the length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A tensor the model declares: `-1` marks a dimension the client chooses.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
}

/// The served model, as the metadata and configuration endpoints describe it.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub name: String,
    pub input: TensorInfo,
    pub output: TensorInfo,
    /// Largest first dimension a request may carry.
    pub max_batch_size: i64,
}

impl ModelInfo {
    /// `GET /v2/models/{m}`.
    pub fn metadata(&self) -> Value {
        let tensor = |t: &TensorInfo| json!({"name": t.name, "datatype": "FP32", "shape": t.shape});
        json!({
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor(&self.input)],
            "outputs": [tensor(&self.output)],
        })
    }

    /// `GET /v2/models/{m}/config`: Triton's configuration, as `perf_analyzer` reads it (dims
    /// without the batch dimension).
    pub fn config(&self) -> Value {
        let tensor = |t: &TensorInfo| json!({"name": t.name, "data_type": "TYPE_FP32", "dims": t.shape[1..]});
        json!({
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "max_batch_size": self.max_batch_size,
            "input": [tensor(&self.input)],
            "output": [tensor(&self.output)],
        })
    }

    /// Parses an `infer` body; `header_length` is the binary extension's header, if sent.
    pub fn parse_infer(&self, header_length: Option<usize>, body: &[u8]) -> Result<InferRequest, String> {
        let (json_part, binary) = match header_length {
            Some(n) if n <= body.len() => body.split_at(n),
            Some(n) => return Err(format!("{HEADER_LENGTH} is {n} but the body has only {} bytes", body.len())),
            None => (body, &[][..]),
        };
        let header: RequestHeader = serde_json::from_slice(json_part).map_err(|e| format!("invalid request JSON: {e}"))?;
        let [input] = &header.inputs[..] else {
            return Err(format!("expected 1 input ('{}'), got {}", self.input.name, header.inputs.len()));
        };
        if input.name != self.input.name || input.datatype != "FP32" {
            return Err(format!("expected FP32 input '{}', got {} '{}'", self.input.name, input.datatype, input.name));
        }
        let fits = input.shape.len() == self.input.shape.len()
            && input.shape.iter().zip(&self.input.shape).all(|(&got, &want)| got >= 1 && (want < 0 || got == want));
        if !fits || input.shape[0] > self.max_batch_size {
            return Err(format!(
                "expected shape {:?} with a batch of at most {}, got {:?}",
                self.input.shape, self.max_batch_size, input.shape
            ));
        }
        let elements = input.shape.iter().product::<i64>() as usize;
        let data = match (input.parameters.binary_data_size, &input.data) {
            (Some(size), _) => {
                if size != elements * 4 || binary.len() != size {
                    return Err(format!("expected {} bytes of binary data, got {} (of {size} declared)", elements * 4, binary.len()));
                }
                binary.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            (None, Some(data)) => {
                let mut values = Vec::with_capacity(elements);
                flatten(data, &mut values)?;
                if values.len() != elements {
                    return Err(format!("expected {elements} values for shape {:?}, got {}", input.shape, values.len()));
                }
                values
            }
            (None, None) => return Err(format!("input '{}' has neither data nor binary_data_size", input.name)),
        };
        let binary_output = header.outputs.iter().find(|o| o.name == self.output.name).and_then(|o| o.parameters.binary_data);
        Ok(InferRequest {
            id: header.id,
            shape: input.shape.clone(),
            data,
            binary_output: binary_output.or(header.parameters.binary_data_output).unwrap_or(false),
        })
    }

    /// An `infer` answer for `output` (row-major, `shape`): the body, and the binary extension's
    /// header length when the client asked for binary output.
    pub fn encode_infer(&self, request: &InferRequest, shape: &[i64], output: &[f32]) -> (Vec<u8>, Option<usize>) {
        let mut tensor = json!({"name": self.output.name, "datatype": "FP32", "shape": shape});
        if request.binary_output {
            tensor["parameters"] = json!({"binary_data_size": output.len() * 4});
        } else {
            tensor["data"] = json!(output);
        }
        let mut header = json!({"model_name": self.name, "model_version": "1", "outputs": [tensor]});
        if let Some(id) = &request.id {
            header["id"] = json!(id);
        }
        let mut body = header.to_string().into_bytes();
        if !request.binary_output {
            return (body, None);
        }
        let length = body.len();
        body.extend(output.iter().flat_map(|v| v.to_le_bytes()));
        (body, Some(length))
    }
}

/// A parsed `infer` request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
    pub binary_output: bool,
}

#[derive(Deserialize)]
struct RequestHeader {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Parameters,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// The protocol's free-form parameters; only the binary extension's are read.
#[derive(Default, Deserialize)]
struct Parameters {
    binary_data_size: Option<usize>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

/// JSON tensor data may be flat or nested row-major.
fn flatten(data: &Value, into: &mut Vec<f32>) -> Result<(), String> {
    match data {
        Value::Number(n) => into.push(n.as_f64().ok_or("a number out of range")? as f32),
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, into))?,
        other => return Err(format!("expected numbers in data, got {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            input: TensorInfo { name: "x".into(), shape: vec![-1, 2] },
            output: TensorInfo { name: "y".into(), shape: vec![-1, 1] },
            max_batch_size: 4,
        }
    }

    #[test]
    fn json_in_json_out() {
        let body = br#"{"id":"7","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1.5,2]]}]}"#;
        let request = model().parse_infer(None, body).unwrap();
        assert_eq!(request.data, [1.5, 2.0]);
        let (body, length) = model().encode_infer(&request, &[1, 1], &[0.25]);
        assert_eq!(length, None);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["id"], "7");
        assert_eq!(answer["outputs"][0]["data"], json!([0.25]));
    }

    #[test]
    fn binary_in_binary_out() {
        let header = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.to_vec();
        body.extend([1.0f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
        let request = model().parse_infer(Some(header.len()), &body).unwrap();
        assert_eq!(request.data, [1.0, -2.0]);
        let (body, length) = model().encode_infer(&request, &[1, 1], &[3.0]);
        let length = length.unwrap();
        assert_eq!(&body[length..], 3.0f32.to_le_bytes());
    }

    #[test]
    fn refuses_wrong_shapes_and_large_batches() {
        let wrong = br#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;
        assert!(model().parse_infer(None, wrong).unwrap_err().contains("expected shape [-1, 2]"));
        let large = br#"{"inputs":[{"name":"x","shape":[5,2],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,10]}]}"#;
        assert!(model().parse_infer(None, large).unwrap_err().contains("at most 4"));
    }
}
