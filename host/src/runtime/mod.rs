//! Running guests: everything between "this request goes to component X" and "here is its
//! response".
//!
//! - [`App`] is built once per app: the wasm engine (with its epoch clock, [`epoch`]), the linker,
//!   one [`LoadedComponent`] per manifest entry with its grants ([`mounts`], [`outbound`],
//!   [`Limits`]) and its inference placement, and the compiled-component [`cache`].
//! - [`App::invoke`] runs one request: [`Admission`], the request deadline, a fresh `Store` with
//!   an [`InstanceState`], the guest's handler ([`invoke`]).
//!
//! This module knows nothing of listeners, connections or status codes ([`crate::http`]), and
//! reaches `wasi:nn` only through its linker entry and per-instance context ([`crate::nn`]).

pub mod access;
mod app;
pub mod cache;
mod component;
pub mod epoch;
pub mod guest_output;
mod instance;
pub mod invoke;
pub mod limits;
mod live;
pub mod mounts;
mod options;
pub mod outbound;
mod variables;

pub use app::App;
pub use cache::ComponentCache;
pub use component::LoadedComponent;
pub use instance::InstanceState;
pub use invoke::InvokeError;
pub use limits::{Admission, Limits, QueueFull};
pub use live::LiveApp;
pub use options::HostOptions;
