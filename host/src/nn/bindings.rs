//! Generated host bindings for `wasi:nn@0.2.0-rc-2024-10-28`, quarantined here.
//!
//! Resources map to hand-written types so the rest of the host never sees generated names.

wasmtime::component::bindgen!({
    path: "../wit/deps/wasi-nn",
    world: "wasi:nn/ml",
    with: {
        "wasi:nn/graph.graph": super::host::GraphResource,
        "wasi:nn/tensor.tensor": super::backend::Tensor,
        "wasi:nn/inference.graph-execution-context": super::host::ExecutionContext,
        "wasi:nn/errors.error": super::host::NnError,
    },
    imports: {
        "wasi:nn/graph.load": async | trappable,
        "wasi:nn/graph.load-by-name": async | trappable,
        "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
        default: trappable,
    },
});

pub use wasi::nn::errors::{self, ErrorCode};
pub use wasi::nn::graph::{self, ExecutionTarget, GraphEncoding};
pub use wasi::nn::inference;
pub use wasi::nn::tensor::{self, TensorType};
