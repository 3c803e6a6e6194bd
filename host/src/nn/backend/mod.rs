//! The engine seam: one [`Backend`] per inference engine, one file each.
//!
//! Stages follow wasi-nn's lifetimes: a backend [`Backend::load`]s model bytes into a compiled
//! [`Graph`] once per host (shared by every instance through the [`GraphCache`]), and each
//! `compute` runs that graph on validated [`Tensor`]s.
//!
//! [`GraphCache`]: crate::nn::graphs::GraphCache

pub mod onnxruntime;
pub mod tract;

use std::fmt;
use std::sync::Arc;

pub use spindle_tensor::ElementType;

/// A dense, row-major, little-endian tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Its dimensions.
    pub dims: Vec<u32>,
    /// Its element type.
    pub ty: ElementType,
    /// Its elements' bytes.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Checks the tensor against [`spindle_tensor`]'s rules: rank and size within the limits,
    /// and `data` holding exactly `product(dims) × element size` bytes.
    pub fn validate(&self, name: &str) -> Result<(), BackendError> {
        spindle_tensor::check(name, &self.dims, self.ty, self.data.len())
            .map_err(|e| if e.is_too_large() { BackendError::TooLarge(e.to_string()) } else { BackendError::InvalidInput(e.to_string()) })
    }
}

/// A dimension as a model declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
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
    /// Its name in the model.
    pub name: String,
    /// Its element type.
    pub ty: ElementType,
    /// Its shape.
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
        Err(BackendError::InvalidInput(format!("input '{}': expected {}, got {:?} {}", self.name, self.describe(), tensor.dims, tensor.ty)))
    }
}

/// A named tensor, as `compute` takes and returns them.
pub type NamedTensor = (String, Tensor);

/// Errors at the engine seam; each maps to one wasi-nn error code.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    /// The model bytes do not load (`invalid-encoding`).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// An input does not fit the model (`invalid-argument`).
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor over the limits (`too-large`).
    #[error("{0}")]
    TooLarge(String),
    /// Something the engine cannot do (`unsupported-operation`).
    #[error("{0}")]
    Unsupported(String),
    /// The engine failed while running (`runtime-error`).
    #[error("inference failed: {0}")]
    Runtime(String),
    /// The model asks for something no guest may have, such as a host file (`security`).
    #[error("model refused: {0}")]
    Refused(String),
    /// The run was stopped: its request's deadline passed (`timeout`).
    #[error("{0}")]
    Stopped(String),
}

/// Where an engine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// A CUDA GPU.
    Gpu,
}

impl Device {
    /// `cpu` or `gpu`.
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
    /// Its inputs, in the order [`Graph::run`] takes them.
    fn inputs(&self) -> &[TensorSpec];
    /// Its outputs, in the order [`Graph::run`] returns them.
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the model. Inputs were validated against [`Graph::inputs`] and come in its order.
    /// The engine stops early, with [`BackendError::Stopped`], once `control` says so, as soon
    /// as it can (between nodes).
    fn run(&self, inputs: Vec<Tensor>, control: &RunControl) -> Result<Vec<Tensor>, BackendError>;
    /// Whether the engine checks the deadline itself while it runs; if not, a timer stops it
    /// through [`RunControl::stop`].
    fn watches_deadline(&self) -> bool {
        false
    }
}

/// Stops a run from another thread: the request's deadline passed, or the request is gone.
///
/// Engines poll [`RunControl::is_stopped`] between nodes, or register a hook
/// ([`RunControl::on_stop`]) that interrupts them; a single node still runs to its end.
#[derive(Default)]
pub struct RunControl {
    stopped: std::sync::atomic::AtomicBool,
    deadline: Option<std::time::Instant>,
    hooks: std::sync::Mutex<Vec<Box<dyn Fn() + Send>>>,
}

impl RunControl {
    /// A run that stops at `deadline`, or earlier when [`RunControl::stop`] is called.
    pub fn until(deadline: std::time::Instant) -> Self {
        Self { deadline: Some(deadline), ..Self::default() }
    }

    /// Stops the run, calling every hook once.
    pub fn stop(&self) {
        if self.stopped.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            hook();
        }
    }

    /// Whether the run should stop now.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Acquire) || self.deadline.is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// Calls `hook` when the run is stopped (at once if it already is).
    pub fn on_stop(&self, hook: impl Fn() + Send + 'static) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            drop(hooks);
            hook();
        } else {
            hooks.push(Box::new(hook));
        }
    }

    /// The error a stopped run returns.
    pub fn stopped_error(&self) -> BackendError {
        BackendError::Stopped("the run was stopped: its request's deadline passed".into())
    }
}

/// Validates named inputs against the graph, orders them as the graph declares, runs it and
/// names the outputs. Engine panics become [`BackendError::Runtime`].
pub fn compute(graph: &dyn Graph, inputs: Vec<NamedTensor>, control: &RunControl) -> Result<Vec<NamedTensor>, BackendError> {
    let ordered = validate(graph, inputs)?;
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| graph.run(ordered, control)))
        .map_err(|panic| BackendError::Runtime(format!("engine panicked: {}", panic_message(&panic))))??;
    Ok(graph.outputs().iter().map(|s| s.name.clone()).zip(outputs).collect())
}

/// Checks named inputs against the graph's and returns them in its order.
pub fn validate(graph: &dyn Graph, inputs: Vec<NamedTensor>) -> Result<Vec<Tensor>, BackendError> {
    let specs = graph.inputs();
    let expected = || specs.iter().map(|s| format!("'{}' {}", s.name, s.describe())).collect::<Vec<_>>().join(", ");
    let mut ordered: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (name, tensor) in inputs {
        tensor.validate(&name)?;
        let Some(index) = specs.iter().position(|s| s.name == name) else {
            return Err(BackendError::InvalidInput(format!("unknown input '{name}'; the model takes {}", expected())));
        };
        if ordered[index].is_some() {
            return Err(BackendError::InvalidInput(format!("input '{name}' given twice")));
        }
        specs[index].check(&tensor)?;
        ordered[index] = Some(tensor);
    }
    ordered
        .into_iter()
        .zip(specs)
        .map(|(t, s)| t.ok_or_else(|| BackendError::InvalidInput(format!("missing input '{}'; the model takes {}", s.name, expected()))))
        .collect()
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
        fn run(&self, _: Vec<Tensor>, _: &RunControl) -> Result<Vec<Tensor>, BackendError> {
            panic!("engine bug while computing")
        }
    }

    #[test]
    fn engine_panics_become_errors() {
        let err = load(&Panicking, b"model").err().expect("refused");
        assert!(matches!(&err, BackendError::InvalidModel(m) if m.contains("engine panicked: engine bug while parsing")), "{err}");
        let err = compute(&Panicking, vec![], &RunControl::default()).unwrap_err();
        assert!(matches!(&err, BackendError::Runtime(m) if m.contains("engine bug while computing")), "{err}");
    }
}
