//! `spindle new classifier`: an image classifier function from a template. The template's code
//! (`classifier/lib.rs`) is the same for every model; what it knows about this one (input and
//! output names, size, channel layout, normalisation, labels) is written to `model.rs` from the
//! graph and the options.

use super::describe::{ModelDescription, TensorDescription};
use super::project::{Created, Project};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("classifier/Cargo.toml.in");
const LIB_RS: &str = include_str!("classifier/lib.rs");

/// What `spindle new classifier` was asked for.
pub struct Classifier {
    /// The model's name (its folder, routes and protocol name).
    pub name: String,
    /// Component id and crate name; by default the model's name in component-id form.
    pub id: Option<String>,
    /// The ONNX file to copy: one FP32 image input, NHWC or NCHW with 3 channels.
    pub model: PathBuf,
    /// One label per class, a line each.
    pub labels: PathBuf,
    /// `(width, height)` to resize to, when the graph leaves them symbolic.
    pub size: Option<(u32, u32)>,
    /// The scores output; by default the first FP32 one.
    pub output: Option<String>,
    /// Per-channel mean subtracted after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel divisor after the mean.
    pub std: [f32; 3],
    /// The model answers logits: apply a softmax.
    pub softmax: bool,
    /// Written to `model.json`, for the protocol endpoints.
    pub max_batch_size: u32,
}

/// Where an image input keeps its channels.
#[derive(Debug, PartialEq)]
enum Layout {
    Nhwc,
    Nchw,
}

/// What `model.rs` says about the graph.
#[derive(Debug, PartialEq)]
struct ImageModel {
    input: String,
    output: String,
    layout: Layout,
    width: u32,
    height: u32,
}

/// Adds `spec`'s classifier to the app of `manifest`.
pub fn classifier(manifest: &Path, spec: &Classifier) -> Result<Created> {
    let mut project = Project::open(manifest, &spec.name, spec.id.as_deref())?;
    let (model, id) = (project.model().to_owned(), project.id().to_owned());
    project.require("functions/sdk/Cargo.toml", "the Spindle SDK")?;
    project.refuse_existing(&format!("functions/{id}"))?;
    let (bytes, description) = super::read_model(&spec.model, &model, spec.max_batch_size, None)?;
    let image = image_model(&description, spec.size, spec.output.as_deref())?;
    let labels = std::fs::read_to_string(&spec.labels).map_err(|e| anyhow::anyhow!("reading the labels {}: {e}", spec.labels.display()))?;
    let count = labels.lines().filter(|l| !l.trim().is_empty()).count();
    let classes = description.outputs.iter().find(|o| o.name == image.output).and_then(classes);
    match classes {
        _ if count == 0 => bail!("{} has no labels: write one per line, in the order of the model's classes", spec.labels.display()),
        Some(classes) if classes != count => {
            bail!("{} has {count} labels, but output '{}' scores {classes} classes", spec.labels.display(), image.output)
        }
        _ => {}
    }
    project.add_workspace_member(&format!("functions/{id}"))?;
    project.write_model(&bytes, &description.to_json());
    project.write(&format!("models/{model}/labels.txt"), labels.as_bytes());
    project.create_dir(&format!("functions/{id}"));
    let description_text = format!("{model}: an image in, top-k labels out (spindle new classifier)");
    project.write(
        &format!("functions/{id}/Cargo.toml"),
        CARGO_TOML.replace("{name}", &id).replace("{description}", &description_text).as_bytes(),
    );
    project.write(&format!("functions/{id}/src/lib.rs"), LIB_RS.as_bytes());
    project.write(&format!("functions/{id}/src/model.rs"), model_rs(&model, &image, spec).as_bytes());
    let watch = [format!("../../models/{model}/labels.txt"), format!("../../models/{model}/model.json")];
    project.add_component(&[format!("/models/{model}/..."), format!("/v2/models/{model}/...")], &description_text, &id, &watch);
    project.commit()
}

/// The image input and the scores output (`output`, else the first FP32 one) of `model`, or
/// why it is not an image classifier.
fn image_model(model: &ModelDescription, size: Option<(u32, u32)>, output: Option<&str>) -> Result<ImageModel> {
    let [input] = &model.inputs[..] else {
        bail!("a classifier takes one image input; this model has {} inputs ({})", model.inputs.len(), names(&model.inputs));
    };
    let scores = match output {
        Some(wanted) => model.outputs.iter().find(|o| o.name == wanted),
        None => model.outputs.iter().find(|o| o.datatype == "FP32"),
    };
    let output = match scores {
        Some(o) if o.datatype == "FP32" => o,
        Some(o) => bail!("output '{}' is {}; the classifier template reads FP32 scores", o.name, o.datatype),
        None if model.outputs.is_empty() => bail!("the model has no outputs"),
        None => match output {
            Some(wanted) => bail!("the model has no output '{wanted}'; it has {}", names(&model.outputs)),
            None => bail!("none of the model's outputs ({}) is FP32 scores", names(&model.outputs)),
        },
    };
    if input.datatype != "FP32" {
        bail!("input '{}' is {}; the classifier template feeds FP32 pixels", input.name, input.datatype);
    }
    let (layout, h, w) = match input.shape[..] {
        [n, 3, h, w] if n == -1 || n == 1 => (Layout::Nchw, h, w),
        [n, h, w, 3] if n == -1 || n == 1 => (Layout::Nhwc, h, w),
        _ => bail!(
            "input '{}' has shape {:?}: expected one RGB image, [1, 3, H, W] or [1, H, W, 3] (-1 for the batch)",
            input.name,
            input.shape
        ),
    };
    let fixed = |d: i64| u32::try_from(d).ok().filter(|&d| d > 0);
    let (width, height) = match (fixed(w), fixed(h), size) {
        (Some(w), Some(h), None) => (w, h),
        (_, _, None) => bail!("input '{}' does not fix the image size ({:?}): give it with --size WIDTHxHEIGHT", input.name, input.shape),
        (fw, fh, Some((width, height))) if fw.is_some_and(|w| w != width) || fh.is_some_and(|h| h != height) => {
            bail!("--size {width}x{height} differs from input '{}', whose shape is {:?}", input.name, input.shape)
        }
        (_, _, Some(size)) => size,
    };
    Ok(ImageModel { input: input.name.clone(), output: output.name.clone(), layout, width, height })
}

/// How many classes an output scores: its dimensions after the batch, when the graph fixes them.
fn classes(output: &TensorDescription) -> Option<usize> {
    let dims = match output.shape[..] {
        [] => return None,
        [_, ref rest @ ..] if !rest.is_empty() => rest,
        ref all => all,
    };
    dims.iter().try_fold(1usize, |n, &d| (d > 0).then(|| n * d as usize))
}

fn names(tensors: &[TensorDescription]) -> String {
    tensors.iter().map(|t| format!("'{}'", t.name)).collect::<Vec<_>>().join(", ")
}

/// The template's `model.rs` for this model.
fn model_rs(name: &str, image: &ImageModel, spec: &Classifier) -> String {
    let ImageModel { input, output, layout, width, height } = image;
    let shape = match layout {
        Layout::Nhwc => format!("[1, {height}, {width}, 3]"),
        Layout::Nchw => format!("[1, 3, {height}, {width}]"),
    };
    format!(
        r#"//! What this classifier knows about its model, written by `spindle new classifier` from
//! `models/{name}/model.onnx`: edit it to change the preprocessing.

/// The model's name: its graph, its routes, and `/models/{name}/` where its files are mounted.
pub const NAME: &str = "{name}";
/// The image input.
pub const INPUT: &str = {input:?};
/// The scores output, one per label.
pub const OUTPUT: &str = {output:?};
/// One image's input shape, in [`LAYOUT`].
pub const SHAPE: [usize; 4] = {shape};
/// Where the input keeps its channels.
pub const LAYOUT: Layout = Layout::{layout:?};
/// Images are resized to this width...
pub const WIDTH: u32 = {width};
/// ...and this height.
pub const HEIGHT: u32 = {height};
/// Each channel (R, G, B) is scaled to [0, 1], then `(value - MEAN) / STD`.
pub const MEAN: [f32; 3] = {mean:?};
/// See [`MEAN`].
pub const STD: [f32; 3] = {std:?};
/// The output is logits, turned into probabilities with a softmax.
pub const SOFTMAX: bool = {softmax};
/// One label per class, in the output's order.
pub const LABELS: &str = include_str!("../../../models/{name}/labels.txt");
/// The declared description the Open Inference Protocol endpoints answer from.
pub const CONFIG: &str = include_str!("../../../models/{name}/model.json");

/// Where an image input keeps its channels.
#[derive(Clone, Copy)]
#[allow(dead_code, reason = "the template's code handles both; a model uses one")]
pub enum Layout {{
    /// `[batch, height, width, channels]`.
    Nhwc,
    /// `[batch, channels, height, width]`.
    Nchw,
}}

impl Layout {{
    /// `NHWC` or `NCHW`.
    pub fn as_str(self) -> &'static str {{
        match self {{
            Layout::Nhwc => "NHWC",
            Layout::Nchw => "NCHW",
        }}
    }}
}}
"#,
        mean = spec.mean,
        std = spec.std,
        softmax = spec.softmax,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, datatype: &str, shape: &[i64]) -> TensorDescription {
        TensorDescription { name: name.into(), datatype: datatype.into(), shape: shape.to_vec() }
    }

    fn model(inputs: Vec<TensorDescription>, outputs: Vec<TensorDescription>) -> ModelDescription {
        ModelDescription {
            name: "m".into(),
            platform: "onnxruntime_onnx".into(),
            versions: vec!["1".into()],
            max_batch_size: 0,
            inputs,
            outputs,
            dynamic_batching: None,
        }
    }

    #[test]
    fn layout_and_size_come_from_the_input() {
        let m = model(vec![tensor("x", "FP32", &[-1, 3, 224, 192])], vec![tensor("y", "FP32", &[-1, 1000])]);
        let image = image_model(&m, None, None).unwrap();
        assert_eq!((image.layout, image.width, image.height), (Layout::Nchw, 192, 224));
        let m = model(vec![tensor("x", "FP32", &[1, -1, -1, 3])], vec![tensor("y", "FP32", &[1, 10])]);
        assert!(image_model(&m, None, None).unwrap_err().to_string().contains("--size"));
        let image = image_model(&m, Some((64, 48)), None).unwrap();
        assert_eq!((image.layout, image.width, image.height), (Layout::Nhwc, 64, 48));
        let m = model(vec![tensor("x", "FP32", &[1, 3, -1, 32])], vec![tensor("y", "FP32", &[1, 10])]);
        assert_eq!(image_model(&m, Some((32, 20)), None).unwrap().height, 20);
        assert!(image_model(&m, Some((30, 20)), None).unwrap_err().to_string().contains("differs"));
    }

    #[test]
    fn what_is_not_one_rgb_image_is_refused() {
        for (inputs, expect) in [
            (vec![tensor("x", "FP32", &[1, 1, 28, 28])], "expected one RGB image"),
            (vec![tensor("x", "UINT8", &[1, 3, 28, 28])], "FP32"),
            (vec![tensor("x", "FP32", &[8, 3, 28, 28])], "expected one RGB image"),
            (vec![tensor("a", "FP32", &[1, 3, 2, 2]), tensor("b", "FP32", &[1])], "2 inputs ('a', 'b')"),
        ] {
            let e = image_model(&model(inputs, vec![tensor("y", "FP32", &[1, 10])]), None, None).unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
        let m = model(vec![tensor("x", "FP32", &[1, 3, 32, 32])], vec![tensor("y", "FP32", &[1, 10])]);
        assert!(image_model(&m, Some((16, 16)), None).unwrap_err().to_string().contains("differs"));
        let m = model(vec![tensor("x", "FP32", &[1, 3, 32, 32])], vec![]);
        assert!(image_model(&m, None, None).unwrap_err().to_string().contains("no outputs"));
    }

    #[test]
    fn the_scores_are_the_first_fp32_output_or_the_one_named() {
        let x = || vec![tensor("x", "FP32", &[1, 3, 8, 8])];
        let m = model(x(), vec![tensor("label", "INT64", &[1]), tensor("probs", "FP32", &[1, 3])]);
        assert_eq!(image_model(&m, None, None).unwrap().output, "probs");
        assert!(image_model(&m, None, Some("label")).unwrap_err().to_string().contains("INT64"));
        assert!(image_model(&m, None, Some("nope")).unwrap_err().to_string().contains("no output 'nope'; it has 'label', 'probs'"));
        let m = model(x(), vec![tensor("label", "INT64", &[1])]);
        assert!(image_model(&m, None, None).unwrap_err().to_string().contains("none of the model's outputs ('label')"));
    }

    #[test]
    fn classes_are_the_dimensions_after_the_batch() {
        assert_eq!(classes(&tensor("y", "FP32", &[-1, 10])), Some(10));
        assert_eq!(classes(&tensor("y", "FP32", &[1, 10, 1, 1])), Some(10));
        assert_eq!(classes(&tensor("y", "FP32", &[-1, -1])), None);
        assert_eq!(classes(&tensor("y", "FP32", &[7])), Some(7));
    }
}
