//! Generated `wasi:nn` guest bindings; nothing outside this crate sees them.

spin_sdk::wit_bindgen::generate!({
    path: "../../wit",
    world: "spindle:function/inference",
    runtime_path: "::spin_sdk::wit_bindgen::rt",
    generate_all,
});

pub use wasi::nn::errors::{Error as NnError, ErrorCode};
pub use wasi::nn::graph::{ExecutionTarget, Graph, GraphEncoding, load, load_by_name};
pub use wasi::nn::tensor::{Tensor as NnTensor, TensorType};
