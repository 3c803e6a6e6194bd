//! A model's declared description (`model.json`, our analogue of Triton's `config.pbtxt`) read
//! from its ONNX graph: the inputs a client feeds and the outputs it computes (not the
//! initializers ONNX may also list as either), each with its Open Inference Protocol datatype and shape, `-1` for a
//! symbolic dimension. The same rules as `models/describe.py`, with no Python.

use prost::Message;
use serde::Serialize;
use std::collections::HashSet;
use tract_onnx::pb::{self, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto};

/// What is in `model.json`; field names and order as the SDK's `ModelConfig` reads them.
#[derive(Debug, Serialize, PartialEq)]
pub struct ModelDescription {
    /// The model's name, as in `/v2/models/{name}`.
    pub name: String,
    /// Always `onnxruntime_onnx`.
    pub platform: String,
    /// `["1"]`.
    pub versions: Vec<String>,
    /// Largest batch; 0 when the first dimension is not a batch.
    pub max_batch_size: u32,
    /// The tensors a client feeds, in graph order.
    pub inputs: Vec<TensorDescription>,
    /// The tensors the graph answers, in graph order.
    pub outputs: Vec<TensorDescription>,
    /// Triton's `dynamic_batching`, present when queueing is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
}

/// Triton's `dynamic_batching` block.
#[derive(Debug, Serialize, PartialEq)]
pub struct DynamicBatching {
    /// How long a compute may wait for others to join it.
    pub max_queue_delay_microseconds: u64,
}

/// One declared tensor.
#[derive(Debug, Serialize, PartialEq, Clone)]
pub struct TensorDescription {
    /// The graph's name for it.
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, ...).
    pub datatype: String,
    /// Dimensions, `-1` where the graph names a symbol or gives none.
    pub shape: Vec<i64>,
}

/// Why a file could not be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// Not a protobuf `ModelProto`.
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// A `ModelProto` without a graph: what most other files decode as, too.
    #[error("not an ONNX model: it has no graph")]
    NoGraph,
    /// Weights in files beside the model, which a mounted `model.onnx` alone would lack.
    #[error(
        "initializer '{0}' is stored in an external data file; save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))"
    )]
    ExternalData(String),
    /// A sequence, map or optional value, which the protocol cannot carry.
    #[error("{role} '{name}' is not a tensor; the Open Inference Protocol carries tensors only")]
    NotTensor {
        /// `input` or `output`.
        role: &'static str,
        /// Its name.
        name: String,
    },
    /// An element type with no protocol datatype (complex numbers, 8-bit floats, ...).
    #[error("{role} '{name}' has ONNX element type {elem_type}, which has no Open Inference Protocol datatype")]
    Datatype {
        /// `input` or `output`.
        role: &'static str,
        /// Its name.
        name: String,
        /// The ONNX `DataType` name.
        elem_type: String,
    },
}

/// Describes the ONNX model in `bytes` as `name`.
pub fn describe(bytes: &[u8], name: &str, max_batch_size: u32, max_queue_delay_us: Option<u64>) -> Result<ModelDescription, DescribeError> {
    let model = pb::ModelProto::decode(bytes).map_err(|e| DescribeError::NotOnnx(e.to_string()))?;
    let graph = model.graph.ok_or(DescribeError::NoGraph)?;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs =
        graph.input.iter().filter(|v| !initializers.contains(v.name.as_str())).map(|v| tensor(v, "input")).collect::<Result<_, _>>()?;
    let outputs =
        graph.output.iter().filter(|v| !initializers.contains(v.name.as_str())).map(|v| tensor(v, "output")).collect::<Result<_, _>>()?;
    Ok(ModelDescription {
        name: name.to_owned(),
        platform: "onnxruntime_onnx".into(),
        versions: vec!["1".into()],
        max_batch_size,
        inputs,
        outputs,
        dynamic_batching: max_queue_delay_us.map(|us| DynamicBatching { max_queue_delay_microseconds: us }),
    })
}

impl ModelDescription {
    /// `model.json`'s text: two-space indented, with a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a description serializes") + "\n"
    }
}

fn tensor(value: &pb::ValueInfoProto, role: &'static str) -> Result<TensorDescription, DescribeError> {
    let name = value.name.clone();
    let Some(pb::TypeProto { value: Some(type_proto::Value::TensorType(tensor)), .. }) = &value.r#type else {
        return Err(DescribeError::NotTensor { role, name });
    };
    let elem_type = DataType::try_from(tensor.elem_type).map_or_else(|_| tensor.elem_type.to_string(), |t| t.as_str_name().to_owned());
    let Some(datatype) = datatype(tensor.elem_type) else {
        return Err(DescribeError::Datatype { role, name, elem_type });
    };
    let shape = tensor
        .shape
        .iter()
        .flat_map(|s| &s.dim)
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(n)) => n,
            _ => -1,
        })
        .collect();
    Ok(TensorDescription { name, datatype: datatype.to_owned(), shape })
}

/// The protocol's name for an ONNX element type.
fn datatype(elem_type: i32) -> Option<&'static str> {
    Some(match DataType::try_from(elem_type).ok()? {
        DataType::Float => "FP32",
        DataType::Uint8 => "UINT8",
        DataType::Int8 => "INT8",
        DataType::Uint16 => "UINT16",
        DataType::Int16 => "INT16",
        DataType::Int32 => "INT32",
        DataType::Int64 => "INT64",
        DataType::String => "BYTES",
        DataType::Bool => "BOOL",
        DataType::Float16 => "FP16",
        DataType::Double => "FP64",
        DataType::Uint32 => "UINT32",
        DataType::Uint64 => "UINT64",
        DataType::Bfloat16 => "BF16",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, elem_type: DataType, dims: &[Option<i64>]) -> pb::ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| pb::tensor_shape_proto::Dimension {
                value: Some(d.map_or_else(|| dimension::Value::DimParam("batch".into()), dimension::Value::DimValue)),
                ..Default::default()
            })
            .collect();
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: elem_type as i32,
                    shape: Some(pb::TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn model(graph: pb::GraphProto) -> Vec<u8> {
        pb::ModelProto { graph: Some(graph), ..Default::default() }.encode_to_vec()
    }

    #[test]
    fn initializers_listed_as_inputs_are_not_inputs() {
        let graph = pb::GraphProto {
            input: vec![value("ids", DataType::Int64, &[None, Some(8)]), value("weight", DataType::Float, &[Some(8)])],
            output: vec![value("out", DataType::Float16, &[None])],
            initializer: vec![pb::TensorProto { name: "weight".into(), ..Default::default() }],
            ..Default::default()
        };
        let d = describe(&model(graph), "m", 4, Some(100)).unwrap();
        assert_eq!(d.inputs, [TensorDescription { name: "ids".into(), datatype: "INT64".into(), shape: vec![-1, 8] }]);
        assert_eq!(d.outputs[0].datatype, "FP16");
        assert_eq!(d.dynamic_batching, Some(DynamicBatching { max_queue_delay_microseconds: 100 }));
        assert!(d.to_json().contains("\"max_queue_delay_microseconds\": 100"));
    }

    #[test]
    fn what_the_protocol_cannot_carry_is_named() {
        let graph = pb::GraphProto { input: vec![value("z", DataType::Complex64, &[Some(2)])], ..Default::default() };
        let e = describe(&model(graph), "m", 0, None).unwrap_err().to_string();
        assert!(e.contains("input 'z'") && e.contains("COMPLEX64"), "{e}");
        let graph = pb::GraphProto { output: vec![pb::ValueInfoProto { name: "seq".into(), ..Default::default() }], ..Default::default() };
        assert!(describe(&model(graph), "m", 0, None).unwrap_err().to_string().contains("output 'seq' is not a tensor"));
    }

    #[test]
    fn other_files_are_not_onnx() {
        for other in [&b"\x89PNG\r\n\x1a\n not onnx"[..], b"hello", &pb::ModelProto::default().encode_to_vec()] {
            assert!(describe(other, "m", 0, None).unwrap_err().to_string().starts_with("not an ONNX model"));
        }
    }
}
