//! An app, built once: engine, linker, one pre-instantiated component per manifest entry,
//! their mounts and named models, and the shared graph cache. Requests only add a `Store`.

use crate::cache::{self, ComponentCache};
use crate::files::Mounts;
use crate::instance::{InstanceState, OutboundPolicy};
use crate::manifest::{ComponentId, Manifest, SpindleSettings};
use crate::nn::policy::{DeviceChoice, EngineChoice, Engines, Placement};
use crate::nn::registry::{ComponentModels, GraphCache, InferencePool};
use crate::nn::{self, NnCtx};
use crate::routes::Router;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::handler::ProxyPre;

/// How often the engine's epoch advances, and so how often running guest code yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Host-wide choices that are not limits.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Answer `load-by-name` (the default). Off, the host behaves like one without named
    /// graphs, so functions fall back to `load`ing their mounted model files.
    pub named_models: bool,
    /// Link `wasi:nn` (the default). Off, the host is like Spin: no `wasi:nn` at all.
    pub wasi_nn: bool,
    /// Where compiled components are kept between starts.
    pub cache: ComponentCache,
    /// Default engine for components that do not choose.
    pub engine: EngineChoice,
    /// Default device for components that do not choose.
    pub device: DeviceChoice,
    /// `--engine-threads N`: threads per CPU engine job; the inference pool shrinks to match.
    pub engine_threads: usize,
    /// `--onnxruntime PATH`: the ONNX Runtime shared library.
    pub onnxruntime: Option<PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            named_models: true,
            wasi_nn: true,
            cache: ComponentCache::disabled(),
            engine: EngineChoice::Auto,
            device: DeviceChoice::Auto,
            onnxruntime: None,
            engine_threads: 1,
        }
    }
}

/// Host-wide limits; a component's `tool.spindle` settings override them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Wall-clock deadline per request.
    pub timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// How long a client may take to send its body (408 after).
    pub body_timeout: Duration,
    /// Requests a component runs at once.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond that, 503 with `Retry-After`.
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            body_timeout: Duration::from_secs(30),
            max_concurrent: 32,
            max_queued: 128,
        }
    }
}

impl Limits {
    fn with(&self, settings: &SpindleSettings) -> Self {
        Self {
            memory_bytes: settings.memory_limit_mib.map_or(self.memory_bytes, |m| (m as usize) << 20),
            timeout: settings.timeout_ms.map_or(self.timeout, Duration::from_millis),
            max_concurrent: settings.max_concurrent_requests.unwrap_or(self.max_concurrent).max(1),
            max_queued: settings.max_queued_requests.unwrap_or(self.max_queued),
            ..self.clone()
        }
    }
}

/// One component: what it is granted, built once; its compiled form, built on first use.
pub struct LoadedComponent {
    pub id: ComponentId,
    pub source: PathBuf,
    pub mounts: Mounts,
    pub models: Arc<ComponentModels>,
    pub environment: Vec<(String, String)>,
    pub outbound: OutboundPolicy,
    pub limits: Limits,
    pub admission: Admission,
    /// The engine and device its models run on.
    pub placement: Placement,
    pre: OnceCell<ProxyPre<InstanceState>>,
}

/// Bounded concurrency with a bounded queue.
pub struct Admission {
    running: Semaphore,
    waiting: AtomicUsize,
    max_queued: usize,
}

/// Why a request was not admitted.
#[derive(Debug)]
pub struct QueueFull;

impl Admission {
    fn new(limits: &Limits) -> Self {
        Self { running: Semaphore::new(limits.max_concurrent), waiting: AtomicUsize::new(0), max_queued: limits.max_queued }
    }

    /// Waits for a slot, or refuses at once when the queue is full.
    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, QueueFull> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueFull);
        }
        let permit = self.running.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| QueueFull)
    }
}

/// Compiled components shared between manifest entries with the same bytes.
type CompiledComponents = Mutex<HashMap<[u8; 32], Component>>;

/// The whole app.
pub struct App {
    pub engine: Engine,
    linker: Arc<Linker<InstanceState>>,
    pub router: Router,
    pub components: HashMap<ComponentId, Arc<LoadedComponent>>,
    pub graphs: Arc<GraphCache>,
    pub engines: Engines,
    cache: ComponentCache,
    compiled: Arc<CompiledComponents>,
}

impl App {
    /// Validates the app and prepares every component's grants; compiles nothing yet.
    pub fn build(manifest: &Manifest, limits: &Limits, options: &HostOptions) -> Result<Self> {
        let largest_memory = manifest
            .app
            .component
            .keys()
            .map(|id| limits.with(&manifest.spindle.get(id).cloned().unwrap_or_default()).memory_bytes)
            .max()
            .unwrap_or(limits.memory_bytes);
        let engine = Engine::new(&engine_config(largest_memory))?;
        let linker = Arc::new(linker(&engine, options.wasi_nn)?);
        let router = Router::build(&manifest.app)?;
        let graphs = Arc::new(GraphCache::new(Arc::new(InferencePool::sized_to_machine(options.engine_threads))));
        let want_gpu = manifest.app.component.keys().any(|id| {
            let device = manifest.spindle.get(id).and_then(|s| s.device).unwrap_or(options.device);
            device != DeviceChoice::Cpu
        });
        let engines = Engines::probe(options.onnxruntime.as_deref(), want_gpu, options.engine_threads);
        let mut components = HashMap::new();
        for (id, component) in &manifest.app.component {
            let source = manifest.resolve(&component.source);
            if !source.is_file() {
                bail!(
                    "component '{id}': source {} does not exist; build it first (`spindle build`, or `spindle up --build`)",
                    source.display()
                );
            }
            let mounts = Mounts::prepare(manifest, id, component)?;
            let models = if options.named_models {
                ComponentModels::from_mounted_files(mounts.files.iter().cloned())
                    .with_context(|| format!("component '{id}'"))?
            } else {
                ComponentModels::default()
            };
            let settings = manifest.spindle.get(id).cloned().unwrap_or_default();
            let limits = limits.with(&settings);
            let placement = engines
                .place(settings.engine.unwrap_or(options.engine), settings.device.unwrap_or(options.device))
                .map_err(|e| anyhow::anyhow!("component '{id}': {e}"))?;
            tracing::info!(component = %id, engine = placement.backend.name(), device = %placement.device, "models placed: {}", placement.reason);
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    id: id.clone(),
                    source,
                    mounts,
                    models: Arc::new(models),
                    environment: component.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    outbound: OutboundPolicy::new(&component.allowed_outbound_hosts),
                    admission: Admission::new(&limits),
                    placement,
                    limits,
                    pre: OnceCell::new(),
                }),
            );
        }
        Ok(Self { engine, linker, router, components, graphs, engines, cache: options.cache.clone(), compiled: Arc::default() })
    }

    /// Compiles every component and loads every named model now, instead of on first use.
    pub async fn preload(&self) -> Result<()> {
        for component in self.components.values() {
            self.instance_pre(component).await?;
            for name in component.models.names() {
                component
                    .models
                    .load(name, &self.graphs, &component.placement.backend)
                    .await
                    .with_context(|| format!("component '{}'", component.id))?;
            }
        }
        Ok(())
    }

    /// The component's pre-instance, compiling (or loading from the cache) on first use.
    pub async fn instance_pre<'a>(&self, component: &'a LoadedComponent) -> Result<&'a ProxyPre<InstanceState>> {
        component
            .pre
            .get_or_try_init(|| async {
                let (engine, linker, cache, compiled) =
                    (self.engine.clone(), self.linker.clone(), self.cache.clone(), self.compiled.clone());
                let (id, source) = (component.id.clone(), component.source.clone());
                tokio::task::spawn_blocking(move || prepare(&engine, &linker, &cache, &compiled, &id, &source)).await?
            })
            .await
    }

    /// A fresh store for one request to `component`: only its mounts, environment and models.
    pub fn new_store(&self, component: &LoadedComponent) -> Result<Store<InstanceState>> {
        let mut wasi = WasiCtxBuilder::new();
        // Mounted files are small local reads: do them on this thread, not via a blocking-pool hop.
        wasi.allow_blocking_current_thread(true);
        component.mounts.apply(&mut wasi)?;
        wasi.envs(&component.environment).inherit_stderr();
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: component.outbound.clone(),
            nn: NnCtx { models: component.models.clone(), cache: self.graphs.clone(), placement: component.placement.clone() },
            limits: StoreLimitsBuilder::new().memory_size(component.limits.memory_bytes).build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Guest code yields to the async runtime every epoch tick, so a busy guest shares its
        // worker thread; the request deadline itself is a timer around the whole call.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }
}

fn engine_config(max_memory_bytes: usize) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.max_memory_size(max_memory_bytes);
    let mut config = Config::new();
    config
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Compiles (or loads from the cache) one component and links it.
fn prepare(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    cache: &ComponentCache,
    compiled: &CompiledComponents,
    id: &ComponentId,
    source: &std::path::Path,
) -> Result<ProxyPre<InstanceState>> {
    let started = std::time::Instant::now();
    let wasm = std::fs::read(source).with_context(|| format!("component '{id}': reading {}", source.display()))?;
    let digest: [u8; 32] = Sha256::digest(&wasm).into();
    let shared = compiled.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).cloned();
    let (component, outcome) = match shared {
        Some(component) => (component, "shared"),
        None => {
            let (component, outcome) = cache
                .load(engine, &wasm)
                .with_context(|| format!("component '{id}': compiling {}", source.display()))?;
            compiled.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, component.clone());
            (component, match outcome {
                cache::Outcome::Hit => "cache hit",
                cache::Outcome::Compiled => "compiled",
                cache::Outcome::Rebuilt => "rebuilt (bad cache entry)",
            })
        }
    };
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component '{id}': linking imports"))?;
    let pre = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
        Ok(p3) => ProxyPre::P3(p3),
        Err(_) => ProxyPre::P2(wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
            format!("component '{id}' exports neither wasi:http/handler@0.3 nor wasi:http/incoming-handler@0.2")
        })?),
    };
    tracing::info!(component = %id, how = outcome, ms = started.elapsed().as_millis() as u64, "component ready");
    Ok(pre)
}

fn linker(engine: &Engine, wasi_nn: bool) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    if wasi_nn {
        nn::add_to_linker(&mut linker, InstanceState::nn)?;
    }
    Ok(linker)
}
