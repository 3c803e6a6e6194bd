//! Named models, once per component: the models it may `load-by-name`, which are exactly the
//! model files its manifest mounts, named as [`spindle_tensor::named`] says.

use super::backend::{Backend, BackendError};
use super::batch::{BatchPolicy, Batcher, PolicyError};
use super::graphs::{GraphCache, SharedGraph};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// One model a component may load by name.
pub struct NamedModel {
    /// Where the bytes are on the host.
    pub host_path: PathBuf,
    /// Where the component sees the same file.
    pub guest_path: String,
    graph: OnceCell<Arc<SharedGraph>>,
    /// Its computes, batched as its description says; `None` until [`ComponentModels::batch`].
    batcher: Option<Arc<Batcher>>,
}

/// The named models of one component, resolved from its mounted files.
#[derive(Default)]
pub struct ComponentModels {
    models: BTreeMap<String, NamedModel>,
}

/// Errors naming a component's models from its mounted files.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    /// Two files with one name.
    #[error("two mounted model files are both named '{name}': {first} and {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// The first file's guest path.
        first: String,
        /// The second file's guest path.
        second: String,
    },
}

impl ComponentModels {
    /// Names every mounted `.onnx` file: `/models/NAME/model.onnx` and `…/NAME.onnx` are `NAME`.
    pub fn from_mounted_files(files: impl IntoIterator<Item = (String, PathBuf)>) -> Result<Self, NamingError> {
        let mut models = BTreeMap::new();
        for (guest_path, host_path) in files {
            let Some(name) = spindle_tensor::named::model_name(&guest_path).map(str::to_owned) else { continue };
            if let Some(existing) = models.get(&name) {
                let existing: &NamedModel = existing;
                return Err(NamingError::Duplicate { name, first: existing.guest_path.clone(), second: guest_path });
            }
            models.insert(name, NamedModel { host_path, guest_path, graph: OnceCell::new(), batcher: None });
        }
        Ok(Self { models })
    }

    /// Reads each model's batching from its description (`model.json` beside `NAME/model.onnx`,
    /// or `NAME.json` beside `NAME.onnx`), if it has one; `dynamic` false turns dynamic
    /// batching off (`max_batch_size` still holds).
    pub fn batch(&mut self, cache: &Arc<GraphCache>, dynamic: bool) -> Result<(), PolicyError> {
        for (name, model) in &mut self.models {
            let description = if model.host_path.file_name().is_some_and(|f| f == "model.onnx") {
                model.host_path.with_file_name("model.json")
            } else {
                model.host_path.with_extension("json")
            };
            let policy = if description.is_file() {
                BatchPolicy::from_description(name, &description, &model.host_path, dynamic)?
            } else {
                BatchPolicy::default()
            };
            model.batcher = Some(Batcher::new(name, policy, cache.clone()));
        }
        Ok(())
    }

    /// The batchers of its models that merge computes.
    pub fn batchers(&self) -> impl Iterator<Item = &Arc<Batcher>> {
        self.models.values().filter_map(|m| m.batcher.as_ref()).filter(|b| b.policy().dynamic.is_some())
    }

    /// Labels each named model's Prometheus metrics with its component and placement.
    pub fn label_metrics(&self, component: &str, engine: &str, device: &str) {
        for (name, stats) in self.stats() {
            stats.label(component, name, engine, device);
        }
    }

    /// What each named model's computes have been so far, by name.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &super::stats::ModelStats)> {
        self.models.iter().filter_map(|(name, m)| Some((name.as_str(), m.batcher.as_ref()?.stats())))
    }

    /// Whether the model of that name has its graph loaded; `None` when it has no such model.
    pub fn is_loaded(&self, name: &str) -> Option<bool> {
        self.models.get(name).map(|m| m.graph.initialized())
    }

    /// The names it may load.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Loads a named model through the shared cache; later calls return the same graph directly.
    /// Its computes go through its batcher, if it has one.
    pub async fn load(
        &self,
        name: &str,
        cache: &GraphCache,
        backend: &Arc<dyn Backend>,
    ) -> Result<(Arc<SharedGraph>, Option<Arc<Batcher>>), LoadByNameError> {
        let model = self
            .models
            .get(name)
            .ok_or_else(|| LoadByNameError::NotFound { name: name.to_owned(), available: self.names().map(str::to_owned).collect() })?;
        model
            .graph
            .get_or_try_init(|| async {
                let bytes = tokio::fs::read(&model.host_path)
                    .await
                    .map_err(|e| BackendError::InvalidModel(format!("cannot read {}: {e}", model.host_path.display())))?;
                cache.get_or_compile(bytes.into(), backend).await
            })
            .await
            .cloned()
            .map(|graph| (graph, model.batcher.clone()))
            .map_err(|source| LoadByNameError::Backend { name: name.to_owned(), source })
    }
}

/// Why `load-by-name` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadByNameError {
    /// No mounted file has that name.
    #[error("no model named '{name}' is mounted for this component (available: {available:?})")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names there are.
        available: Vec<String>,
    },
    /// The file is there and its engine refused it.
    #[error("model '{name}': {source}")]
    Backend {
        /// The name asked for.
        name: String,
        /// The engine's error.
        source: BackendError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_are_refused() {
        let err = ComponentModels::from_mounted_files([
            ("/a/cifar10.onnx".to_string(), PathBuf::from("x")),
            ("/models/cifar10/model.onnx".to_string(), PathBuf::from("y")),
        ])
        .err()
        .expect("duplicate");
        assert!(err.to_string().contains("'cifar10'"), "{err}");
    }
}
