//! Where a named model's file lives.
//!
//! A function mounts `/models/NAME/model.onnx` (or `/models/NAME.onnx`) and asks `wasi:nn` for
//! `NAME`: the host names mounted files this way, and the SDK and the wasm provider look for a
//! name at these paths, so a model is found by the same name on every host.

/// The paths a model called `name` may be mounted at, in the order they are looked for.
pub fn model_paths(name: &str) -> [String; 2] {
    [format!("/models/{name}/model.onnx"), format!("/models/{name}.onnx")]
}

/// The name of the model mounted at `guest_path`, if it is an ONNX file:
/// `/models/cifar10/model.onnx` → `cifar10`, `/models/mnist.onnx` → `mnist`.
pub fn model_name(guest_path: &str) -> Option<&str> {
    let file = guest_path.rsplit('/').next()?;
    let stem = file.strip_suffix(".onnx").filter(|s| !s.is_empty())?;
    if stem != "model" {
        return Some(stem);
    }
    let parent = guest_path.strip_suffix(file)?.trim_end_matches('/');
    parent.rsplit('/').next().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_models_by_file_or_folder() {
        assert_eq!(model_name("/models/cifar10/model.onnx"), Some("cifar10"));
        assert_eq!(model_name("/models/mnist.onnx"), Some("mnist"));
        assert_eq!(model_name("/models/cifar10/labels.txt"), None);
        assert_eq!(model_name("/model.onnx"), None);
        assert_eq!(model_name("/models/.onnx"), None);
    }

    #[test]
    fn every_path_looked_for_names_the_model_back() {
        for path in model_paths("cifar10") {
            assert_eq!(model_name(&path), Some("cifar10"), "{path}");
        }
    }
}
