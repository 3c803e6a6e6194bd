//! Spindle: serverless WebAssembly inference functions.
//!
//! The host reads a `spin.toml`, routes HTTP to per-model components, gives each request a fresh
//! instance, and implements `wasi:nn` with real engines behind a compiled-graph cache. Its rooms,
//! in the order a request meets them:
//!
//! | module | owns |
//! |---|---|
//! | [`manifest`] | `spin.toml`: types, strict parsing, every manifest-level check and its error text, the validated route table |
//! | [`http`] | the listener and connections, one request's way in and out, the host's own `/v2` endpoints, status codes |
//! | [`runtime`] | the app built once, each component's grants and limits, admission and the deadline, a `Store` per request, the compiled-component cache, the epoch clock |
//! | [`nn`] | `wasi:nn`: the binding, graph cache, inference pool, named models, placement policy, and one backend per engine |
//! | [`build`] | `spindle build` and `--portable` composition |
//! | [`scaffold`] | `spindle new`: a model's `model.json` from its graph, a function from a template, the component added to `spin.toml` |
//! | [`reload`] | `SIGHUP` and `--watch`: rebuild, reload, swap the app whole |
//! | [`telemetry`] | Prometheus metrics and the admin listener; every other room records into it |
//!
//! Dependencies point one way: `http → runtime → nn`, and each of them reads `manifest`; `build`
//! reads only `manifest`, `scaffold` that and `nn`'s batch-axis rule; `reload` drives `build` and `runtime`. The tensor rules the host shares with the SDK and the wasm provider
//! live in the `spindle-tensor` crate.
#![deny(missing_docs)]

pub mod build;
pub mod http;
pub use spindle_manifest as manifest;
pub mod nn;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod telemetry;
