//! The tract backend: pure Rust. Its CPU runtime is always there; its CUDA runtime
//! (`tract-cuda`, what the `tract` crate's `cuda` feature brings in) is compiled into every build
//! and loads the CUDA libraries with `cudarc` at run time, so [`TractBackend::cuda`] says why it
//! cannot run on a machine without them.

use super::{Backend, BackendError, Device, Dim, ElementType, Graph, RunControl, Tensor, TensorSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{Runnable, Runtime, runtime_for_name};
use tract_onnx::tract_hir::infer::Factoid;

// Linked for its runtime registration: tract finds runtimes by name in an inventory.
extern crate tract_cuda;

/// Compiles ONNX models with `tract-onnx` into plans for one of tract's runtimes.
pub struct TractBackend {
    runtime: &'static dyn Runtime,
    device: Device,
}

impl TractBackend {
    /// tract on the CPU, its matrix kernels split over `threads` threads when more than one.
    pub fn cpu(threads: usize) -> Self {
        if threads > 1 {
            // process-wide: one setting per host, like the inference pool it is sized against
            tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
        }
        let runtime = runtime_for_name("cpu").ok().flatten().expect("tract's CPU runtime is built in");
        Self { runtime, device: Device::Cpu }
    }

    /// tract's CUDA runtime, or why it cannot run here (no driver, a driver older than CUDA 13,
    /// a CUDA library missing, no device).
    pub fn cuda() -> Result<Self, String> {
        let runtime = runtime_for_name("cuda").map_err(|e| format!("{e:#}"))?.ok_or("this build of tract has no CUDA runtime")?;
        runtime.check().map_err(|e| format!("{e:#}"))?;
        Ok(Self { runtime, device: Device::Gpu })
    }
}

struct TractGraph {
    plans: Plans,
    device: Device,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// Most models compile once for any input shape. Some (PP-OCR's detector: feature maps of
/// `H/32` and `H/16` rows concatenated) only type-check once their symbolic dimensions are
/// known; those compile once per input shape seen, like tract's own CLI with `--set`.
enum Plans {
    Any(Box<dyn Runnable>),
    PerShape { model: Box<InferenceModel>, runtime: &'static dyn Runtime, compiled: Mutex<PlansByShape> },
}

/// Compiled plans by the shapes of the inputs they were compiled for.
type PlansByShape = HashMap<Vec<Vec<u32>>, Arc<dyn Runnable>>;

/// Plans kept per graph compiled per shape; past it the graph starts over.
const MAX_PLANS_PER_GRAPH: usize = 16;

impl Plans {
    fn run(&self, values: TVec<TValue>, control: &RunControl) -> Result<TVec<TValue>, BackendError> {
        let (model, runtime, compiled) = match self {
            Plans::Any(plan) => return run_plan(plan.as_ref(), values, control),
            Plans::PerShape { model, runtime, compiled } => (model, *runtime, compiled),
        };
        let shapes: Vec<Vec<u32>> = values.iter().map(|v| v.shape().iter().map(|&d| d as u32).collect()).collect();
        let cached = compiled.lock().unwrap_or_else(|e| e.into_inner()).get(&shapes).cloned();
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let plan: Arc<dyn Runnable> = Arc::from(
                    specialise(model, runtime, &values)
                        .map_err(|e| BackendError::InvalidInput(format!("the model cannot run on input shapes {shapes:?}: {e:#}")))?,
                );
                let mut compiled = compiled.lock().unwrap_or_else(|e| e.into_inner());
                if compiled.len() >= MAX_PLANS_PER_GRAPH {
                    compiled.clear();
                }
                compiled.insert(shapes, plan.clone());
                plan
            }
        };
        run_plan(plan.as_ref(), values, control)
    }
}

/// Runs a plan node by node, stopping between nodes once `control` says so. Runtimes without a
/// CPU plan to step through (CUDA) run to the end.
fn run_plan(plan: &dyn Runnable, values: TVec<TValue>, control: &RunControl) -> Result<TVec<TValue>, BackendError> {
    let result = match plan.typed_plan() {
        Some(plan) => plan.spawn().and_then(|mut state| {
            state.run_plan_with_eval(values, |session, op_state, node, inputs| {
                if control.is_stopped() {
                    return Err(TractError::msg(format!("stopped before {node}")));
                }
                tract_onnx::tract_core::plan::eval(session, op_state, node, inputs)
            })
        }),
        None => plan.run(values),
    };
    result.map_err(|e| if control.is_stopped() { control.stopped_error() } else { BackendError::Runtime(format!("{e:#}")) })
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn device(&self) -> Device {
        self.device
    }

    fn load(&self, model: &[u8]) -> Result<Arc<dyn Graph>, BackendError> {
        let invalid = |e: TractError| BackendError::InvalidModel(format!("{e:#}"));
        let inference = tract_onnx::onnx().model_for_read(&mut &model[..]).map_err(invalid)?;
        let label = |outlet: OutletId| {
            inference.outlet_label(outlet).map(str::to_owned).unwrap_or_else(|| inference.node(outlet.node).name.clone())
        };
        let input_names: Vec<String> = inference.input_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
        let output_names: Vec<String> = inference.output_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
        let typed = inference.clone().into_typed().and_then(|m| m.into_decluttered());
        let typed = match typed {
            Ok(typed) => typed,
            Err(e) if has_symbolic_input(&inference) => {
                tracing::debug!("tract compiles this model per input shape: {e:#}");
                let inputs = declared_specs(model, input_names, false)?;
                let outputs = declared_specs(model, output_names, true)?;
                let plans = Plans::PerShape { model: Box::new(inference), runtime: self.runtime, compiled: Mutex::default() };
                return Ok(Arc::new(TractGraph { plans, device: self.device, inputs, outputs }));
            }
            Err(e) => return Err(invalid(e)),
        };
        let inputs = specs(&typed, typed.input_outlets().map_err(invalid)?, input_names)?;
        let outputs = specs(&typed, typed.output_outlets().map_err(invalid)?, output_names)?;
        let plan = self.runtime.prepare(typed).map_err(invalid)?;
        Ok(Arc::new(TractGraph { plans: Plans::Any(plan), device: self.device, inputs, outputs }))
    }
}

/// Compiles `model` for the shapes and types of `values`.
fn specialise(model: &InferenceModel, runtime: &'static dyn Runtime, values: &[TValue]) -> TractResult<Box<dyn Runnable>> {
    let mut model = model.clone();
    for (i, value) in values.iter().enumerate() {
        model.set_input_fact(i, InferenceFact::dt_shape(value.datum_type(), value.shape()))?;
    }
    runtime.prepare(model.into_typed()?.into_decluttered()?)
}

fn has_symbolic_input(model: &InferenceModel) -> bool {
    (0..model.inputs.len())
        .any(|i| model.input_fact(i).is_ok_and(|f| f.shape.dims().any(|d| d.concretize().is_none_or(|d| d.to_i64().is_err()))))
}

/// Specs as the ONNX file declares them, for a model tract could not type without shapes.
fn declared_specs(model: &[u8], names: Vec<String>, outputs: bool) -> Result<Vec<TensorSpec>, BackendError> {
    use tract_onnx::pb::{tensor_proto::DataType, type_proto::Value};
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &model[..]).map_err(|e| BackendError::InvalidModel(format!("{e:#}")))?;
    let graph = proto.graph.unwrap_or_default();
    let declared = if outputs { graph.output } else { graph.input };
    names
        .into_iter()
        .map(|name| {
            let Some(Value::TensorType(tensor)) = declared.iter().find(|v| v.name == name).and_then(|v| v.r#type.as_ref()?.value.clone())
            else {
                return Err(BackendError::Unsupported(format!("tensor '{name}' has no declared tensor type")));
            };
            let ty = DataType::try_from(tensor.elem_type)
                .ok()
                .and_then(|dt| DatumType::try_from(dt).ok())
                .and_then(element_type)
                .ok_or_else(|| BackendError::Unsupported(format!("tensor '{name}' has a type wasi-nn cannot carry")))?;
            let shape = tensor
                .shape
                .unwrap_or_default()
                .dim
                .into_iter()
                .map(|d| match d.value {
                    Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(n)) if n >= 0 => Dim::Fixed(n as u64),
                    Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimParam(p)) => Dim::Symbol(p),
                    _ => Dim::Symbol("?".into()),
                })
                .collect();
            Ok(TensorSpec { name, ty, shape })
        })
        .collect()
}

fn specs(model: &TypedModel, outlets: &[OutletId], names: Vec<String>) -> Result<Vec<TensorSpec>, BackendError> {
    outlets
        .iter()
        .zip(names)
        .map(|(&outlet, name)| {
            let fact = model.outlet_fact(outlet).map_err(|e| BackendError::InvalidModel(format!("{e:#}")))?;
            let ty = element_type(fact.datum_type).ok_or_else(|| {
                BackendError::Unsupported(format!("tensor '{name}' has type {:?}, which wasi-nn cannot carry", fact.datum_type))
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| match d.to_i64() {
                    Ok(n) => Dim::Fixed(n as u64),
                    Err(_) => Dim::Symbol(d.to_string()),
                })
                .collect();
            Ok(TensorSpec { name, ty, shape })
        })
        .collect()
}

fn element_type(dt: DatumType) -> Option<ElementType> {
    Some(match dt {
        DatumType::F16 => ElementType::F16,
        DatumType::F32 => ElementType::F32,
        DatumType::F64 => ElementType::F64,
        DatumType::U8 => ElementType::U8,
        DatumType::I32 => ElementType::I32,
        DatumType::I64 => ElementType::I64,
        _ => return None,
    })
}

fn datum_type(ty: ElementType) -> Result<DatumType, BackendError> {
    Ok(match ty {
        ElementType::F16 => DatumType::F16,
        ElementType::F32 => DatumType::F32,
        ElementType::F64 => DatumType::F64,
        ElementType::U8 => DatumType::U8,
        ElementType::I32 => DatumType::I32,
        ElementType::I64 => DatumType::I64,
        ElementType::Bf16 => return Err(BackendError::Unsupported("tract has no bf16 tensors".into())),
    })
}

impl Graph for TractGraph {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn watches_deadline(&self) -> bool {
        // The CPU runtime is stepped node by node (`run_plan`); CUDA plans run to their end.
        self.device == Device::Cpu
    }

    fn run(&self, inputs: Vec<Tensor>, control: &RunControl) -> Result<Vec<Tensor>, BackendError> {
        let runtime = |e: TractError| BackendError::Runtime(format!("{e:#}"));
        let values = inputs
            .into_iter()
            .map(|t| {
                let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
                // SAFETY: `compute` validated that data holds exactly product(dims) × size bytes
                // of a plain (non-pointer) datum type; from_raw_dt copies them.
                let tensor = unsafe { tract_onnx::prelude::Tensor::from_raw_dt(datum_type(t.ty)?, &shape, &t.data) };
                Ok(tensor.map_err(runtime)?.into_tvalue())
            })
            .collect::<Result<TVec<TValue>, BackendError>>()?;
        let outputs = self.plans.run(values, control)?;
        outputs
            .into_iter()
            .map(|value| {
                let tensor = value.into_tensor();
                let ty = element_type(tensor.datum_type())
                    .ok_or_else(|| BackendError::Unsupported(format!("output of type {:?}", tensor.datum_type())))?;
                Ok(Tensor { dims: tensor.shape().iter().map(|&d| d as u32).collect(), ty, data: tensor.as_bytes().to_vec() })
            })
            .collect()
    }
}
