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
mod bindings;
pub mod graphs;
mod host;
pub mod models;
pub mod policy;
pub mod pool;

use graphs::GraphCache;
use models::ComponentModels;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// Per-instance `wasi:nn` state: what this component may load, and the host's shared cache.
pub struct NnCtx {
    models: Arc<ComponentModels>,
    cache: Arc<GraphCache>,
    placement: policy::Placement,
}

impl NnCtx {
    /// The state for one instance of a component with these models and this placement.
    pub fn new(models: Arc<ComponentModels>, cache: Arc<GraphCache>, placement: policy::Placement) -> Self {
        Self { models, cache, placement }
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
