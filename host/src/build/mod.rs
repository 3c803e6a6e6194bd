//! Building an app, as `spin build` does: each component's build commands ([`commands`]), and
//! with `--portable` each `wasi:nn` function composed with the wasm `wasi:nn` provider so it runs
//! on hosts without `wasi:nn` ([`portable`]).
//!
//! Reads the manifest; shares nothing with serving.

pub mod commands;
pub mod portable;

pub use commands::{build_all, build_component};
