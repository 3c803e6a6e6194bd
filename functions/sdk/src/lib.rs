//! Typed `wasi:nn` for Spindle inference functions.
//!
//! ```ignore
//! let model = spindle_sdk::Model::open("cifar10")?;
//! let input = spindle_sdk::Tensor::from_f32(&[1, 32, 32, 3], &pixels)?;
//! let outputs = model.run(&[("input", input)])?;
//! let probabilities = outputs.get("probabilities")?.to_f32()?;
//! ```
//!
//! [`Model::open`] asks the host for its shared, precompiled graph (`load-by-name`) and, on a
//! host without named graphs, reads the model file from the component's mounted files
//! (`/models/NAME/model.onnx` or `/models/NAME.onnx`) and `load`s its bytes.
#![deny(missing_docs)]

mod bindings;
mod error;
pub mod form;
#[cfg(feature = "image")]
pub mod image;
pub mod json_tensor;
pub mod oip;
mod tensor;

pub use error::{Error, ErrorKind};
pub use tensor::{ElementType, Tensor};

use bindings::{ErrorCode, ExecutionTarget, GraphEncoding};

/// Where [`Model::open`] looks for a model's file when the host has no graph by that name:
/// [`spindle_tensor::named::model_paths`], the paths the host and the wasm provider use too.
pub fn model_file_candidates(name: &str) -> [String; 2] {
    spindle_tensor::named::model_paths(name)
}

/// A loaded model.
pub struct Model {
    name: String,
    graph: bindings::Graph,
}

impl Model {
    /// Opens a model by name: the host's shared graph if it has one, else the mounted file.
    pub fn open(name: &str) -> Result<Self, Error> {
        let by_name_error = match bindings::load_by_name(name) {
            Ok(graph) => return Ok(Self { name: name.to_owned(), graph }),
            // Only a host that does not know the name sends us to the files; a model that
            // exists but fails to load is reported as it is.
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::UnsupportedOperation) => e.data(),
            Err(e) => return Err(Error::from_nn(ErrorKind::Load, name, "load-by-name", &e)),
        };
        for path in model_file_candidates(name) {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            return Self::from_onnx(name, bytes);
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "model '{name}': the host has no graph by that name ({by_name_error}) and none of {:?} is mounted",
                model_file_candidates(name)
            ),
        ))
    }

    /// Loads ONNX bytes the function holds itself (`wasi:nn` `load`); `name` is for errors.
    /// The host caches compiled graphs by content, so loading the same bytes again is cheap.
    pub fn from_onnx(name: &str, bytes: Vec<u8>) -> Result<Self, Error> {
        bindings::load(&[bytes], GraphEncoding::Onnx, ExecutionTarget::Cpu)
            .map(|graph| Self { name: name.to_owned(), graph })
            .map_err(|e| Error::from_nn(ErrorKind::Load, name, "load", &e))
    }

    /// The name it was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the model on named inputs and returns its named outputs.
    pub fn run(&self, inputs: &[(&str, Tensor)]) -> Result<Outputs, Error> {
        let context = self
            .graph
            .init_execution_context()
            .map_err(|e| Error::from_nn(ErrorKind::Compute, &self.name, "init-execution-context", &e))?;
        let inputs = inputs.iter().map(|(name, t)| (name.to_string(), t.to_nn())).collect::<Vec<_>>();
        let outputs = context.compute(inputs).map_err(|e| {
            let kind = match e.code() {
                ErrorCode::InvalidArgument | ErrorCode::TooLarge => ErrorKind::InvalidInput,
                _ => ErrorKind::Compute,
            };
            Error::from_nn(kind, &self.name, "compute", &e)
        })?;
        let outputs = outputs.into_iter().map(|(name, t)| Tensor::from_nn(&t).map(|t| (name, t))).collect::<Result<Vec<_>, _>>()?;
        Ok(Outputs { model: self.name.clone(), outputs })
    }
}

/// A model's named outputs.
pub struct Outputs {
    model: String,
    outputs: Vec<(String, Tensor)>,
}

impl Outputs {
    /// The output called `name`, or an error listing the ones there are.
    pub fn get(&self, name: &str) -> Result<&Tensor, Error> {
        self.outputs.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| {
            Error::new(
                ErrorKind::Compute,
                format!(
                    "model '{}' has no output '{name}' (outputs: {:?})",
                    self.model,
                    self.outputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
                ),
            )
        })
    }

    /// All outputs, in the model's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.outputs.iter().map(|(n, t)| (n.as_str(), t))
    }
}
