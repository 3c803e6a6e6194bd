//! Spindle: serverless WebAssembly inference functions.
//!
//! The host reads a `spin.toml`, routes HTTP to per-model components, gives each request a fresh
//! instance, and implements `wasi:nn` with real engines behind a compiled-graph cache.

pub mod app;
pub mod builder;
pub mod cache;
pub mod files;
pub mod instance;
pub mod manifest;
pub mod nn;
pub mod portable;
pub mod protocol;
pub mod routes;
pub mod server;
