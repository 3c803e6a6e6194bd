//! The ONNX Runtime backend, through `ort` with `load-dynamic`: nothing is downloaded at build
//! time; the shared library comes from the `onnxruntime` PyPI wheel at run time.
//!
//! Sessions are pooled per graph (`Session::run` takes `&mut self`). On the CPU each runs
//! single-threaded because Spindle's inference pool already runs one job per core. On a GPU each
//! session registers the CUDA execution provider with `error_on_failure`, so a provider that
//! cannot start is an error Spindle reports, never a silent fall back to the CPU.

use super::{Backend, BackendError, Device, Dim, ElementType, Graph, RunControl, Tensor, TensorSpec};
use ort::ep::CUDA;
use ort::session::{RunOptions, Session, SessionInputValue, builder::GraphOptimizationLevel};
use ort::value::{DynValue, TensorElementType, ValueType};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Where the shared library is, or why it is not there: `--onnxruntime PATH`, `ORT_DYLIB_PATH`,
/// then the `onnxruntime` wheel in the Python environments a user would have installed it into,
/// found by looking at the file system only (starting an interpreter costs 150 ms and more on
/// every start): `$VIRTUAL_ENV`, `./.venv`, the prefix of each `python3` on `PATH`, the user's
/// site-packages, then the system's.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_owned()).ok_or_else(|| format!("--onnxruntime {} does not exist", path.display()));
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        return path.is_file().then_some(path.clone()).ok_or_else(|| format!("ORT_DYLIB_PATH={} does not exist", path.display()));
    }
    python_lib_dirs().iter().find_map(|lib| find_in_site_packages(lib)).map(|found| found.canonicalize().unwrap_or(found)).ok_or_else(
        || {
            "no libonnxruntime.so found (give --onnxruntime PATH or ORT_DYLIB_PATH, or pip install onnxruntime into \
             $VIRTUAL_ENV, ./.venv, the python3 on PATH or the user's site-packages)"
                .into()
        },
    )
}

/// The `lib` folders whose `python3.X/site-packages` (or `dist-packages`) a pip install writes to.
fn python_lib_dirs() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let mut dirs: Vec<PathBuf> = var("VIRTUAL_ENV").into_iter().map(|env| env.join("lib")).collect();
    dirs.push(PathBuf::from(".venv/lib"));
    // Relative entries (`.` on PATH) would make the current folder choose the library.
    for bin in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).filter(|bin| bin.is_absolute()) {
        if bin.join("python3").is_file()
            && let Some(prefix) = bin.parent()
        {
            dirs.push(prefix.join("lib"));
        }
    }
    dirs.extend(var("HOME").map(|home| home.join(".local/lib")));
    dirs.extend(["/usr/local/lib", "/usr/lib"].map(PathBuf::from));
    dirs
}

fn find_in_site_packages(lib: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with("python3")))
        .map(|entry| entry.path())
        .collect();
    // The newest Python first (3.12 before 3.9), as `python3` most likely is.
    let minor = |p: &PathBuf| p.file_name()?.to_str()?.strip_prefix("python3.")?.parse::<u32>().ok();
    pythons.sort_by_key(|p| std::cmp::Reverse(minor(p)));
    pythons.iter().find_map(|python| {
        ["site-packages", "dist-packages"].iter().find_map(|packages| find_library(&python.join(packages).join("onnxruntime/capi")))
    })
}

fn find_library(capi: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(capi)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.pop()
}

/// The shared library, loaded on first use and then shared by the CPU and CUDA backends.
pub struct OnnxRuntime {
    library: PathBuf,
    environment: OnceLock<Result<ort::environment::Environment, String>>,
}

impl OnnxRuntime {
    /// The library at `library`, not loaded yet.
    pub fn new(library: PathBuf) -> Arc<Self> {
        Arc::new(Self { library, environment: OnceLock::new() })
    }

    /// Where the library is.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn environment(&self) -> Result<&ort::environment::Environment, BackendError> {
        self.environment
            .get_or_init(|| {
                ort::init_from(&self.library)
                    .map_err(|e| format!("loading {}: {e}", self.library.display()))?
                    .with_name("spindle")
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| BackendError::Unsupported(format!("onnxruntime unavailable: {e}")))
    }
}

/// A model with one `Identity` node, the smallest session that makes the CUDA provider start.
const IDENTITY_MODEL: &[u8] = include_bytes!("identity.onnx");
/// What the `onnxruntime-gpu` wheel has beside `libonnxruntime.so` and the CPU wheel has not.
const CUDA_PROVIDER: &str = "libonnxruntime_providers_cuda.so";

/// ONNX Runtime on the CPU, or on a GPU through its CUDA execution provider.
#[derive(Clone)]
pub struct OnnxRuntimeBackend {
    runtime: Arc<OnnxRuntime>,
    device: Device,
    /// Intra-op threads per session on the CPU.
    threads: usize,
}

impl OnnxRuntimeBackend {
    /// ONNX Runtime on the CPU, `threads` intra-op threads per session.
    pub fn cpu(runtime: Arc<OnnxRuntime>, threads: usize) -> Self {
        Self { runtime, device: Device::Cpu, threads }
    }

    /// ONNX Runtime's CUDA execution provider, or why it cannot run here. Starts one real
    /// session on it, so a missing CUDA or cuDNN library, or no device, shows up at start.
    pub fn cuda(runtime: Arc<OnnxRuntime>) -> Result<Self, String> {
        let beside = runtime.library.with_file_name(CUDA_PROVIDER);
        if !beside.is_file() {
            return Err(format!(
                "no {CUDA_PROVIDER} beside {} (the onnxruntime wheel is CPU-only; onnxruntime-gpu has the CUDA provider)",
                runtime.library.display()
            ));
        }
        let backend = Self { runtime, device: Device::Gpu, threads: 1 };
        backend.session(IDENTITY_MODEL).map_err(|e| format!("the CUDA execution provider did not start: {e}"))?;
        Ok(backend)
    }

    fn session(&self, model: &[u8]) -> Result<Session, BackendError> {
        let invalid = |e: ort::Error| BackendError::InvalidModel(e.to_string());
        let builder = Session::builder(self.runtime.environment()?)
            .map_err(invalid)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| BackendError::InvalidModel(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| BackendError::InvalidModel(e.to_string()))?
            // Only the protobuf format, the one `nn::onnx` checks: never ORT's flatbuffer format.
            .with_config_entry("session.load_model_format", "ONNX")
            .map_err(|e| BackendError::InvalidModel(e.to_string()))?;
        let mut builder = match self.device {
            Device::Gpu => builder
                .with_execution_providers([CUDA::default().with_tf32(false).build().error_on_failure()])
                .map_err(|e| BackendError::Unsupported(format!("CUDA execution provider: {e}")))?,
            Device::Cpu => builder.with_intra_threads(self.threads).map_err(|e| BackendError::InvalidModel(e.to_string()))?,
        };
        builder.commit_from_memory(model).map_err(invalid)
    }
}

struct OrtGraph {
    model: Arc<[u8]>,
    backend: OnnxRuntimeBackend,
    idle: Mutex<Vec<Session>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn device(&self) -> Device {
        self.device
    }

    fn load(&self, model: &[u8]) -> Result<Arc<dyn Graph>, BackendError> {
        let first = self.session(model)?;
        let specs =
            |outlets: &[ort::value::Outlet]| -> Result<Vec<TensorSpec>, BackendError> {
                outlets
                    .iter()
                    .map(|o| match o.dtype() {
                        ValueType::Tensor { ty, shape, dimension_symbols } => Ok(TensorSpec {
                            name: o.name().to_owned(),
                            ty: element_type(*ty).ok_or_else(|| {
                                BackendError::Unsupported(format!("tensor '{}' has type {ty:?}, which wasi-nn cannot carry", o.name()))
                            })?,
                            shape: shape
                                .iter()
                                .zip(dimension_symbols.iter())
                                .map(|(&d, s)| {
                                    if d >= 0 {
                                        Dim::Fixed(d as u64)
                                    } else {
                                        Dim::Symbol(if s.is_empty() { "?".into() } else { s.clone() })
                                    }
                                })
                                .collect(),
                        }),
                        other => Err(BackendError::Unsupported(format!("'{}' is a {other:?}, not a tensor", o.name()))),
                    })
                    .collect()
            };
        let inputs = specs(first.inputs())?;
        let outputs = specs(first.outputs())?;
        Ok(Arc::new(OrtGraph { model: model.into(), backend: self.clone(), idle: Mutex::new(vec![first]), inputs, outputs }))
    }
}

fn element_type(ty: TensorElementType) -> Option<ElementType> {
    Some(match ty {
        TensorElementType::Float32 => ElementType::F32,
        TensorElementType::Float64 => ElementType::F64,
        TensorElementType::Uint8 => ElementType::U8,
        TensorElementType::Int32 => ElementType::I32,
        TensorElementType::Int64 => ElementType::I64,
        _ => return None,
    })
}

macro_rules! from_le {
    ($t:ty, $tensor:expr, $shape:expr) => {{
        const N: usize = std::mem::size_of::<$t>();
        let values: Vec<$t> = $tensor.data.chunks_exact(N).map(|c| <$t>::from_le_bytes(c.try_into().expect("N bytes"))).collect();
        ort::value::Tensor::from_array(($shape, values)).map(|t| t.into_dyn())
    }};
}

fn to_value(tensor: &Tensor) -> Result<DynValue, BackendError> {
    let shape: Vec<i64> = tensor.dims.iter().map(|&d| i64::from(d)).collect();
    let value = match tensor.ty {
        ElementType::F32 => from_le!(f32, tensor, shape),
        ElementType::F64 => from_le!(f64, tensor, shape),
        ElementType::U8 => from_le!(u8, tensor, shape),
        ElementType::I32 => from_le!(i32, tensor, shape),
        ElementType::I64 => from_le!(i64, tensor, shape),
        other => return Err(BackendError::Unsupported(format!("onnxruntime backend takes no {other} tensors"))),
    };
    value.map_err(|e| BackendError::Runtime(e.to_string()))
}

macro_rules! to_le {
    ($t:ty, $value:expr) => {{
        let (shape, data) = $value.try_extract_tensor::<$t>().map_err(|e| BackendError::Runtime(e.to_string()))?;
        (shape.iter().map(|&d| d as u32).collect::<Vec<_>>(), data.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    }};
}

impl Graph for OrtGraph {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<Tensor>, control: &RunControl) -> Result<Vec<Tensor>, BackendError> {
        // Inputs were checked against every fixed dimension, so when a model with symbolic ones
        // fails, the sizes the client chose for those are what the model cannot take.
        let shapes: Vec<Vec<u32>> = inputs.iter().map(|t| t.dims.clone()).collect();
        let symbolic = self.inputs.iter().any(|spec| spec.shape.iter().any(|d| matches!(d, Dim::Symbol(_))));
        let run_failed = |e: ort::Error| {
            if symbolic {
                BackendError::InvalidInput(format!("the model cannot run on input shapes {shapes:?}: {e}"))
            } else {
                BackendError::Runtime(e.to_string())
            }
        };
        let values = inputs
            .iter()
            .zip(&self.inputs)
            .map(|(t, spec)| Ok((Cow::Owned(spec.name.clone()), SessionInputValue::from(to_value(t)?))))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut session = match pooled {
            Some(session) => session,
            None => self.backend.session(&self.model)?,
        };
        // ONNX Runtime checks its terminate flag between nodes; the hook sets it from the thread
        // that stops the run.
        let options = Arc::new(RunOptions::new().map_err(|e| BackendError::Runtime(e.to_string()))?);
        let terminate = options.clone();
        control.on_stop(move || {
            let _ = terminate.terminate();
        });
        let result = (|| {
            let outputs = session
                .run_with_options(values, &*options)
                .map_err(|e| if control.is_stopped() { control.stopped_error() } else { run_failed(e) })?;
            self.outputs
                .iter()
                .map(|spec| {
                    let value = &outputs[spec.name.as_str()];
                    let (dims, data) = match spec.ty {
                        ElementType::F32 => to_le!(f32, value),
                        ElementType::F64 => to_le!(f64, value),
                        ElementType::U8 => to_le!(u8, value),
                        ElementType::I32 => to_le!(i32, value),
                        ElementType::I64 => to_le!(i64, value),
                        other => return Err(BackendError::Unsupported(format!("output of type {other}"))),
                    };
                    Ok(Tensor { dims, ty: spec.ty, data })
                })
                .collect()
        })();
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(session);
        result
    }
}
