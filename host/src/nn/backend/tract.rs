//! The tract backend: pure Rust, always available, CPU.

use super::{Backend, BackendError, Dim, ElementType, Graph, Tensor, TensorSpec};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// Compiles ONNX models with `tract-onnx` into optimised, runnable plans.
#[derive(Default)]
pub struct TractBackend;

struct TractGraph {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn load(&self, model: &[u8]) -> Result<Arc<dyn Graph>, BackendError> {
        let invalid = |e: TractError| BackendError::InvalidModel(format!("{e:#}"));
        let inference = tract_onnx::onnx().model_for_read(&mut &model[..]).map_err(invalid)?;
        let label = |outlet: OutletId| {
            inference
                .outlet_label(outlet)
                .map(str::to_owned)
                .unwrap_or_else(|| inference.node(outlet.node).name.clone())
        };
        let input_names: Vec<String> = inference.input_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
        let output_names: Vec<String> = inference.output_outlets().map_err(invalid)?.iter().map(|&o| label(o)).collect();
        let typed = inference.into_typed().and_then(|m| m.into_decluttered()).map_err(invalid)?;
        let inputs = specs(&typed, typed.input_outlets().map_err(invalid)?, input_names)?;
        let outputs = specs(&typed, typed.output_outlets().map_err(invalid)?, output_names)?;
        let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(invalid)?;
        Ok(Arc::new(TractGraph { plan, inputs, outputs }))
    }
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

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
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
        let outputs = self.plan.run(values).map_err(runtime)?;
        outputs
            .into_iter()
            .map(|value| {
                let tensor = value.into_tensor();
                let ty = element_type(tensor.datum_type())
                    .ok_or_else(|| BackendError::Unsupported(format!("output of type {:?}", tensor.datum_type())))?;
                Ok(Tensor {
                    dims: tensor.shape().iter().map(|&d| d as u32).collect(),
                    ty,
                    data: tensor.as_bytes().to_vec(),
                })
            })
            .collect()
    }
}
