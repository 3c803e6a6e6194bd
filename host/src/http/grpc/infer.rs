//! `ModelInfer` as the function's own `POST /v2/models/{m}/infer` with binary tensors: the
//! request's raw contents (or typed contents, converted) become the binary part of the body,
//! every output is asked for as binary data, and the answer's binary part becomes the reply's
//! raw output contents without a copy.

use super::messages::{
    InferOutputTensor, InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ParameterValue, Parameters,
};
use crate::telemetry::traces::clip;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tonic::Status;

/// The binary tensor extension's header: the length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Most inputs, requested outputs and parameters (in each map) a call may carry.
const MAX_ENTRIES: usize = 256;

/// Longest JSON part of a function's inference answer (its outputs' data are binary: the host
/// asks for them so).
const MAX_JSON_ANSWER: usize = 4 << 20;

/// A REST request body in the binary tensor extension's framing.
pub struct RestBody {
    /// The JSON header followed by the inputs' bytes.
    pub body: Bytes,
    /// The JSON header's length.
    pub header_length: usize,
}

/// The path of a model endpoint: `/v2/models/{name}[/versions/{version}]{suffix}`; names that
/// could lead anywhere else (a `/`, `..`, characters a path cannot hold) are refused.
pub fn model_path(name: &str, version: &str, suffix: &str) -> Result<String, Status> {
    let valid = |s: &str| {
        !matches!(s, "." | "..") && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'@'))
    };
    if name.is_empty() || !valid(name) || name == "stats" {
        return Err(Status::invalid_argument(format!(
            "'{}' is not a model name (letters, digits and -_.~+@ only; not 'stats')",
            clip(name)
        )));
    }
    if !valid(version) {
        return Err(Status::invalid_argument(format!("'{}' is not a model version (letters, digits and -_.~+@ only)", clip(version))));
    }
    Ok(match version {
        "" => format!("/v2/models/{name}{suffix}"),
        version => format!("/v2/models/{name}/versions/{version}{suffix}"),
    })
}

/// The REST body of a `ModelInfer` request, refused when its tensors would take more than
/// `max_bytes` (typed contents grow: a one-byte varint may be an eight-byte element).
pub fn to_rest(request: ModelInferRequest, max_bytes: usize) -> Result<RestBody, Status> {
    let ModelInferRequest { id, parameters, inputs, outputs, raw_input_contents, .. } = request;
    let many = |what: &str, n: usize| (n > MAX_ENTRIES).then(|| Status::invalid_argument(format!("{n} {what}: at most {MAX_ENTRIES}")));
    let maps = std::iter::once(&parameters).chain(inputs.iter().map(|i| &i.parameters)).chain(outputs.iter().map(|o| &o.parameters));
    let check = many("inputs", inputs.len())
        .or_else(|| many("requested outputs", outputs.len()))
        .or_else(|| maps.map(|m| m.len()).max().and_then(|n| many("parameters", n)))
        .or_else(|| {
            let rank = inputs.iter().map(|i| i.shape.len()).max().unwrap_or(0);
            (rank > spindle_tensor::MAX_TENSOR_RANK)
                .then(|| Status::invalid_argument(format!("a shape of rank {rank}: at most {}", spindle_tensor::MAX_TENSOR_RANK)))
        });
    if let Some(refused) = check {
        return Err(refused);
    }
    let total: usize = raw_input_contents.iter().map(Bytes::len).sum::<usize>()
        + inputs.iter().filter_map(|i| Some(contents_size(&i.datatype, i.contents.as_ref()?))).sum::<usize>();
    if total > max_bytes {
        return Err(Status::resource_exhausted(format!("the inputs take {total} bytes; the limit is {max_bytes}")));
    }
    if !raw_input_contents.is_empty() && raw_input_contents.len() != inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents has {} entries for {} inputs; it needs one per input, in order",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raw = raw_input_contents.into_iter();
    let mut data = Vec::with_capacity(inputs.len());
    let mut inputs_json = Vec::with_capacity(inputs.len());
    for input in inputs {
        let bytes = match (raw.next(), &input.contents) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(format!("input '{}' has contents and raw_input_contents: send one", input.name)));
            }
            (Some(raw), None) => raw,
            (None, Some(contents)) => contents_to_raw(&input.name, &input.datatype, contents)?,
            (None, None) => return Err(Status::invalid_argument(format!("input '{}' has no data", input.name))),
        };
        let mut parameters = parameters_json(&input.parameters);
        parameters.insert("binary_data_size".into(), json!(bytes.len()));
        inputs_json.push(json!({"name": input.name, "datatype": input.datatype, "shape": input.shape, "parameters": parameters}));
        data.push(bytes);
    }
    let mut request_parameters = parameters_json(&parameters);
    request_parameters.insert("binary_data_output".into(), json!(true));
    let mut header = json!({"inputs": inputs_json, "parameters": request_parameters});
    if !outputs.is_empty() {
        header["outputs"] = outputs
            .iter()
            .map(|o| {
                let mut parameters = parameters_json(&o.parameters);
                parameters.insert("binary_data".into(), json!(true));
                json!({"name": o.name, "parameters": parameters})
            })
            .collect();
    }
    if !id.is_empty() {
        header["id"] = json!(id);
    }
    let header = header.to_string();
    let mut body = Vec::with_capacity(header.len() + data.iter().map(Bytes::len).sum::<usize>());
    body.extend_from_slice(header.as_bytes());
    for bytes in &data {
        body.extend_from_slice(bytes);
    }
    Ok(RestBody { body: body.into(), header_length: header.len() })
}

/// The `ModelInfer` reply made of a REST answer: `header_length` from its
/// `Inference-Header-Content-Length` (none: all JSON).
pub fn from_rest(body: Bytes, header_length: Option<usize>) -> Result<ModelInferResponse, Status> {
    let header_length = header_length.unwrap_or(body.len());
    if header_length > MAX_JSON_ANSWER {
        return Err(Status::internal(format!(
            "the function's inference answer has {header_length} bytes of JSON; at most {MAX_JSON_ANSWER} (outputs go as binary data)"
        )));
    }
    if header_length > body.len() {
        return Err(Status::internal(format!(
            "the function's answer says its JSON part is {header_length} bytes, but it has {}",
            body.len()
        )));
    }
    let answer: Value = serde_json::from_slice(&body[..header_length])
        .map_err(|e| Status::internal(format!("the function's inference answer is not JSON: {e}")))?;
    let text = |key: &str| answer.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut reply = ModelInferResponse {
        model_name: text("model_name"),
        model_version: text("model_version"),
        id: text("id"),
        parameters: answer.get("parameters").map(parameters_proto).unwrap_or_default(),
        ..Default::default()
    };
    let mut offset = header_length;
    for output in answer.get("outputs").and_then(Value::as_array).into_iter().flatten() {
        let name = output.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let datatype = output.get("datatype").and_then(Value::as_str).unwrap_or_default().to_owned();
        let shape: Vec<i64> = output
            .get("shape")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|d| d.as_i64().filter(|d| *d >= 0))
            .collect::<Option<_>>()
            .ok_or_else(|| Status::internal(format!("output '{}': the function's shape is not a list of sizes", clip(&name))))?;
        let mut parameters = output.get("parameters").map(parameters_proto).unwrap_or_default();
        let bytes = match parameters.remove("binary_data_size").and_then(|p| p.value) {
            Some(ParameterValue::Int64(n)) if n >= 0 && offset + n as usize <= body.len() => {
                offset += n as usize;
                body.slice(offset - n as usize..offset)
            }
            Some(_) => {
                return Err(Status::internal(format!("output '{}': the function's binary_data_size does not fit its answer", clip(&name))));
            }
            None => json_to_raw(&name, &datatype, output.get("data").unwrap_or(&Value::Null))?,
        };
        reply.outputs.push(InferOutputTensor { name, datatype, shape, parameters });
        reply.raw_output_contents.push(bytes);
    }
    Ok(reply)
}

fn parameters_json(parameters: &Parameters) -> Map<String, Value> {
    parameters
        .iter()
        .filter_map(|(name, p)| {
            let value = match p.value.as_ref()? {
                ParameterValue::Bool(b) => json!(b),
                ParameterValue::Int64(i) => json!(i),
                ParameterValue::String(s) => json!(s),
                ParameterValue::Double(d) => json!(d),
                ParameterValue::Uint64(u) => json!(u),
            };
            Some((name.clone(), value))
        })
        .collect()
}

fn parameters_proto(parameters: &Value) -> Parameters {
    let Some(parameters) = parameters.as_object() else { return Parameters::new() };
    parameters
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                Value::Bool(b) => ParameterValue::Bool(*b),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => ParameterValue::Int64(i),
                    (None, Some(u), _) => ParameterValue::Uint64(u),
                    (_, _, Some(d)) => ParameterValue::Double(d),
                    _ => return None,
                },
                Value::String(s) => ParameterValue::String(s.clone()),
                _ => return None,
            };
            Some((name.clone(), InferParameter { value: Some(value) }))
        })
        .collect()
}

/// How many bytes `contents` take as raw contents of `datatype` (`BYTES` with their length prefixes).
fn contents_size(datatype: &str, c: &InferTensorContents) -> usize {
    match datatype {
        "BOOL" => c.bool_contents.len(),
        "INT8" => c.int_contents.len(),
        "INT16" => c.int_contents.len() * 2,
        "INT32" => c.int_contents.len() * 4,
        "INT64" => c.int64_contents.len() * 8,
        "UINT8" => c.uint_contents.len(),
        "UINT16" => c.uint_contents.len() * 2,
        "UINT32" => c.uint_contents.len() * 4,
        "UINT64" => c.uint64_contents.len() * 8,
        "FP32" => c.fp32_contents.len() * 4,
        "FP64" => c.fp64_contents.len() * 8,
        "BYTES" => c.bytes_contents.iter().map(|b| b.len() + 4).sum(),
        _ => 0,
    }
}

/// An input's typed contents as the little-endian bytes raw contents would hold.
fn contents_to_raw(name: &str, datatype: &str, c: &InferTensorContents) -> Result<Bytes, Status> {
    /// Each value narrowed to `T` (refused when out of its range), as little-endian bytes.
    fn narrowed<T, const N: usize>(
        name: &str,
        datatype: &str,
        values: &[impl Into<i64> + Copy],
        to_le: fn(T) -> [u8; N],
    ) -> Result<Vec<u8>, Status>
    where
        T: TryFrom<i64>,
    {
        let mut out = Vec::with_capacity(values.len() * N);
        for &v in values {
            let v: i64 = v.into();
            let narrow =
                T::try_from(v).map_err(|_| Status::invalid_argument(format!("input '{name}': {v} is out of range for {datatype}")))?;
            out.extend(to_le(narrow));
        }
        Ok(out)
    }
    let out = match datatype {
        "BOOL" => c.bool_contents.iter().map(|&b| u8::from(b)).collect(),
        "INT8" => narrowed(name, datatype, &c.int_contents, i8::to_le_bytes)?,
        "INT16" => narrowed(name, datatype, &c.int_contents, i16::to_le_bytes)?,
        "INT32" => c.int_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "INT64" => c.int64_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "UINT8" => narrowed(name, datatype, &c.uint_contents, u8::to_le_bytes)?,
        "UINT16" => narrowed(name, datatype, &c.uint_contents, u16::to_le_bytes)?,
        "UINT32" => c.uint_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "UINT64" => c.uint64_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "FP32" => c.fp32_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "FP64" => c.fp64_contents.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "BYTES" => {
            let mut out = Vec::new();
            for element in &c.bytes_contents {
                let length =
                    u32::try_from(element.len()).map_err(|_| Status::invalid_argument(format!("input '{name}': an element over 4 GiB")))?;
                out.extend(length.to_le_bytes());
                out.extend_from_slice(element);
            }
            out
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "input '{name}': {other} has no typed contents in the protocol; send it in raw_input_contents"
            )));
        }
    };
    Ok(out.into())
}

/// An output the function answered as JSON `data`, as raw little-endian bytes.
fn json_to_raw(name: &str, datatype: &str, data: &Value) -> Result<Bytes, Status> {
    fn flatten<'v>(value: &'v Value, into: &mut Vec<&'v Value>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| flatten(v, into)),
            other => into.push(other),
        }
    }
    let mut values = Vec::new();
    flatten(data, &mut values);
    let bad = || Status::internal(format!("output '{name}': the function's JSON data is not {datatype}"));
    let mut out = Vec::new();
    for v in values {
        let f = || v.as_f64().ok_or_else(bad);
        let i = || v.as_i64().ok_or_else(bad);
        let u = || v.as_u64().ok_or_else(bad);
        match datatype {
            "BOOL" => out.push(u8::from(v.as_bool().ok_or_else(bad)?)),
            "INT8" => out.push(i()? as i8 as u8),
            "INT16" => out.extend((i()? as i16).to_le_bytes()),
            "INT32" => out.extend((i()? as i32).to_le_bytes()),
            "INT64" => out.extend(i()?.to_le_bytes()),
            "UINT8" => out.push(u()? as u8),
            "UINT16" => out.extend((u()? as u16).to_le_bytes()),
            "UINT32" => out.extend((u()? as u32).to_le_bytes()),
            "UINT64" => out.extend(u()?.to_le_bytes()),
            "FP32" => out.extend((f()? as f32).to_le_bytes()),
            "FP64" => out.extend(f()?.to_le_bytes()),
            "BYTES" => {
                let s = v.as_str().ok_or_else(bad)?;
                out.extend((s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            _ => return Err(bad()),
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::super::messages::{InferInputTensor, InferRequestedOutputTensor};
    use super::*;

    fn input(name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: datatype.into(), shape: shape.to_vec(), parameters: Parameters::new(), contents }
    }

    #[test]
    fn raw_inputs_follow_the_json_header_with_their_sizes() {
        let request = ModelInferRequest {
            model_name: "m".into(),
            id: "req-1".into(),
            inputs: vec![input("a", "FP32", &[1, 2], None), input("b", "UINT8", &[3], None)],
            outputs: vec![InferRequestedOutputTensor { name: "y".into(), parameters: Parameters::new() }],
            raw_input_contents: vec![Bytes::from(vec![0u8; 8]), Bytes::from_static(&[1, 2, 3])],
            ..Default::default()
        };
        let rest = to_rest(request, usize::MAX).unwrap();
        let header: Value = serde_json::from_slice(&rest.body[..rest.header_length]).unwrap();
        assert_eq!(header["id"], "req-1");
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["inputs"][1]["parameters"]["binary_data_size"], 3);
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        assert_eq!(&rest.body[rest.header_length..], &[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
    }

    #[test]
    fn typed_contents_become_raw_bytes_and_out_of_range_is_refused() {
        let contents = InferTensorContents { fp32_contents: vec![1.5, -2.0], ..Default::default() };
        let rest = to_rest(ModelInferRequest { inputs: vec![input("x", "FP32", &[2], Some(contents))], ..Default::default() }, usize::MAX)
            .unwrap();
        let raw: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(&rest.body[rest.header_length..], &raw[..]);

        let contents = InferTensorContents { uint_contents: vec![256], ..Default::default() };
        let err = to_rest(ModelInferRequest { inputs: vec![input("x", "UINT8", &[1], Some(contents))], ..Default::default() }, usize::MAX)
            .err()
            .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("256 is out of range for UINT8"), "{}", err.message());
    }

    #[test]
    fn missing_or_doubled_data_is_refused() {
        let err =
            to_rest(ModelInferRequest { inputs: vec![input("x", "FP32", &[1], None)], ..Default::default() }, usize::MAX).err().unwrap();
        assert_eq!(err.message(), "input 'x' has no data");
        let request = ModelInferRequest {
            inputs: vec![input("x", "FP32", &[1], None), input("y", "FP32", &[1], None)],
            raw_input_contents: vec![Bytes::from_static(&[0; 4])],
            ..Default::default()
        };
        assert!(to_rest(request, usize::MAX).err().unwrap().message().contains("1 entries for 2 inputs"));
    }

    #[test]
    fn binary_answers_are_sliced_and_json_data_converted() {
        let header = json!({"model_name": "m", "model_version": "1", "id": "r", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
            {"name": "k", "datatype": "INT64", "shape": [2], "data": [[3], [4]]},
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend([1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()));
        let reply = from_rest(Bytes::from(body), Some(header.len())).unwrap();
        assert_eq!((reply.model_name.as_str(), reply.model_version.as_str(), reply.id.as_str()), ("m", "1", "r"));
        assert_eq!(reply.outputs[0].shape, vec![1, 2]);
        assert!(reply.outputs[0].parameters.is_empty(), "binary_data_size is the REST framing's, not the reply's");
        assert_eq!(&reply.raw_output_contents[0][..], &[1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()[..]);
        assert_eq!(&reply.raw_output_contents[1][..], &[3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn a_binary_size_past_the_end_is_an_internal_error() {
        let header =
            json!({"outputs": [{"name": "y", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}]}).to_string();
        let mut body = header.clone().into_bytes();
        body.extend([0u8; 8]);
        assert_eq!(from_rest(Bytes::from(body), Some(header.len())).err().unwrap().code(), tonic::Code::Internal);
    }

    #[test]
    fn model_names_cannot_leave_the_model_endpoints() {
        assert_eq!(model_path("cifar10", "", "/infer").unwrap(), "/v2/models/cifar10/infer");
        assert_eq!(model_path("cifar10", "1", "/config").unwrap(), "/v2/models/cifar10/versions/1/config");
        for name in ["", "..", "a/../../v2", "a?b", "a b", "a%2f", "stats"] {
            assert_eq!(model_path(name, "", "").err().unwrap().code(), tonic::Code::InvalidArgument, "{name:?}");
        }
        assert!(model_path("m", "../x", "").is_err());
    }
}

#[cfg(test)]
mod bounds {
    use super::super::messages::InferInputTensor;
    use super::*;

    #[test]
    fn typed_contents_count_at_their_element_size_against_the_limit() {
        let contents = InferTensorContents { int64_contents: vec![0; 100], ..Default::default() };
        let input = InferInputTensor {
            name: "x".into(),
            datatype: "INT64".into(),
            shape: vec![100],
            contents: Some(contents),
            ..Default::default()
        };
        let request = ModelInferRequest { inputs: vec![input], ..Default::default() };
        assert!(to_rest(request.clone(), 800).is_ok());
        assert_eq!(to_rest(request, 799).err().unwrap().code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn too_many_inputs_or_too_high_a_rank_is_refused() {
        let input = |shape: Vec<i64>| InferInputTensor { name: "x".into(), datatype: "FP32".into(), shape, ..Default::default() };
        let request = ModelInferRequest { inputs: vec![input(vec![1]); 257], ..Default::default() };
        assert!(to_rest(request, usize::MAX).err().unwrap().message().contains("257 inputs"));
        let request = ModelInferRequest { inputs: vec![input(vec![1; 9])], ..Default::default() };
        assert!(to_rest(request, usize::MAX).err().unwrap().message().contains("rank 9"));
    }

    #[test]
    fn a_huge_or_malformed_json_answer_is_refused() {
        let big = Bytes::from(vec![b' '; MAX_JSON_ANSWER + 1]);
        assert_eq!(from_rest(big, None).err().unwrap().code(), tonic::Code::Internal);
        let odd = Bytes::from(json!({"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1], "data": []}]}).to_string());
        assert!(from_rest(odd, None).err().unwrap().message().contains("not a list of sizes"));
    }
}
