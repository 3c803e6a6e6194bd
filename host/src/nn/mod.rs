//! `wasi:nn` for guests: the host binding, the graph cache, the inference pool, named models,
//! the placement policy, and the engines behind them.
//!
//! A guest's call goes `host` (the binding: resources, guest-visible errors) → [`models`]
//! (`load-by-name(n)` resolves only among the model files mounted into that component) or
//! straight to [`graphs`] (`load(bytes)`: the same content-addressed [`GraphCache`], so both
//! paths share one compiled graph) → [`pool`] (`compute` waits for a slot, never blocking the
//! async workers that serve HTTP) → [`backend`] (validates every tensor, then the engine).
//! [`policy`] decides, once per component at start, which engine and device its models get.
//!
//! This module knows nothing of HTTP, manifests or wasm instances beyond the per-instance
//! [`NnCtx`] and [`NnView`] the runtime hands it.

pub mod backend;
pub mod batch;
mod bindings;
pub mod budget;
pub mod footprint;
pub mod graphs;
mod host;
pub mod models;
pub mod onnx;
pub mod policy;
pub mod pool;
pub mod stats;

/// The hostile fixture's model writer: graphs as a guest would hand them over.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/fixtures/hostile/src/onnx_bytes.rs"]
mod onnx_bytes;

use graphs::GraphCache;
use models::ComponentModels;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// Per-instance `wasi:nn` state: what this component may load, and the host's shared cache.
pub struct NnCtx {
    component: Arc<ComponentNn>,
    /// When the request ends: computes still running then are stopped.
    deadline: Instant,
    /// Bytes of tensors this instance holds in the host.
    tensors: budget::TensorBudget,
    /// This instance, counted by each batcher of its component until it computes there.
    interests: Vec<(Arc<batch::Batcher>, batch::Interest)>,
    /// The named models it loaded, for the audit log.
    loaded: Vec<String>,
}

impl NnCtx {
    /// The state for one instance of `component`, serving a request that ends at `deadline`.
    pub fn new(component: Arc<ComponentNn>, deadline: Instant) -> Self {
        let tensors = budget::TensorBudget::new(component.limits.max_tensor_bytes);
        let interests = component.models.batchers().filter_map(|b| Some((b.clone(), b.interest()?))).collect();
        Self { component, deadline, tensors, interests, loaded: Vec::new() }
    }

    /// The named models it loaded, in the order first loaded.
    pub fn loaded_models(&self) -> &[String] {
        &self.loaded
    }
}

/// One component's `wasi:nn`, built once per app: the models it may load by name, where its
/// graphs run, what it may make the host spend, and the host's shared graph cache.
pub struct ComponentNn {
    /// The models it may `load-by-name`.
    pub models: ComponentModels,
    /// The inference engine and device its models run on.
    pub placement: policy::Placement,
    /// Its limits.
    pub limits: NnLimits,
    /// The host's graph cache.
    pub cache: Arc<GraphCache>,
    /// The graphs it compiled from bytes it handed over, within its budget.
    pub guest_graphs: graphs::GuestGraphs,
}

impl ComponentNn {
    /// A component's `wasi:nn` with these models, placement and limits.
    pub fn new(models: ComponentModels, placement: policy::Placement, limits: NnLimits, cache: Arc<GraphCache>) -> Self {
        Self {
            models,
            placement,
            limits,
            cache,
            guest_graphs: graphs::GuestGraphs::new(limits.max_guest_graph_bytes, limits.allow_dynamic_shapes),
        }
    }
}

/// What one component may make the host spend through `wasi:nn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NnLimits {
    /// Largest model the component may hand over as bytes (`load`); larger is `too-large`.
    pub max_model_bytes: usize,
    /// Bytes of models the graphs it compiled from bytes may add up to; past it, its least
    /// recently used ones are dropped.
    pub max_guest_graph_bytes: usize,
    /// Bytes of tensors (given as inputs, or returned as outputs) one instance may hold in the
    /// host at once.
    pub max_tensor_bytes: usize,
    /// Whether graphs from bytes may have tensors whose sizes do not follow from their inputs'
    /// shapes (their memory then goes unchecked: [`footprint`]).
    pub allow_dynamic_shapes: bool,
}

impl Default for NnLimits {
    fn default() -> Self {
        Self { max_model_bytes: 64 << 20, max_guest_graph_bytes: 256 << 20, max_tensor_bytes: 256 << 20, allow_dynamic_shapes: false }
    }
}

/// A borrow of the instance's `wasi:nn` state and resource table.
pub struct NnView<'a> {
    /// The instance's `wasi:nn` state.
    pub ctx: &'a mut NnCtx,
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

/// Adds the `wasi:nn` interfaces to a linker.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, view: fn(&mut T) -> NnView<'_>) -> wasmtime::Result<()> {
    bindings::graph::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::tensor::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::inference::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::errors::add_to_linker::<_, HasNn>(linker, view)?;
    Ok(())
}
