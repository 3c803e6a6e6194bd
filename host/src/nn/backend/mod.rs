//! The engine seam: one [`Backend`] per inference engine, one file each.
//!
//! Stages follow wasi-nn's lifetimes: a backend [`Backend::load`]s model bytes into a compiled
//! [`Graph`] once per host (shared by every instance through the [`GraphCache`]), and each
//! `compute` runs that graph on validated [`Tensor`]s.
//!
//! [`GraphCache`]: crate::nn::registry::GraphCache

pub mod onnxruntime;
pub mod tract;

use std::fmt;
use std::sync::Arc;

/// Element types a tensor can hold, as wasi-nn names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    F16,
    F32,
    F64,
    Bf16,
    U8,
    I32,
    I64,
}

impl ElementType {
    /// Size in bytes of one element.
    pub fn size(self) -> usize {
        match self {
            ElementType::U8 => 1,
            ElementType::F16 | ElementType::Bf16 => 2,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F64 | ElementType::I64 => 8,
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ElementType::F16 => "fp16",
            ElementType::F32 => "fp32",
            ElementType::F64 => "fp64",
            ElementType::Bf16 => "bf16",
            ElementType::U8 => "u8",
            ElementType::I32 => "i32",
            ElementType::I64 => "i64",
        };
        f.write_str(name)
    }
}

/// A dense, row-major, little-endian tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub dims: Vec<u32>,
    pub ty: ElementType,
    pub data: Vec<u8>,
}

/// Tensors larger than this are refused before any engine sees them.
pub const MAX_TENSOR_BYTES: usize = 256 << 20;
/// Tensors of higher rank are refused before any engine sees them.
pub const MAX_TENSOR_RANK: usize = 8;

impl Tensor {
    /// Checks that the dimensions are sane and that `data` holds exactly
    /// `product(dims) × element size` bytes.
    pub fn validate(&self, name: &str) -> Result<(), BackendError> {
        if self.dims.len() > MAX_TENSOR_RANK {
            return Err(BackendError::InvalidInput(format!(
                "tensor '{name}' has rank {}, at most {MAX_TENSOR_RANK} is allowed",
                self.dims.len()
            )));
        }
        let elements = self
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
            .filter(|&n| n.saturating_mul(self.ty.size()) <= MAX_TENSOR_BYTES)
            .ok_or_else(|| {
                BackendError::TooLarge(format!(
                    "tensor '{name}' with dimensions {:?} exceeds {MAX_TENSOR_BYTES} bytes",
                    self.dims
                ))
            })?;
        let expected = elements * self.ty.size();
        if expected != self.data.len() {
            return Err(BackendError::InvalidInput(format!(
                "tensor '{name}': dimensions {:?} of {} need {expected} bytes, got {}",
                self.dims,
                self.ty,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// A dimension as a model declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(u64),
    /// A symbolic dimension (a batch size, a sequence length): any size is accepted.
    Symbol(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// Name, element type and shape of one model input or output.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub ty: ElementType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// Human form, e.g. `[batch, 32, 32, 3] fp32`.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        format!("[{}] {}", dims.join(", "), self.ty)
    }

    /// Checks a tensor against this spec, naming the tensor and both shapes on mismatch.
    pub fn check(&self, tensor: &Tensor) -> Result<(), BackendError> {
        let matches = tensor.ty == self.ty
            && tensor.dims.len() == self.shape.len()
            && tensor.dims.iter().zip(&self.shape).all(|(&got, want)| match want {
                Dim::Fixed(n) => u64::from(got) == *n,
                Dim::Symbol(_) => got > 0,
            });
        if matches {
            return Ok(());
        }
        Err(BackendError::InvalidInput(format!(
            "input '{}': expected {}, got {:?} {}",
            self.name,
            self.describe(),
            tensor.dims,
            tensor.ty
        )))
    }
}

/// A named tensor, as `compute` takes and returns them.
pub type NamedTensor = (String, Tensor);

/// Errors at the engine seam; each maps to one wasi-nn error code.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("inference failed: {0}")]
    Runtime(String),
}

/// Where an engine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inference engine.
pub trait Backend: Send + Sync + 'static {
    /// Short name, used in logs and cache keys (`"tract"`).
    fn name(&self) -> &'static str;
    /// Where it computes.
    fn device(&self) -> Device {
        Device::Cpu
    }
    /// Compiles model bytes (ONNX) into a runnable graph.
    fn load(&self, model: &[u8]) -> Result<Arc<dyn Graph>, BackendError>;
}

/// A compiled model, shared by every instance that loads the same bytes.
pub trait Graph: Send + Sync + 'static {
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the model. Inputs were validated against [`Graph::inputs`] and come in its order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
}

/// Validates named inputs against the graph, orders them as the graph declares, runs it and
/// names the outputs. Engine panics become [`BackendError::Runtime`].
pub fn compute(graph: &dyn Graph, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
    let specs = graph.inputs();
    let expected = || specs.iter().map(|s| format!("'{}' {}", s.name, s.describe())).collect::<Vec<_>>().join(", ");
    let mut ordered: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (name, tensor) in inputs {
        tensor.validate(&name)?;
        let Some(index) = specs.iter().position(|s| s.name == name) else {
            return Err(BackendError::InvalidInput(format!(
                "unknown input '{name}'; the model takes {}",
                expected()
            )));
        };
        if ordered[index].is_some() {
            return Err(BackendError::InvalidInput(format!("input '{name}' given twice")));
        }
        specs[index].check(&tensor)?;
        ordered[index] = Some(tensor);
    }
    let ordered = ordered
        .into_iter()
        .zip(specs)
        .map(|(t, s)| t.ok_or_else(|| BackendError::InvalidInput(format!("missing input '{}'; the model takes {}", s.name, expected()))))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| graph.run(ordered)))
        .map_err(|panic| BackendError::Runtime(format!("engine panicked: {}", panic_message(&panic))))??;
    Ok(graph.outputs().iter().map(|s| s.name.clone()).zip(outputs).collect())
}

/// Loads a model with `backend`, turning an engine panic into [`BackendError::InvalidModel`].
pub fn load(backend: &dyn Backend, model: &[u8]) -> Result<Arc<dyn Graph>, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.load(model)))
        .map_err(|panic| BackendError::InvalidModel(format!("engine panicked: {}", panic_message(&panic))))?
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that panics on every call, as a buggy engine meets malformed model bytes.
    struct Panicking;

    impl Backend for Panicking {
        fn name(&self) -> &'static str {
            "panicking"
        }
        fn load(&self, _: &[u8]) -> Result<Arc<dyn Graph>, BackendError> {
            panic!("engine bug while parsing")
        }
    }

    impl Graph for Panicking {
        fn inputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn outputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn run(&self, _: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
            panic!("engine bug while computing")
        }
    }

    #[test]
    fn engine_panics_become_errors() {
        let err = load(&Panicking, b"model").err().expect("refused");
        assert!(matches!(&err, BackendError::InvalidModel(m) if m.contains("engine panicked: engine bug while parsing")), "{err}");
        let err = compute(&Panicking, vec![]).unwrap_err();
        assert!(matches!(&err, BackendError::Runtime(m) if m.contains("engine bug while computing")), "{err}");
    }
}
