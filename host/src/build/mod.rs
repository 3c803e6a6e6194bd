//! Building an app, as `spin build` does: each component's build commands ([`commands`]), each
//! component's imports checked against what it is granted ([`imports`]), and
//! with `--portable` each `wasi:nn` function composed with the wasm `wasi:nn` provider so it runs
//! on hosts without `wasi:nn` ([`portable`]).
//!
//! Reads the manifest; shares nothing with serving.

pub mod commands;
pub mod imports;
pub mod portable;

pub use commands::{build_all, build_component};
