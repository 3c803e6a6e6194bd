//! Compiled graphs, cached at the right lifetime.
//!
//! [`GraphCache`] lives once per host: a graph is compiled once per (engine, model bytes) and
//! shared by every instance of every component. [`ComponentModels`] lives once per component:
//! the named models it may `load-by-name`, which are exactly the model files its manifest mounts.

use super::backend::{self, Backend, BackendError, Device, Graph, NamedTensor};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Arc<SharedGraph>>>;

/// A compiled graph as the cache shares it, with how long its runs typically take, which decides
/// whether the next run may stay on the async worker that asks for it.
pub struct SharedGraph {
    graph: Arc<dyn Graph>,
    /// Moving average of the engine time in µs; `u64::MAX` until the first run.
    typical_us: AtomicU64,
    /// The largest input (bytes) of a run that took less than [`INLINE_BELOW`]: a larger one may
    /// take longer, so it does not run inline on the strength of smaller ones.
    quick_input_bytes: AtomicU64,
}

impl SharedGraph {
    fn new(graph: Arc<dyn Graph>) -> Self {
        Self { graph, typical_us: AtomicU64::new(u64::MAX), quick_input_bytes: AtomicU64::new(0) }
    }

    pub fn graph(&self) -> &dyn Graph {
        self.graph.as_ref()
    }

    fn runs_inline(&self, input_bytes: u64) -> bool {
        self.typical_us.load(Ordering::Relaxed) < INLINE_BELOW.as_micros() as u64
            && input_bytes <= self.quick_input_bytes.load(Ordering::Relaxed)
    }

    fn observe(&self, took: Duration, input_bytes: u64) {
        if took < INLINE_BELOW {
            self.quick_input_bytes.fetch_max(input_bytes, Ordering::Relaxed);
        }
        let sample = took.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let _ = self.typical_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |typical| {
            Some(if typical == u64::MAX { sample } else { typical - typical / 8 + sample / 8 })
        });
    }
}

/// `SPINDLE_MEASURE_WARM_RERUN=1` (for `scripts/bench-engines` only) runs every compute twice,
/// back to back, and logs both times: the first pays for caches the request's other work left
/// cold, the second is the engine call warm.
static MEASURE_WARM_RERUN: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var_os("SPINDLE_MEASURE_WARM_RERUN").is_some());

/// Runs that typically take less stay on the async worker that asked: handing the worker's other
/// tasks to a new thread (`block_in_place`) costs ~13 µs, a quarter of a small CNN's run, and
/// tokio's guidance for the time between a task's yields is 10–100 µs.
const INLINE_BELOW: Duration = Duration::from_micros(100);

/// Compiled graphs keyed by the SHA-256 of their bytes and the engine and device that compiled them.
pub struct GraphCache {
    pool: Arc<InferencePool>,
    graphs: Mutex<HashMap<([u8; 32], &'static str, Device), Slot>>,
    compiles: AtomicUsize,
}

impl GraphCache {
    pub fn new(pool: Arc<InferencePool>) -> Self {
        Self { pool, graphs: Mutex::default(), compiles: AtomicUsize::new(0) }
    }

    /// The pool compiles and computes run on.
    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }

    /// How many graphs were compiled so far (cache misses).
    pub fn compiles(&self) -> usize {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Returns the compiled graph for these bytes, compiling them (off the async workers) on a miss.
    /// Concurrent callers with the same bytes wait for one compilation.
    pub async fn get_or_compile(&self, model: Arc<[u8]>, backend: &Arc<dyn Backend>) -> Result<Arc<SharedGraph>, BackendError> {
        let digest = {
            let model = model.clone();
            self.pool.run(move || Ok(<[u8; 32]>::from(Sha256::digest(&model)))).await?
        };
        let slot = self.graphs.lock().unwrap_or_else(|e| e.into_inner()).entry((digest, backend.name(), backend.device())).or_default().clone();
        slot.get_or_try_init(|| async {
            let engine = backend.clone();
            let started = std::time::Instant::now();
            let graph = self.pool.run(move || backend::load(engine.as_ref(), &model)).await?;
            self.compiles.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                engine = backend.name(),
                device = %backend.device(),
                sha256 = %hex(&digest[..6]),
                ms = started.elapsed().as_millis() as u64,
                "compiled model graph"
            );
            Ok(Arc::new(SharedGraph::new(graph)))
        })
        .await
        .cloned()
    }
}

/// Where engine work runs: never on a thread that is serving HTTP, and at most one job per core
/// at a time, so a burst of requests queues here instead of oversubscribing the machine.
pub struct InferencePool {
    permits: tokio::sync::Semaphore,
}

impl InferencePool {
    /// One slot per available core.
    /// One job per `threads_per_job` cores, at least one.
    pub fn sized_to_machine(threads_per_job: usize) -> Self {
        Self::with_size(std::thread::available_parallelism().map_or(1, |n| n.get()) / threads_per_job.max(1))
    }

    pub fn with_size(size: usize) -> Self {
        Self { permits: tokio::sync::Semaphore::new(size.max(1)) }
    }

    /// Runs `graph` once a slot is free: on the calling worker when its runs are typically
    /// short, else off the async workers. Returns the outputs and the engine time.
    pub async fn compute(&self, graph: Arc<SharedGraph>, inputs: Vec<NamedTensor>) -> Result<(Vec<NamedTensor>, Duration), BackendError> {
        let input_bytes = inputs.iter().map(|(_, t)| t.data.len() as u64).sum();
        let inline = graph.runs_inline(input_bytes);
        let work = move || {
            if *MEASURE_WARM_RERUN {
                let started = Instant::now();
                let _ = backend::compute(graph.graph(), inputs.clone());
                tracing::debug!(first_us = started.elapsed().as_micros() as u64, "computed once more first, to time a warm rerun");
            }
            let started = Instant::now();
            let outputs = backend::compute(graph.graph(), inputs);
            let took = started.elapsed();
            graph.observe(took, input_bytes);
            outputs.map(|o| (o, took))
        };
        if inline {
            let _slot = self.permits.acquire().await.map_err(|e| BackendError::Runtime(e.to_string()))?;
            return work();
        }
        self.run(work).await
    }

    /// Runs CPU-bound engine work on a blocking thread once a slot is free.
    pub async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, BackendError> + Send + 'static,
    ) -> Result<R, BackendError> {
        let _slot = self.permits.acquire().await.map_err(|e| BackendError::Runtime(e.to_string()))?;
        // On the multi-threaded runtime the calling worker becomes the inference thread and
        // hands its queued tasks to another worker: no thread hop, and I/O keeps flowing.
        if tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread) {
            return tokio::task::block_in_place(work);
        }
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| BackendError::Runtime(format!("inference task failed: {e}")))?
    }
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
    graph: OnceCell<Arc<SharedGraph>>,
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
    pub async fn load(&self, name: &str, cache: &GraphCache, backend: &Arc<dyn Backend>) -> Result<Arc<SharedGraph>, LoadByNameError> {
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
                cache.get_or_compile(bytes.into(), backend).await
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

    fn cifar10_bytes() -> Arc<[u8]> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/cifar10/model.onnx")).unwrap().into()
    }

    #[tokio::test]
    async fn same_bytes_compile_once_and_share_one_graph() {
        let cache = GraphCache::new(Arc::new(InferencePool::with_size(2)));
        let tract: Arc<dyn Backend> = Arc::new(crate::nn::backend::tract::TractBackend::cpu(1));
        let (a, b) = tokio::join!(cache.get_or_compile(cifar10_bytes(), &tract), cache.get_or_compile(cifar10_bytes(), &tract));
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
        assert_eq!(cache.compiles(), 1);
        let garbage = cache.get_or_compile(Arc::from(&b"not a model"[..]), &tract).await;
        assert!(matches!(garbage, Err(BackendError::InvalidModel(_))));
    }

    #[test]
    fn only_quick_runs_on_inputs_no_larger_than_seen_stay_on_the_worker() {
        let graph = crate::nn::backend::tract::TractBackend::cpu(1).load(&cifar10_bytes()).unwrap();
        let shared = SharedGraph::new(graph);
        assert!(!shared.runs_inline(100), "nothing known yet");
        shared.observe(Duration::from_micros(50), 100);
        assert!(shared.runs_inline(100));
        assert!(!shared.runs_inline(101), "a larger input than any quick run");
        for _ in 0..40 {
            shared.observe(Duration::from_millis(5), 100);
        }
        assert!(!shared.runs_inline(100), "runs got slow");
    }

    #[tokio::test]
    async fn compute_checks_inputs_against_the_model() {
        use crate::nn::backend::{ElementType, Tensor, compute};
        let cache = GraphCache::new(Arc::new(InferencePool::with_size(1)));
        let tract: Arc<dyn Backend> = Arc::new(crate::nn::backend::tract::TractBackend::cpu(1));
        let graph = cache.get_or_compile(cifar10_bytes(), &tract).await.unwrap();
        let input = |dims: Vec<u32>, len: usize| Tensor { dims, ty: ElementType::F32, data: vec![0; len] };
        let out = compute(graph.graph(), vec![("input".into(), input(vec![2, 32, 32, 3], 2 * 3072 * 4))]).unwrap();
        assert_eq!(out[0].0, "probabilities");
        assert_eq!(out[0].1.dims, vec![2, 10]);
        let probs: Vec<f32> = out[0].1.data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert!((probs[..10].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for (inputs, message) in [
            (vec![("input".to_string(), input(vec![1, 3, 32, 32], 3072 * 4))], "expected [batch, 32, 32, 3] fp32, got [1, 3, 32, 32] fp32"),
            (vec![("pixels".to_string(), input(vec![1, 32, 32, 3], 3072 * 4))], "unknown input 'pixels'; the model takes 'input' [batch, 32, 32, 3] fp32"),
            (vec![("input".to_string(), input(vec![1, 32, 32, 3], 7))], "need 12288 bytes, got 7"),
            (vec![], "missing input 'input'"),
        ] {
            let err = compute(graph.graph(), inputs).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
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
