//! `wasi:nn@0.2.0-rc-2024-10-28` implemented inside wasm with tract.
//!
//! `load` compiles ONNX bytes; `load-by-name(n)` reads `/models/n/model.onnx` or `/models/n.onnx`
//! from the files the host mounts (the same convention as Spindle's named models). Every tensor is
//! checked against the model before tract sees it, with the same messages as the host.

wit_bindgen::generate!({
    path: "../../wit",
    world: "spindle:function/nn-provider",
    generate_all,
});

use exports::wasi::nn::errors::{ErrorCode, GuestError};
use exports::wasi::nn::graph::{ExecutionTarget, Graph, GraphEncoding, GuestGraph};
use exports::wasi::nn::inference::{GraphExecutionContext, GuestGraphExecutionContext, NamedTensor};
use exports::wasi::nn::tensor::{GuestTensor, Tensor, TensorType};
use exports::wasi::nn::{errors, graph, inference, tensor};
use spindle_tensor::ElementType;
use std::sync::Arc;
use tract_onnx::prelude::*;

struct Provider;

export!(Provider);

/// A guest-visible error.
pub struct NnError {
    code: ErrorCode,
    message: String,
}

impl GuestError for NnError {
    fn code(&self) -> ErrorCode {
        self.code
    }
    fn data(&self) -> String {
        self.message.clone()
    }
}

fn fail(code: ErrorCode, message: impl Into<String>) -> errors::Error {
    errors::Error::new(NnError { code, message: message.into() })
}

impl errors::Guest for Provider {
    type Error = NnError;
}

/// A tensor: dimensions, type and little-endian bytes.
pub struct HostTensor {
    dims: Vec<u32>,
    ty: TensorType,
    data: Vec<u8>,
}

impl GuestTensor for HostTensor {
    fn new(dims: Vec<u32>, ty: TensorType, data: Vec<u8>) -> Self {
        Self { dims, ty, data }
    }
    fn dimensions(&self) -> Vec<u32> {
        self.dims.clone()
    }
    fn ty(&self) -> TensorType {
        self.ty
    }
    fn data(&self) -> Vec<u8> {
        self.data.clone()
    }
}

impl tensor::Guest for Provider {
    type Tensor = HostTensor;
}

/// A compiled model and the names and facts of its inputs and outputs.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<(String, DatumType, Vec<Option<usize>>)>,
    outputs: Vec<String>,
}

impl GuestGraph for Model {
    fn init_execution_context(&self) -> Result<GraphExecutionContext, errors::Error> {
        Ok(GraphExecutionContext::new(Context(Model {
            plan: self.plan.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        })))
    }
}

fn compile(bytes: &[u8]) -> Result<Model, errors::Error> {
    let invalid = |e: TractError| fail(ErrorCode::InvalidEncoding, format!("invalid model: {e:#}"));
    let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(invalid)?;
    let label = |o: OutletId| model.outlet_label(o).map(str::to_owned).unwrap_or_else(|| model.node(o.node).name.clone());
    let input_names: Vec<String> = model.input_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
    let outputs: Vec<String> = model.output_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
    let typed = model.into_typed().and_then(|m| m.into_decluttered()).map_err(invalid)?;
    let inputs = typed
        .input_outlets()
        .map_err(invalid)?
        .iter()
        .zip(input_names)
        .map(|(&o, name)| {
            let fact = typed.outlet_fact(o).map_err(invalid)?;
            Ok((name, fact.datum_type, fact.shape.iter().map(|d| d.to_i64().ok().map(|n| n as usize)).collect()))
        })
        .collect::<Result<Vec<_>, errors::Error>>()?;
    let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(invalid)?;
    Ok(Model { plan, inputs, outputs })
}

impl graph::Guest for Provider {
    type Graph = Model;

    fn load(builder: Vec<Vec<u8>>, encoding: GraphEncoding, target: ExecutionTarget) -> Result<Graph, errors::Error> {
        if !matches!(encoding, GraphEncoding::Onnx | GraphEncoding::Autodetect) {
            return Err(fail(ErrorCode::InvalidEncoding, format!("graph encoding {encoding:?} is not supported; this provider runs ONNX")));
        }
        if !matches!(target, ExecutionTarget::Cpu) {
            return Err(fail(
                ErrorCode::UnsupportedOperation,
                format!("execution target {target:?} refused: the wasm provider runs tract on cpu"),
            ));
        }
        let [bytes]: [Vec<u8>; 1] = builder
            .try_into()
            .map_err(|b: Vec<Vec<u8>>| fail(ErrorCode::InvalidArgument, format!("an ONNX graph is one buffer, got {}", b.len())))?;
        Ok(Graph::new(compile(&bytes)?))
    }

    fn load_by_name(name: String) -> Result<Graph, errors::Error> {
        let candidates = spindle_tensor::named::model_paths(&name);
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                return Ok(Graph::new(compile(&bytes)?));
            }
        }
        Err(fail(ErrorCode::NotFound, format!("no model named '{name}' is mounted (looked for {candidates:?})")))
    }
}

/// An execution context: the graph it runs.
pub struct Context(Model);

fn element_type(ty: TensorType) -> ElementType {
    match ty {
        TensorType::Fp16 => ElementType::F16,
        TensorType::Fp32 => ElementType::F32,
        TensorType::Fp64 => ElementType::F64,
        TensorType::Bf16 => ElementType::Bf16,
        TensorType::U8 => ElementType::U8,
        TensorType::I32 => ElementType::I32,
        TensorType::I64 => ElementType::I64,
    }
}

/// tract's datum type for an element type; tract has no bf16.
fn datum(ty: ElementType) -> Option<DatumType> {
    Some(match ty {
        ElementType::F16 => DatumType::F16,
        ElementType::F32 => DatumType::F32,
        ElementType::F64 => DatumType::F64,
        ElementType::U8 => DatumType::U8,
        ElementType::I32 => DatumType::I32,
        ElementType::I64 => DatumType::I64,
        ElementType::Bf16 => return None,
    })
}

fn tensor_type(dt: DatumType) -> Option<TensorType> {
    Some(match dt {
        DatumType::F32 => TensorType::Fp32,
        DatumType::F64 => TensorType::Fp64,
        DatumType::F16 => TensorType::Fp16,
        DatumType::U8 => TensorType::U8,
        DatumType::I32 => TensorType::I32,
        DatumType::I64 => TensorType::I64,
        _ => return None,
    })
}

fn describe(shape: &[Option<usize>]) -> String {
    shape.iter().map(|d| d.map_or("?".to_owned(), |n| n.to_string())).collect::<Vec<_>>().join(", ")
}

impl GuestGraphExecutionContext for Context {
    fn compute(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, errors::Error> {
        let model = &self.0;
        let mut ordered: Vec<Option<TValue>> = vec![None; model.inputs.len()];
        for (name, handle) in inputs {
            let t: &HostTensor = handle.get();
            let index = model.inputs.iter().position(|(n, _, _)| *n == name).ok_or_else(|| {
                fail(
                    ErrorCode::InvalidArgument,
                    format!("unknown input '{name}'; the model takes {:?}", model.inputs.iter().map(|i| &i.0).collect::<Vec<_>>()),
                )
            })?;
            let (want_name, want_type, want_shape) = &model.inputs[index];
            let ty = element_type(t.ty);
            spindle_tensor::check(&name, &t.dims, ty, t.data.len())
                .map_err(|e| fail(if e.is_too_large() { ErrorCode::TooLarge } else { ErrorCode::InvalidArgument }, e.to_string()))?;
            let dt = datum(ty).ok_or_else(|| fail(ErrorCode::UnsupportedOperation, "bf16 tensors are not supported"))?;
            let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            let fits =
                dt == *want_type && dims.len() == want_shape.len() && dims.iter().zip(want_shape).all(|(&g, w)| w.is_none_or(|w| w == g));
            if !fits {
                return Err(fail(
                    ErrorCode::InvalidArgument,
                    format!("input '{want_name}': expected [{}] {want_type:?}, got {:?} {dt:?}", describe(want_shape), t.dims),
                ));
            }
            // SAFETY: `spindle_tensor::check` above proves data holds product(dims) × `ty.size()` bytes, and
            // `datum` maps `ty` to a plain datum type of that same size.
            let tensor = unsafe { tract_onnx::prelude::Tensor::from_raw_dt(dt, &dims, &t.data) }
                .map_err(|e| fail(ErrorCode::RuntimeError, format!("{e:#}")))?;
            ordered[index] = Some(tensor.into_tvalue());
        }
        let values = ordered
            .into_iter()
            .zip(&model.inputs)
            .map(|(v, (name, _, _))| v.ok_or_else(|| fail(ErrorCode::InvalidArgument, format!("missing input '{name}'"))))
            .collect::<Result<TVec<_>, _>>()?;
        let outputs = model.plan.run(values).map_err(|e| fail(ErrorCode::RuntimeError, format!("inference failed: {e:#}")))?;
        outputs
            .into_iter()
            .zip(&model.outputs)
            .map(|(value, name)| {
                let t = value.into_tensor();
                let ty = tensor_type(t.datum_type())
                    .ok_or_else(|| fail(ErrorCode::UnsupportedOperation, format!("output '{name}' has type {:?}", t.datum_type())))?;
                let dims = t.shape().iter().map(|&d| d as u32).collect();
                Ok((name.clone(), Tensor::new(HostTensor { dims, ty, data: t.as_bytes().to_vec() })))
            })
            .collect()
    }
}

impl inference::Guest for Provider {
    type GraphExecutionContext = Context;
}
