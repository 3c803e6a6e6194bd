//! `spindle new`: adds a model to an app the way `spin new`/`spin add` add a component. Each
//! kind copies the model under `models/NAME/`, writes its declared description `model.json` from
//! the graph ([`describe`]) and appends the component and its routes to `spin.toml`:
//!
//! - [`oip`]: the generic protocol function serves it, with no code of its own;
//! - [`classifier`]: a function crate from a template, with an image endpoint.
//!
//! Nothing that exists is overwritten; on any error, what was written is removed again.

pub mod classifier;
pub mod describe;
mod project;

pub use classifier::{Classifier, classifier};
pub use project::Created;

use anyhow::{Context, Result, bail};
use project::Project;
use std::path::{Path, PathBuf};

/// `spindle new oip`: a model served by the generic protocol function `functions/oip`.
pub struct Oip {
    /// The model's name (its folder, routes and protocol name).
    pub name: String,
    /// The component's id; by default the model's name in component-id form.
    pub id: Option<String>,
    /// The ONNX file to copy.
    pub model: PathBuf,
    /// Written to `model.json`; 0: the first dimension is not a batch.
    pub max_batch_size: u32,
    /// Turns on dynamic batching, with this queue delay.
    pub max_queue_delay_us: Option<u64>,
}

/// Adds `spec`'s model to the app of `manifest` (created if it does not exist).
pub fn oip(manifest: &Path, spec: &Oip) -> Result<Created> {
    let mut project = Project::open(manifest, &spec.name, spec.id.as_deref())?;
    project.require("functions/oip/Cargo.toml", "the generic protocol function")?;
    let name = &project.model().to_owned();
    let (bytes, description) = read_model(&spec.model, name, spec.max_batch_size, spec.max_queue_delay_us)?;
    project.write_model(&bytes, &description.to_json());
    let description = format!(
        "{name}: {} in, {} out, over the Open Inference Protocol (spindle new oip)",
        tensor_names(&description.inputs),
        tensor_names(&description.outputs)
    );
    project.add_component(&[format!("/v2/models/{name}/...")], &description, "oip", &[]);
    project.commit()
}

/// The model's bytes and its description, or why it cannot be served.
fn read_model(
    path: &Path,
    name: &str,
    max_batch_size: u32,
    max_queue_delay_us: Option<u64>,
) -> Result<(Vec<u8>, describe::ModelDescription)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading the model {}", path.display()))?;
    // What the host would refuse at load or at start is refused now.
    crate::nn::onnx::check_model_bytes(&bytes).with_context(|| format!("{} cannot be served", path.display()))?;
    if max_batch_size > 0 {
        crate::nn::batch::check_batch_axis(&bytes)
            .map_err(|reason| anyhow::anyhow!("{}: --max-batch-size needs a batch axis, but {reason}", path.display()))?;
    }
    match max_queue_delay_us {
        Some(_) if max_batch_size == 0 => bail!("--max-queue-delay-us turns on dynamic batching, which needs --max-batch-size above 0"),
        Some(us) if us > crate::nn::batch::MAX_DELAY_US => {
            bail!("--max-queue-delay-us {us} is over one minute ({})", crate::nn::batch::MAX_DELAY_US)
        }
        _ => {}
    }
    let description =
        describe::describe(&bytes, name, max_batch_size, max_queue_delay_us).with_context(|| format!("{}", path.display()))?;
    Ok((bytes, description))
}

/// `'a' and 'b'`, for a component's description.
fn tensor_names(tensors: &[describe::TensorDescription]) -> String {
    let names: Vec<String> = tensors.iter().map(|t| format!("'{}'", t.name)).collect();
    match names.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
