//! Compiled graphs, cached at the right lifetime.
//!
//! [`GraphCache`] lives once per host: a graph is compiled once per (engine, model bytes) and
//! shared by every instance of every component. [`ComponentModels`] lives once per component:
//! the named models it may `load-by-name`, which are exactly the model files its manifest mounts.

use super::backend::{self, Backend, BackendError, Graph};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Arc<dyn Graph>>>;

/// Compiled graphs keyed by the SHA-256 of their bytes.
pub struct GraphCache {
    backend: Arc<dyn Backend>,
    graphs: Mutex<HashMap<[u8; 32], Slot>>,
    compiles: AtomicUsize,
}

impl GraphCache {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend, graphs: Mutex::default(), compiles: AtomicUsize::new(0) }
    }

    /// The engine graphs are compiled with.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// How many graphs were compiled so far (cache misses).
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Returns the compiled graph for these bytes, compiling them (off the async workers) on a miss.
    /// Concurrent callers with the same bytes wait for one compilation.
    pub async fn get_or_compile(&self, model: Arc<[u8]>) -> Result<Arc<dyn Graph>, BackendError> {
        let digest = {
            let model = model.clone();
            blocking(move || Ok(<[u8; 32]>::from(Sha256::digest(&model)))).await?
        };
        let slot = self.graphs.lock().unwrap_or_else(|e| e.into_inner()).entry(digest).or_default().clone();
        slot.get_or_try_init(|| async {
            let backend = self.backend.clone();
            let started = std::time::Instant::now();
            let graph = blocking(move || backend::load(backend.as_ref(), &model)).await?;
            self.compiles.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                engine = self.backend.name(),
                sha256 = %hex(&digest[..6]),
                ms = started.elapsed().as_millis() as u64,
                "compiled model graph"
            );
            Ok(graph)
        })
        .await
        .cloned()
    }
}

/// Runs CPU-bound engine work on tokio's blocking pool, not on the request workers.
pub async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, BackendError> + Send + 'static,
) -> Result<R, BackendError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackendError::Runtime(format!("inference task failed: {e}")))?
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One model a component may load by name.
pub struct NamedModel {
    /// Where the bytes are on the host.
    pub host_path: PathBuf,
    /// Where the component sees the same file.
    pub guest_path: String,
    graph: OnceCell<Arc<dyn Graph>>,
}

/// The named models of one component, resolved from its mounted files.
#[derive(Default)]
pub struct ComponentModels {
    models: BTreeMap<String, NamedModel>,
}

/// Errors naming a component's models from its mounted files.
#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    #[error("two mounted model files are both named '{name}': {first} and {second}")]
    Duplicate { name: String, first: String, second: String },
}

impl ComponentModels {
    /// Names every mounted `.onnx` file: `/models/NAME/model.onnx` and `…/NAME.onnx` are `NAME`.
    pub fn from_mounted_files(files: impl IntoIterator<Item = (String, PathBuf)>) -> Result<Self, NamingError> {
        let mut models = BTreeMap::new();
        for (guest_path, host_path) in files {
            let Some(name) = model_name(&guest_path) else { continue };
            if let Some(existing) = models.get(&name) {
                let existing: &NamedModel = existing;
                return Err(NamingError::Duplicate { name, first: existing.guest_path.clone(), second: guest_path });
            }
            models.insert(name, NamedModel { host_path, guest_path, graph: OnceCell::new() });
        }
        Ok(Self { models })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Loads a named model through the shared cache; later calls return the same graph directly.
    pub async fn load(&self, name: &str, cache: &GraphCache) -> Result<Arc<dyn Graph>, LoadByNameError> {
        let model = self.models.get(name).ok_or_else(|| LoadByNameError::NotFound {
            name: name.to_owned(),
            available: self.names().map(str::to_owned).collect(),
        })?;
        model
            .graph
            .get_or_try_init(|| async {
                let bytes = tokio::fs::read(&model.host_path).await.map_err(|e| {
                    BackendError::InvalidModel(format!("cannot read {}: {e}", model.host_path.display()))
                })?;
                cache.get_or_compile(bytes.into()).await
            })
            .await
            .cloned()
            .map_err(|source| LoadByNameError::Backend { name: name.to_owned(), source })
    }
}

/// Why `load-by-name` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadByNameError {
    #[error("no model named '{name}' is mounted for this component (available: {available:?})")]
    NotFound { name: String, available: Vec<String> },
    #[error("model '{name}': {source}")]
    Backend { name: String, source: BackendError },
}

/// `/models/cifar10/model.onnx` → `cifar10`; `/models/mnist.onnx` → `mnist`.
pub fn model_name(guest_path: &str) -> Option<String> {
    let path = std::path::Path::new(guest_path);
    if path.extension()? != "onnx" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem == "model" {
        path.parent()?.file_name()?.to_str().map(str::to_owned)
    } else {
        Some(stem.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_models_by_file_or_folder() {
        assert_eq!(model_name("/models/cifar10/model.onnx").as_deref(), Some("cifar10"));
        assert_eq!(model_name("/models/mnist.onnx").as_deref(), Some("mnist"));
        assert_eq!(model_name("/models/cifar10/labels.txt"), None);
    }

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
