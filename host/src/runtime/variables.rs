//! `spin:variables/variables@3.0.0`, which spin-sdk 7's `variables::get` imports: a component
//! reads its own `variables`, resolved from the manifest when the app was built (see
//! `spindle_manifest::variables`). A name it does not declare is `undefined`, as in Spin.

use super::InstanceState;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{Accessor, HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/deps/spin-variables",
        world: "spin:variables/host",
        imports: { default: store | trappable },
    });
}

use bindings::spin::variables::variables::{self, Error};

/// A component's variables, by name.
pub type Values = Arc<BTreeMap<String, String>>;

/// The interface's view of an instance: its component's variables.
struct Variables;

impl HasData for Variables {
    type Data<'a> = &'a Values;
}

impl variables::Host for &Values {}

impl<T> variables::HostWithStore<T> for Variables {
    async fn get(store: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(store.with(|mut store| store.get().get(&name).cloned().ok_or(Error::Undefined(name))))
    }
}

/// Adds the interface to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    variables::add_to_linker::<_, Variables>(linker, |state| &state.variables)
}
