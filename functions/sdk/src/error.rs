use crate::bindings::{ErrorCode, NnError};
use std::fmt;

/// What kind of failure, so a function can choose its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such model on the host or in the mounted files.
    NotFound,
    /// The model could not be loaded (bad bytes, unsupported encoding).
    Load,
    /// The inputs do not fit the model (name, type, shape, size): the caller's fault.
    InvalidInput,
    /// The engine failed.
    Compute,
}

/// An error that says which model, which tensor, and what was expected.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: String) -> Self {
        Self { kind, message }
    }

    pub(crate) fn from_nn(kind: ErrorKind, model: &str, call: &str, e: &NnError) -> Self {
        Self::new(kind, format!("model '{model}': {call} failed ({}): {}", code_name(e.code()), e.data()))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument => "invalid-argument",
        ErrorCode::InvalidEncoding => "invalid-encoding",
        ErrorCode::Timeout => "timeout",
        ErrorCode::RuntimeError => "runtime-error",
        ErrorCode::UnsupportedOperation => "unsupported-operation",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::NotFound => "not-found",
        ErrorCode::Security => "security",
        ErrorCode::Unknown => "unknown",
    }
}
