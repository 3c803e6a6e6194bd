//! Compiled graphs, cached once per host: a graph is compiled once per (model bytes, engine,
//! device) and shared by every instance of every component, whether it came from
//! `load-by-name` or `load(bytes)`.

use super::backend::{self, Backend, BackendError, Device, Graph};
use super::footprint::Footprint;
use super::onnx::{ModelBytesError, check_model_bytes};
use super::pool::{InferencePool, RunHistory};
use crate::telemetry::metrics::{GRAPH_COMPILES, GRAPH_SHARED};
use metrics::counter;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Arc<SharedGraph>>>;

/// What a compiled graph is cached under: the SHA-256 of the model bytes, the engine and the device.
type GraphKey = ([u8; 32], &'static str, Device);

/// A compiled graph as the cache shares it, with how long its runs took so far.
pub struct SharedGraph {
    graph: Arc<dyn Graph>,
    history: RunHistory,
    footprint: Option<Footprint>,
}

impl SharedGraph {
    pub(super) fn new(graph: Arc<dyn Graph>, footprint: Option<Footprint>) -> Self {
        Self { graph, history: RunHistory::default(), footprint }
    }

    /// For a graph from guest bytes, the memory its tensors take, to check before each compute.
    pub fn footprint(&self) -> Option<&Footprint> {
        self.footprint.as_ref()
    }

    /// The compiled graph.
    pub fn graph(&self) -> &dyn Graph {
        self.graph.as_ref()
    }

    /// How long its runs took so far, which decides where the next one runs.
    pub(super) fn history(&self) -> &RunHistory {
        &self.history
    }
}

/// Compiled graphs keyed by the SHA-256 of their bytes and the engine and device that compiled them.
pub struct GraphCache {
    pool: Arc<InferencePool>,
    graphs: Mutex<HashMap<GraphKey, Slot>>,
    compiles: AtomicUsize,
}

impl GraphCache {
    /// An empty cache whose compiles and computes run on `pool`.
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

    /// Returns the compiled graph for these bytes, compiling them (off the async workers) on a miss,
    /// and keeps it for the life of the host: for named (mounted) models. Concurrent callers with
    /// the same bytes wait for one compilation. Bytes that refer to external data are refused
    /// before any engine sees them ([`check_model_bytes`]).
    pub async fn get_or_compile(&self, model: Arc<[u8]>, backend: &Arc<dyn Backend>) -> Result<Arc<SharedGraph>, BackendError> {
        let key = self.key(&model, backend).await?;
        let slot = self.graphs.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        self.compile_into(&slot, key, model, backend, false).await
    }

    /// What `model` compiled by `backend` is cached under.
    async fn key(&self, model: &Arc<[u8]>, backend: &Arc<dyn Backend>) -> Result<GraphKey, BackendError> {
        let bytes = model.clone();
        let digest = self.pool.run(move || Ok(<[u8; 32]>::from(Sha256::digest(&bytes)))).await?;
        Ok((digest, backend.name(), backend.device()))
    }

    /// The graph kept for the life of the host under `key`, if one is compiled.
    fn kept(&self, key: &GraphKey) -> Option<Arc<SharedGraph>> {
        self.graphs.lock().unwrap_or_else(|e| e.into_inner()).get(key)?.get().cloned()
    }

    async fn compile_into(
        &self,
        slot: &Slot,
        key: GraphKey,
        model: Arc<[u8]>,
        backend: &Arc<dyn Backend>,
        bounded: bool,
    ) -> Result<Arc<SharedGraph>, BackendError> {
        if let Some(graph) = slot.get() {
            counter!(GRAPH_SHARED, "engine" => key.1, "device" => key.2.as_str()).increment(1);
            return Ok(graph.clone());
        }
        slot.get_or_try_init(|| async {
            let engine = backend.clone();
            let started = std::time::Instant::now();
            let graph = self
                .pool
                .run(move || {
                    check_model_bytes(&model).map_err(|e| match e {
                        ModelBytesError::ExternalData { .. } => BackendError::Refused(e.to_string()),
                        ModelBytesError::Malformed(_) => BackendError::InvalidModel(e.to_string()),
                    })?;
                    let footprint =
                        bounded.then(|| Footprint::of_onnx(&model)).transpose().map_err(|e| BackendError::Refused(e.to_string()))?;
                    Ok((backend::load(engine.as_ref(), &model)?, footprint))
                })
                .await?;
            self.compiles.fetch_add(1, Ordering::Relaxed);
            counter!(GRAPH_COMPILES, "engine" => key.1, "device" => key.2.as_str()).increment(1);
            tracing::info!(
                engine = backend.name(),
                device = %backend.device(),
                sha256 = %hex(&key.0[..6]),
                ms = started.elapsed().as_millis() as u64,
                "compiled model graph"
            );
            Ok(Arc::new(SharedGraph::new(graph.0, graph.1)))
        })
        .await
        .cloned()
    }
}

/// The graphs one component compiled from bytes it handed over (`load`), within a byte budget:
/// past it, its least recently used ones are dropped (and compiled again if loaded again). Another
/// component's graphs, and named models, are never touched, so no tenant can evict another's.
/// A graph counts as its model's byte length; an engine's compiled form takes about 1–2× that.
pub struct GuestGraphs {
    budget: usize,
    /// Whether its graphs run without a memory bound worked out from their shapes.
    unbounded: bool,
    /// Least recently used first.
    kept: Mutex<VecDeque<GuestGraph>>,
}

struct GuestGraph {
    key: GraphKey,
    slot: Slot,
    bytes: usize,
}

impl GuestGraphs {
    /// Room for `budget` bytes of models; `unbounded` lets in graphs whose tensors' sizes cannot
    /// be worked out from their inputs' shapes ([`Footprint`]).
    pub fn new(budget: usize, unbounded: bool) -> Self {
        Self { budget, unbounded, kept: Mutex::default() }
    }

    /// The graph for these bytes: a named model's if the host has one compiled, else this
    /// component's own, compiled on a miss and kept within the budget.
    pub async fn get_or_compile(
        &self,
        cache: &GraphCache,
        model: Arc<[u8]>,
        backend: &Arc<dyn Backend>,
    ) -> Result<Arc<SharedGraph>, BackendError> {
        if model.len() > self.budget {
            return Err(BackendError::TooLarge(format!(
                "a model of {} bytes exceeds this component's budget of {} bytes for graphs it loads",
                model.len(),
                self.budget
            )));
        }
        let key = cache.key(&model, backend).await?;
        if let Some(graph) = cache.kept(&key) {
            counter!(GRAPH_SHARED, "engine" => key.1, "device" => key.2.as_str()).increment(1);
            return Ok(graph);
        }
        let slot = self.keep(key, model.len());
        cache.compile_into(&slot, key, model, backend, !self.unbounded).await
    }

    /// Marks `key` most recently used, adding it if new and dropping the least recently used
    /// others past the budget.
    fn keep(&self, key: GraphKey, bytes: usize) -> Slot {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = kept.iter().position(|g| g.key == key) {
            let graph = kept.remove(found).expect("found above");
            let slot = graph.slot.clone();
            kept.push_back(graph);
            return slot;
        }
        let slot = Slot::default();
        kept.push_back(GuestGraph { key, slot: slot.clone(), bytes });
        let mut total: usize = kept.iter().map(|g| g.bytes).sum();
        while total > self.budget {
            let dropped = kept.pop_front().expect("the budget is exceeded, so something is kept");
            total -= dropped.bytes;
        }
        slot
    }

    /// Bytes of models kept now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|g| g.bytes).sum()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn compute_checks_inputs_against_the_model() {
        use crate::nn::backend::{ElementType, RunControl, Tensor, compute};
        let cache = GraphCache::new(Arc::new(InferencePool::with_size(1)));
        let tract: Arc<dyn Backend> = Arc::new(crate::nn::backend::tract::TractBackend::cpu(1));
        let graph = cache.get_or_compile(cifar10_bytes(), &tract).await.unwrap();
        let input = |dims: Vec<u32>, len: usize| Tensor { dims, ty: ElementType::F32, data: vec![0; len] };
        let out = compute(graph.graph(), vec![("input".into(), input(vec![2, 32, 32, 3], 2 * 3072 * 4))], &RunControl::default()).unwrap();
        assert_eq!(out[0].0, "probabilities");
        assert_eq!(out[0].1.dims, vec![2, 10]);
        let probs: Vec<f32> = out[0].1.data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert!((probs[..10].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for (inputs, message) in [
            (vec![("input".to_string(), input(vec![1, 3, 32, 32], 3072 * 4))], "expected [batch, 32, 32, 3] fp32, got [1, 3, 32, 32] fp32"),
            (
                vec![("pixels".to_string(), input(vec![1, 32, 32, 3], 3072 * 4))],
                "unknown input 'pixels'; the model takes 'input' [batch, 32, 32, 3] fp32",
            ),
            (vec![("input".to_string(), input(vec![1, 32, 32, 3], 7))], "need 12288 bytes, got 7"),
            (vec![], "missing input 'input'"),
        ] {
            let err = compute(graph.graph(), inputs, &RunControl::default()).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
    }

    #[tokio::test]
    async fn guest_graphs_stay_within_their_budget_and_named_ones_are_shared() {
        let cache = GraphCache::new(Arc::new(InferencePool::with_size(1)));
        let tract: Arc<dyn Backend> = Arc::new(crate::nn::backend::tract::TractBackend::cpu(1));
        let model = cifar10_bytes();
        // Room for two copies of the CNN: a third distinct model drops the least recently used.
        let guest = GuestGraphs::new(model.len() * 2 + 10, false);
        let variant = |n: u8| -> Arc<[u8]> {
            // A different doc_string (ModelProto field 6) makes different bytes of the same graph.
            let mut bytes = model.to_vec();
            bytes.extend([6 << 3 | 2, 1, n]);
            bytes.into()
        };
        for n in 0..3 {
            let graph = guest.get_or_compile(&cache, variant(n), &tract).await.unwrap();
            assert!(graph.footprint().is_some(), "graphs from guest bytes are bounded");
        }
        assert_eq!(cache.compiles(), 3);
        assert_eq!(guest.kept_bytes(), 2 * (model.len() + 3));
        guest.get_or_compile(&cache, variant(0), &tract).await.unwrap();
        assert_eq!(cache.compiles(), 4, "variant 0 was dropped, so compiled again");
        guest.get_or_compile(&cache, variant(0), &tract).await.unwrap();
        assert_eq!(cache.compiles(), 4, "and kept since");
        // Bytes a named model already has compiled are that graph, at no cost to the budget.
        let named = cache.get_or_compile(model.clone(), &tract).await.unwrap();
        let loaded = guest.get_or_compile(&cache, model.clone(), &tract).await.unwrap();
        assert!(Arc::ptr_eq(&named, &loaded));
        assert_eq!(guest.kept_bytes(), 2 * (model.len() + 3));
        let too_big = GuestGraphs::new(10, false).get_or_compile(&cache, model, &tract).await;
        assert!(matches!(too_big, Err(BackendError::TooLarge(_))));
    }
}
