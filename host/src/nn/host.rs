//! The generated `wasi:nn` traits, implemented over [`NnView`].

use super::NnView;
use super::backend::{BackendError, Device, ElementType, Tensor};
use super::batch::{Batcher, SubmitError};
use super::bindings::{ErrorCode, ExecutionTarget, GraphEncoding, TensorType, errors, graph, inference, tensor};
use super::footprint::PeakError;
use super::graphs::SharedGraph;
use super::models::LoadByNameError;
use std::sync::Arc;
use tracing::Instrument;
use tracing::field::Empty;
use wasmtime::component::Resource;

/// A loaded graph, as a guest holds it, with the batcher its computes go through (named models).
pub struct GraphResource(Arc<SharedGraph>, Option<Arc<Batcher>>);

/// A graph bound for compute; graphs are stateless, so this shares the graph.
pub struct ExecutionContext(Arc<SharedGraph>, Option<Arc<Batcher>>);

/// A guest-visible `wasi:nn` error: a code and a message saying what was wrong.
#[derive(Debug)]
pub struct NnError {
    code: ErrorCode,
    message: String,
}

impl NnError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

fn code_of(e: &BackendError) -> ErrorCode {
    match e {
        BackendError::InvalidModel(_) => ErrorCode::InvalidEncoding,
        BackendError::InvalidInput(_) => ErrorCode::InvalidArgument,
        BackendError::TooLarge(_) => ErrorCode::TooLarge,
        BackendError::Unsupported(_) => ErrorCode::UnsupportedOperation,
        BackendError::Runtime(_) => ErrorCode::RuntimeError,
        BackendError::Refused(_) => ErrorCode::Security,
        BackendError::Stopped(_) => ErrorCode::Timeout,
    }
}

impl From<BackendError> for NnError {
    fn from(e: BackendError) -> Self {
        Self::new(code_of(&e), e.to_string())
    }
}

impl From<LoadByNameError> for NnError {
    fn from(e: LoadByNameError) -> Self {
        let code = match &e {
            LoadByNameError::NotFound { .. } => ErrorCode::NotFound,
            LoadByNameError::Backend { source, .. } => code_of(source),
        };
        Self::new(code, e.to_string())
    }
}

impl From<wasmtime::component::ResourceTableError> for NnError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        Self::new(ErrorCode::Unknown, format!("resource table: {e}"))
    }
}

type NnResult<T> = Result<T, NnError>;
/// What the generated traits return: a trap (outer) or a guest-visible error resource (inner).
type GuestResult<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

impl NnView<'_> {
    fn answer<T>(&mut self, result: NnResult<T>) -> GuestResult<T> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(e) => {
                tracing::debug!(code = ?e.code, message = %e.message, "wasi:nn error returned to guest");
                Ok(Err(self.table.push(e)?))
            }
        }
    }

    async fn load_bytes(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnResult<Resource<GraphResource>> {
        if !matches!(encoding, GraphEncoding::Onnx | GraphEncoding::Autodetect) {
            return Err(NnError::new(
                ErrorCode::InvalidEncoding,
                format!("graph encoding {encoding:?} is not supported; this host runs ONNX"),
            ));
        }
        self.check_target(target)?;
        let [model]: [Vec<u8>; 1] = builders
            .try_into()
            .map_err(|b: Vec<Vec<u8>>| NnError::new(ErrorCode::InvalidArgument, format!("an ONNX graph is one buffer, got {}", b.len())))?;
        let component = self.ctx.component.clone();
        let limit = component.limits.max_model_bytes;
        if model.len() > limit {
            return Err(NnError::new(
                ErrorCode::TooLarge,
                format!("a model of {} bytes exceeds this component's max_model_bytes of {limit}", model.len()),
            ));
        }
        self.ctx.tensors.take(model.len()).map_err(|e| NnError::new(ErrorCode::TooLarge, format!("the model: {e}")))?;
        let graph = component.guest_graphs.get_or_compile(&component.cache, model.into(), &component.placement.backend).await?;
        Ok(self.table.push(GraphResource(graph, None))?)
    }

    async fn load_named(&mut self, name: String) -> NnResult<Resource<GraphResource>> {
        let component = self.ctx.component.clone();
        let (graph, batcher) = component.models.load(&name, &component.cache, &component.placement.backend).await?;
        if !self.ctx.loaded.contains(&name) {
            self.ctx.loaded.push(name);
        }
        Ok(self.table.push(GraphResource(graph, batcher))?)
    }

    async fn run(
        &mut self,
        context: Resource<ExecutionContext>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> wasmtime::Result<NnResult<Vec<(String, Resource<Tensor>)>>> {
        let ExecutionContext(graph, batcher) = self.table.get(&context)?;
        let (graph, batcher) = (graph.clone(), batcher.clone());
        // Inputs are consumed: their bytes leave the instance's budget.
        let mut taken = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let tensor = match self.table.delete(t) {
                Ok(tensor) => tensor,
                Err(e) => return Ok(Err(e.into())),
            };
            self.ctx.tensors.give_back(tensor.data.len());
            taken.push((name, tensor));
        }
        let inputs = taken;
        if let Some(footprint) = graph.footprint() {
            let shapes: Vec<(&str, &[u32])> = inputs.iter().map(|(name, t)| (name.as_str(), t.dims.as_slice())).collect();
            // The engine holds the inputs beside what the graph makes of them.
            let input_bytes: usize = inputs.iter().map(|(_, t)| t.data.len()).sum();
            if let Err(e) = footprint.check(&shapes, self.ctx.tensors.available().saturating_sub(input_bytes)) {
                let code = match e {
                    PeakError::Shape(_) | PeakError::Missing(_) => ErrorCode::InvalidArgument,
                    PeakError::OverBudget { .. } | PeakError::Unbounded => ErrorCode::TooLarge,
                };
                return Ok(Err(NnError::new(code, e.to_string())));
            }
        }
        let queued = std::time::Instant::now();
        let deadline = self.ctx.deadline;
        let outputs = match batcher {
            Some(batcher) => {
                let interest = self.ctx.interests.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &batcher)).map(|(_, i)| i);
                match batcher.compute(graph, inputs, deadline, interest).await {
                    Ok(outputs) => outputs,
                    // A full batch queue answers the request 503, as a full admission queue does.
                    Err(full @ SubmitError::QueueFull { .. }) => return Err(full.into()),
                    Err(SubmitError::Backend(e)) => return Ok(Err(e.into())),
                }
            }
            None => match self.ctx.component.cache.pool().compute(graph, inputs, deadline).await {
                Ok((outputs, _)) => outputs,
                Err(e) => return Ok(Err(e.into())),
            },
        };
        tracing::debug!(total_us = queued.elapsed().as_micros() as u64, "compute");
        let output_bytes = outputs.iter().map(|(_, t)| t.data.len()).sum();
        if let Err(e) = self.ctx.tensors.take(output_bytes) {
            return Ok(Err(NnError::new(ErrorCode::TooLarge, format!("the outputs: {e}"))));
        }
        let pushed: Result<Vec<_>, _> = outputs.into_iter().map(|(name, t)| Ok((name, self.table.push(t)?))).collect();
        Ok(pushed)
    }
}

impl graph::Host for NnView<'_> {
    async fn load(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> GuestResult<Resource<GraphResource>> {
        let span = self.span("wasi_nn.load", None);
        span.record("bytes", builders.iter().map(Vec::len).sum::<usize>() as i64);
        let result = self.load_bytes(builders, encoding, target).instrument(span).await;
        self.answer(result)
    }

    async fn load_by_name(&mut self, name: String) -> GuestResult<Resource<GraphResource>> {
        let span = self.span("wasi_nn.load", Some(&name));
        let result = self.load_named(name).instrument(span).await;
        self.answer(result)
    }
}

impl NnView<'_> {
    /// A span for one `wasi:nn` call, a child of the request's: at debug level, so the log pays
    /// for it only when asked (`RUST_LOG=spindle=debug`), while OTLP export always has it.
    fn span(&self, name: &'static str, model: Option<&str>) -> tracing::Span {
        let placement = &self.ctx.component.placement;
        let span = match name {
            "wasi_nn.compute" => {
                tracing::debug_span!(
                    "wasi_nn.compute",
                    model = Empty,
                    engine = placement.backend.name(),
                    device = placement.device.as_str()
                )
            }
            _ => tracing::debug_span!(
                "wasi_nn.load",
                model = Empty,
                bytes = Empty,
                engine = placement.backend.name(),
                device = placement.device.as_str()
            ),
        };
        if let Some(model) = model {
            span.record("model", crate::telemetry::traces::clip(model));
        }
        span
    }

    /// The guest's execution target is a request: the host's placement decides, and refuses a
    /// device it has not given this component.
    fn check_target(&self, target: ExecutionTarget) -> NnResult<()> {
        let placement = &self.ctx.component.placement;
        match target {
            ExecutionTarget::Cpu => Ok(()),
            ExecutionTarget::Gpu if placement.device == Device::Gpu => Ok(()),
            other => Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "execution target {other:?} refused: this component runs on {} {} ({})",
                    placement.backend.name(),
                    placement.device,
                    placement.reason
                ),
            )),
        }
    }
}

impl graph::HostGraph for NnView<'_> {
    fn init_execution_context(&mut self, graph: Resource<GraphResource>) -> GuestResult<Resource<ExecutionContext>> {
        let GraphResource(graph, batcher) = self.table.get(&graph)?;
        let context = ExecutionContext(graph.clone(), batcher.clone());
        Ok(Ok(self.table.push(context)?))
    }

    fn drop(&mut self, graph: Resource<GraphResource>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::Host for NnView<'_> {}

impl inference::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        context: Resource<ExecutionContext>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> GuestResult<Vec<(String, Resource<Tensor>)>> {
        let model = self.table.get(&context)?.1.as_ref().map(|b| b.model().to_owned());
        let span = self.span("wasi_nn.compute", model.as_deref());
        let result = self.run(context, inputs).instrument(span).await?;
        self.answer(result)
    }

    fn drop(&mut self, context: Resource<ExecutionContext>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        Ok(())
    }
}

impl tensor::Host for NnView<'_> {}

impl tensor::HostTensor for NnView<'_> {
    fn new(&mut self, dims: Vec<u32>, ty: TensorType, data: Vec<u8>) -> wasmtime::Result<Resource<Tensor>> {
        // Shape and length are checked at compute, where the error can name the input. This
        // function cannot return a wasi:nn error, so a tensor over the budget traps the instance.
        self.ctx.tensors.take(data.len()).map_err(|e| wasmtime::format_err!("tensor::new: {e}"))?;
        Ok(self.table.push(Tensor { dims, ty: element_type(ty), data })?)
    }

    fn dimensions(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&t)?.dims.clone())
    }

    fn ty(&mut self, t: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(tensor_type(self.table.get(&t)?.ty))
    }

    fn data(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&t)?.data.clone())
    }

    fn drop(&mut self, t: Resource<Tensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(t)?;
        self.ctx.tensors.give_back(tensor.data.len());
        Ok(())
    }
}

impl errors::Host for NnView<'_> {}

impl errors::HostError for NnView<'_> {
    fn code(&mut self, e: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&e)?.code)
    }

    fn data(&mut self, e: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&e)?.message.clone())
    }

    fn drop(&mut self, e: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(e)?;
        Ok(())
    }
}

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

fn tensor_type(ty: ElementType) -> TensorType {
    match ty {
        ElementType::F16 => TensorType::Fp16,
        ElementType::F32 => TensorType::Fp32,
        ElementType::F64 => TensorType::Fp64,
        ElementType::Bf16 => TensorType::Bf16,
        ElementType::U8 => TensorType::U8,
        ElementType::I32 => TensorType::I32,
        ElementType::I64 => TensorType::I64,
    }
}
