//! `wasi:nn` for guests: the host binding, the engines behind it, and the graph caches.
//!
//! A guest's `load-by-name(n)` resolves only among the model files mounted into that
//! component; `load(bytes)` goes through the same content-addressed [`GraphCache`], so both
//! paths share one compiled graph. `compute` validates every tensor before an engine sees it
//! and runs on the blocking pool, never on the async workers that serve HTTP.

pub mod backend;
mod bindings;
mod host;
pub mod policy;
pub mod registry;

use registry::{ComponentModels, GraphCache};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// Per-instance `wasi:nn` state: what this component may load, and the host's shared cache.
pub struct NnCtx {
    pub models: Arc<ComponentModels>,
    pub cache: Arc<GraphCache>,
    pub placement: policy::Placement,
}

/// A borrow of the instance's `wasi:nn` state and resource table.
pub struct NnView<'a> {
    pub ctx: &'a mut NnCtx,
    pub table: &'a mut ResourceTable,
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

/// Adds the `wasi:nn` interfaces to a linker.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    bindings::graph::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::tensor::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::inference::add_to_linker::<_, HasNn>(linker, view)?;
    bindings::errors::add_to_linker::<_, HasNn>(linker, view)?;
    Ok(())
}
