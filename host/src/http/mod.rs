//! Serving: the listener and its connections ([`server`]), one request's way from the socket to
//! a component and back ([`request`]), the host's own Open Inference Protocol endpoints
//! ([`protocol`]), the same protocol over gRPC ([`grpc`]) and the responses the host writes
//! itself ([`response`]).
//!
//! This module owns status codes and headers; it runs guests only through
//! [`crate::runtime::App::invoke`] and matches routes with the router the manifest validated.

pub mod grpc;
pub mod protocol;
pub mod request;
pub mod response;
pub mod server;

pub use server::Server;
