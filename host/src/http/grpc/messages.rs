//! The messages of `inference.GRPCInferenceService` that Spindle serves: the Open Inference
//! Protocol's (KServe v2) and, where the REST side has them, Triton's `ModelConfig`,
//! `ModelStatistics` and `RepositoryIndex`.
//!
//! Written by hand from the protocol's specification: only the fields Spindle fills or reads,
//! with the protocol's field numbers, so any client built from the full `.proto` files
//! (`tritonclient.grpc`, `perf_analyzer`, KServe's) reads them. Each message the REST side
//! answers as JSON also derives `Deserialize`, because that JSON is the protobuf JSON mapping of
//! the same message: the gRPC answer is the REST answer, decoded.

use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;

/// `ServerLive` and `ServerReady`'s request, and `ServerMetadata`'s: nothing.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `ServerLive`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct ServerLiveResponse {
    /// Whether the server is live.
    #[prost(bool, tag = "1")]
    #[serde(default)]
    pub live: bool,
}

/// `ServerReady`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct ServerReadyResponse {
    /// Whether the server is ready.
    #[prost(bool, tag = "1")]
    #[serde(default)]
    pub ready: bool,
}

/// A model and, optionally, its version: what `ModelReady`, `ModelMetadata`, `ModelConfig` and
/// `ModelStatistics` ask about.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelRequest {
    /// The model's name (empty: every model, for `ModelStatistics`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version (empty: the server's choice).
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `ModelReady`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct ModelReadyResponse {
    /// Whether the model is ready.
    #[prost(bool, tag = "1")]
    #[serde(default)]
    pub ready: bool,
}

/// `ServerMetadata`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ServerMetadataResponse {
    /// The server's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The server's version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// The protocol extensions it supports.
    #[prost(string, repeated, tag = "3")]
    pub extensions: Vec<String>,
}

/// `ModelMetadata`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelMetadataResponse {
    /// The model's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its versions.
    #[prost(string, repeated, tag = "2")]
    pub versions: Vec<String>,
    /// Its platform (`onnxruntime_onnx`, ...).
    #[prost(string, tag = "3")]
    pub platform: String,
    /// Its inputs.
    #[prost(message, repeated, tag = "4")]
    pub inputs: Vec<TensorMetadata>,
    /// Its outputs.
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<TensorMetadata>,
}

/// A tensor a model takes or gives.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct TensorMetadata {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its datatype (`FP32`, ...).
    #[prost(string, tag = "2")]
    pub datatype: String,
    /// Its shape, `-1` for a variable dimension.
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
}

/// A parameter's value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferParameter {
    /// The value, of one of the protocol's kinds.
    #[prost(oneof = "ParameterValue", tags = "1, 2, 3, 4, 5")]
    pub value: Option<ParameterValue>,
}

/// The kinds of value a parameter has.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterValue {
    /// A boolean.
    #[prost(bool, tag = "1")]
    Bool(bool),
    /// A signed integer.
    #[prost(int64, tag = "2")]
    Int64(i64),
    /// A string.
    #[prost(string, tag = "3")]
    String(String),
    /// A double.
    #[prost(double, tag = "4")]
    Double(f64),
    /// An unsigned integer.
    #[prost(uint64, tag = "5")]
    Uint64(u64),
}

/// Named parameters, on a request, a response or a tensor.
pub type Parameters = HashMap<String, InferParameter>;

/// A tensor's elements in the repeated field of its datatype (the alternative to raw bytes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferTensorContents {
    /// `BOOL`.
    #[prost(bool, repeated, tag = "1")]
    pub bool_contents: Vec<bool>,
    /// `INT8`, `INT16`, `INT32`.
    #[prost(int32, repeated, tag = "2")]
    pub int_contents: Vec<i32>,
    /// `INT64`.
    #[prost(int64, repeated, tag = "3")]
    pub int64_contents: Vec<i64>,
    /// `UINT8`, `UINT16`, `UINT32`.
    #[prost(uint32, repeated, tag = "4")]
    pub uint_contents: Vec<u32>,
    /// `UINT64`.
    #[prost(uint64, repeated, tag = "5")]
    pub uint64_contents: Vec<u64>,
    /// `FP32`.
    #[prost(float, repeated, tag = "6")]
    pub fp32_contents: Vec<f32>,
    /// `FP64`.
    #[prost(double, repeated, tag = "7")]
    pub fp64_contents: Vec<f64>,
    /// `BYTES`, one entry per element.
    #[prost(bytes = "bytes", repeated, tag = "8")]
    pub bytes_contents: Vec<Bytes>,
}

/// `ModelInfer`'s request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferRequest {
    /// The model.
    #[prost(string, tag = "1")]
    pub model_name: String,
    /// Its version (empty: the server's choice).
    #[prost(string, tag = "2")]
    pub model_version: String,
    /// The request's id, returned in the response.
    #[prost(string, tag = "3")]
    pub id: String,
    /// Request parameters.
    #[prost(map = "string, message", tag = "4")]
    pub parameters: Parameters,
    /// The inputs.
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<InferInputTensor>,
    /// The outputs asked for (none: all of them).
    #[prost(message, repeated, tag = "6")]
    pub outputs: Vec<InferRequestedOutputTensor>,
    /// Each input's data, in the order of `inputs`, when not in their `contents`.
    #[prost(bytes = "bytes", repeated, tag = "7")]
    pub raw_input_contents: Vec<Bytes>,
}

/// An input tensor of a `ModelInfer` request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferInputTensor {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its datatype.
    #[prost(string, tag = "2")]
    pub datatype: String,
    /// Its shape.
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
    /// Its parameters.
    #[prost(map = "string, message", tag = "4")]
    pub parameters: Parameters,
    /// Its elements, when not in `raw_input_contents`.
    #[prost(message, optional, tag = "5")]
    pub contents: Option<InferTensorContents>,
}

/// An output a `ModelInfer` request asks for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferRequestedOutputTensor {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its parameters.
    #[prost(map = "string, message", tag = "2")]
    pub parameters: Parameters,
}

/// `ModelInfer`'s answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferResponse {
    /// The model.
    #[prost(string, tag = "1")]
    pub model_name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub model_version: String,
    /// The request's id.
    #[prost(string, tag = "3")]
    pub id: String,
    /// Response parameters.
    #[prost(map = "string, message", tag = "4")]
    pub parameters: Parameters,
    /// The outputs.
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<InferOutputTensor>,
    /// Each output's data, in the order of `outputs`.
    #[prost(bytes = "bytes", repeated, tag = "6")]
    pub raw_output_contents: Vec<Bytes>,
}

/// An output tensor of a `ModelInfer` answer (its data is in `raw_output_contents`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferOutputTensor {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its datatype.
    #[prost(string, tag = "2")]
    pub datatype: String,
    /// Its shape.
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
    /// Its parameters.
    #[prost(map = "string, message", tag = "4")]
    pub parameters: Parameters,
}

/// Triton's `ModelConfig` answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
pub struct ModelConfigResponse {
    /// The configuration.
    #[prost(message, optional, tag = "1")]
    pub config: Option<ModelConfig>,
}

/// Triton's model configuration: the part of it a Spindle model has.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// The model's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its platform.
    #[prost(string, tag = "2")]
    pub platform: String,
    /// Its backend.
    #[prost(string, tag = "17")]
    pub backend: String,
    /// Its largest batch; 0 when its tensors have no batch dimension.
    #[prost(int32, tag = "4")]
    pub max_batch_size: i32,
    /// Its inputs.
    #[prost(message, repeated, tag = "5")]
    pub input: Vec<ModelInput>,
    /// Its outputs.
    #[prost(message, repeated, tag = "6")]
    pub output: Vec<ModelOutput>,
    /// Its dynamic batching (one choice of the configuration's scheduling).
    #[prost(message, optional, tag = "11")]
    pub dynamic_batching: Option<ModelDynamicBatching>,
}

/// An input in a model configuration.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelInput {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type, Triton's `DataType` enum.
    #[prost(int32, tag = "2")]
    #[serde(deserialize_with = "data_type")]
    pub data_type: i32,
    /// Its dimensions, the batch dimension left out when the model batches.
    #[prost(int64, repeated, tag = "4")]
    pub dims: Vec<i64>,
}

/// An output in a model configuration.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelOutput {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type, Triton's `DataType` enum.
    #[prost(int32, tag = "2")]
    #[serde(deserialize_with = "data_type")]
    pub data_type: i32,
    /// Its dimensions, the batch dimension left out when the model batches.
    #[prost(int64, repeated, tag = "3")]
    pub dims: Vec<i64>,
}

/// A model's dynamic batching settings.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelDynamicBatching {
    /// Batch sizes the batcher prefers.
    #[prost(int32, repeated, tag = "1")]
    pub preferred_batch_size: Vec<i32>,
    /// How long a request may wait for others to join its batch.
    #[prost(uint64, tag = "2")]
    pub max_queue_delay_microseconds: u64,
}

/// Triton's `DataType` enum, by the name its JSON mapping uses (`TYPE_FP32`: 11).
fn data_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    const NAMES: [&str; 15] = [
        "TYPE_INVALID",
        "TYPE_BOOL",
        "TYPE_UINT8",
        "TYPE_UINT16",
        "TYPE_UINT32",
        "TYPE_UINT64",
        "TYPE_INT8",
        "TYPE_INT16",
        "TYPE_INT32",
        "TYPE_INT64",
        "TYPE_FP16",
        "TYPE_FP32",
        "TYPE_FP64",
        "TYPE_STRING",
        "TYPE_BF16",
    ];
    let name = String::deserialize(deserializer)?;
    let name = if name == "TYPE_BYTES" { "TYPE_STRING" } else { &name };
    NAMES.iter().position(|n| *n == name).map(|i| i as i32).ok_or_else(|| serde::de::Error::custom(format!("unknown data_type {name}")))
}

/// `ModelStatistics`'s answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelStatisticsResponse {
    /// One entry per model.
    #[prost(message, repeated, tag = "1")]
    pub model_stats: Vec<ModelStatistics>,
}

/// One model's statistics, as the statistics extension counts them.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelStatistics {
    /// The model.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// When it last ran, in milliseconds since the epoch.
    #[prost(uint64, tag = "3")]
    pub last_inference: u64,
    /// Rows inferred.
    #[prost(uint64, tag = "4")]
    pub inference_count: u64,
    /// Engine runs.
    #[prost(uint64, tag = "5")]
    pub execution_count: u64,
    /// Time spent, by stage.
    #[prost(message, optional, tag = "6")]
    pub inference_stats: Option<InferStatistics>,
    /// Time spent, by batch size.
    #[prost(message, repeated, tag = "7")]
    pub batch_stats: Vec<InferBatchStatistics>,
}

/// A count and the nanoseconds it took in all.
#[derive(Clone, Copy, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct StatisticDuration {
    /// How many.
    #[prost(uint64, tag = "1")]
    pub count: u64,
    /// Their total time in nanoseconds.
    #[prost(uint64, tag = "2")]
    pub ns: u64,
}

/// Time spent, by stage.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct InferStatistics {
    /// Successful requests.
    #[prost(message, optional, tag = "1")]
    pub success: Option<StatisticDuration>,
    /// Failed requests.
    #[prost(message, optional, tag = "2")]
    pub fail: Option<StatisticDuration>,
    /// Waiting for a batch and an engine.
    #[prost(message, optional, tag = "3")]
    pub queue: Option<StatisticDuration>,
    /// Preparing inputs.
    #[prost(message, optional, tag = "4")]
    pub compute_input: Option<StatisticDuration>,
    /// The engine's run.
    #[prost(message, optional, tag = "5")]
    pub compute_infer: Option<StatisticDuration>,
    /// Extracting outputs.
    #[prost(message, optional, tag = "6")]
    pub compute_output: Option<StatisticDuration>,
    /// Response cache hits (Spindle has no response cache).
    #[prost(message, optional, tag = "7")]
    pub cache_hit: Option<StatisticDuration>,
    /// Response cache misses.
    #[prost(message, optional, tag = "8")]
    pub cache_miss: Option<StatisticDuration>,
}

/// Time spent by engine runs of one batch size.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct InferBatchStatistics {
    /// The batch size.
    #[prost(uint64, tag = "1")]
    pub batch_size: u64,
    /// Preparing inputs.
    #[prost(message, optional, tag = "2")]
    pub compute_input: Option<StatisticDuration>,
    /// The engine's run.
    #[prost(message, optional, tag = "3")]
    pub compute_infer: Option<StatisticDuration>,
    /// Extracting outputs.
    #[prost(message, optional, tag = "4")]
    pub compute_output: Option<StatisticDuration>,
}

/// Triton's `RepositoryIndex` request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RepositoryIndexRequest {
    /// The repository (Spindle has one: the app).
    #[prost(string, tag = "1")]
    pub repository_name: String,
    /// Only the models ready now.
    #[prost(bool, tag = "2")]
    pub ready: bool,
}

/// Triton's `RepositoryIndex` answer.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(transparent)]
pub struct RepositoryIndexResponse {
    /// The models.
    #[prost(message, repeated, tag = "1")]
    pub models: Vec<ModelIndex>,
}

/// A model in the repository's index.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default)]
pub struct ModelIndex {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// `READY`, ...
    #[prost(string, tag = "3")]
    pub state: String,
    /// Why it is in that state.
    #[prost(string, tag = "4")]
    pub reason: String,
}
