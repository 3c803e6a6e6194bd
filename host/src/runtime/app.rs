//! The app, built once: the wasm engine and its epoch clock, the linker, one
//! [`LoadedComponent`] per manifest entry with its grants and placement, the inference engines
//! and the shared graph cache. Requests only add a `Store` ([`App::new_store`]).

use super::access::Tokens;
use super::component::{self, CompiledComponents, Compiler, LoadedComponent};
use super::epoch;
use super::guest_output::{GuestOutput, OutputBudget};
use super::instance::InstanceState;
use super::limits::{InstanceLimiter, Limits};
use super::mounts::Mounts;
use super::options::HostOptions;
use super::outbound::OutboundPolicy;
use crate::manifest::{ComponentId, Manifest, Router};
use crate::nn::graphs::GraphCache;
use crate::nn::models::ComponentModels;
use crate::nn::policy::{DeviceChoice, InferenceEngines};
use crate::nn::pool::InferencePool;
use crate::nn::{ComponentNn, NnCtx};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::handler::ProxyPre;

/// The whole app.
pub struct App {
    router: Router,
    components: HashMap<ComponentId, Arc<LoadedComponent>>,
    graphs: Arc<GraphCache>,
    inference_engines: Arc<InferenceEngines>,
    compiler: Compiler,
    /// The host-wide limits and options it was built with, for [`App::rebuild`].
    limits: Limits,
    options: HostOptions,
    /// The manifest it was built from.
    manifest_path: std::path::PathBuf,
    /// Set once shutdown begins: readiness answers false.
    draining: AtomicBool,
    /// Set once it can serve every route: at once, or with `--preload` once everything is loaded.
    ready: AtomicBool,
    /// The bearer tokens the host's own protocol endpoints need, if the manifest names any.
    host_access: Option<Tokens>,
}

impl App {
    /// Validates the app and prepares every component's grants; compiles nothing yet. Starts the
    /// epoch clock that makes running guests yield.
    pub fn build(manifest: &Manifest, limits: &Limits, options: &HostOptions) -> Result<Self> {
        let all_limits: Vec<Limits> = manifest.app.component.keys().map(|id| limits.with(&manifest.settings(id))).collect();
        let largest_memory = all_limits.iter().map(|l| l.memory_bytes).max().unwrap_or(limits.memory_bytes);
        // Every component can run its max_concurrent instances at once, each within the pool's
        // per-instance quotas, and the pool holds exactly that: no component can drain the slots
        // another one is due.
        let wanted = all_limits.iter().map(|l| l.max_concurrent).sum::<usize>().max(1);
        let instances = wanted.min(MAX_POOLED_INSTANCES);
        if instances < wanted {
            tracing::warn!(
                wanted,
                pooled = instances,
                "the components' max_concurrent_requests add up to more instance slots than the pool reserves; they share {instances}"
            );
        }
        let wasm_engine = Engine::new(&wasm_engine_config(largest_memory, instances, options.keep_resident_bytes))?;
        epoch::start_ticking(&wasm_engine).context("starting the epoch clock")?;
        let linker = Arc::new(component::linker(&wasm_engine, options.wasi_nn)?);
        let graphs = Arc::new(GraphCache::new(Arc::new(InferencePool::sized_to_machine(options.engine_threads))));
        let want_gpu = manifest.app.component.keys().any(|id| manifest.settings(id).device.unwrap_or(options.device) != DeviceChoice::Cpu);
        let inference_engines = Arc::new(InferenceEngines::probe(options.onnxruntime.as_deref(), want_gpu, options.engine_threads));
        let compiler = Compiler {
            wasm_engine,
            linker,
            cache: options.cache.clone(),
            compiled: Arc::new(CompiledComponents::default()),
            pool_memory_bytes: largest_memory,
            pool_instances: instances,
        };
        Self::assemble(manifest, limits, options, compiler, graphs, inference_engines, &HashMap::new())
    }

    /// The same host with a new manifest, for a reload: the wasm engine, its instance pool and
    /// epoch clock, the inference engines and the graph cache are this app's, so graphs of
    /// unchanged models stay compiled and shared; components are prepared afresh (and compiled
    /// from the on-disk cache when their bytes did not change). This app keeps serving the
    /// requests it has.
    pub fn rebuild(&self, manifest: &Manifest) -> Result<Self> {
        let pooled = self.compiler.pool_memory_bytes;
        for id in manifest.app.component.keys() {
            let wanted = self.limits.with(&manifest.settings(id)).memory_bytes;
            if wanted > pooled {
                bail!(
                    "component '{id}': memory_limit_mib {} is above the {} MiB the instance pool was sized for at start; restart to raise it",
                    wanted >> 20,
                    pooled >> 20
                );
            }
        }
        let wanted: usize = manifest.app.component.keys().map(|id| self.limits.with(&manifest.settings(id)).max_concurrent).sum();
        let serving: usize = self.components.values().map(|c| c.limits.max_concurrent).sum();
        if wanted > self.compiler.pool_instances && wanted > serving {
            bail!(
                "the components' max_concurrent_requests add up to {wanted}, more than the {} instance slots the pool was sized for at start; restart to raise it",
                self.compiler.pool_instances
            );
        }
        let compiler = Compiler { compiled: Arc::new(CompiledComponents::default()), ..self.compiler.clone() };
        Self::assemble(
            manifest,
            &self.limits,
            &self.options,
            compiler,
            self.graphs.clone(),
            self.inference_engines.clone(),
            &self.components,
        )
    }

    fn assemble(
        manifest: &Manifest,
        limits: &Limits,
        options: &HostOptions,
        compiler: Compiler,
        graphs: Arc<GraphCache>,
        inference_engines: Arc<InferenceEngines>,
        replacing: &HashMap<ComponentId, Arc<LoadedComponent>>,
    ) -> Result<Self> {
        let mut components = HashMap::new();
        for (id, component) in &manifest.app.component {
            let source = manifest.resolve(component.source.path());
            if !source.is_file() {
                bail!(
                    "component '{id}': source {} does not exist; build it first (`spindle build`, or `spindle up --build`)",
                    source.display()
                );
            }
            let mounts = Mounts::prepare(manifest, id, component)?;
            let models = if options.named_models {
                let mut models =
                    ComponentModels::from_mounted_files(mounts.files.iter().cloned()).with_context(|| format!("component '{id}'"))?;
                models.batch(&graphs, options.batching).with_context(|| format!("component '{id}'"))?;
                models
            } else {
                ComponentModels::default()
            };
            let settings = manifest.settings(id);
            let placement = inference_engines
                .place(settings.engine.unwrap_or(options.engine), settings.device.unwrap_or(options.device))
                .map_err(|e| anyhow::anyhow!("component '{id}': {e}"))?;
            tracing::info!(component = %id, engine = placement.backend.name(), device = %placement.device, "models placed: {}", placement.reason);
            models.label_metrics(id.as_str(), placement.backend.name(), placement.device.as_str());
            let limits = limits.with(&settings);
            let nn = ComponentNn::new(models, placement, limits.nn, graphs.clone());
            let mut loaded = LoadedComponent::new(
                id.clone(),
                source,
                mounts,
                nn,
                component.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                OutboundPolicy::new(&component.allowed_outbound_hosts),
                limits,
            );
            loaded.variables = std::sync::Arc::new(manifest.variables.of(id).cloned().unwrap_or_default());
            if let Some(source) = &settings.access {
                loaded.access = Some(Tokens::load(manifest, source).with_context(|| format!("component '{id}': access"))?);
            }
            if let Some(old) = replacing.get(id)
                && (old.limits.max_concurrent, old.limits.max_queued) == (loaded.limits.max_concurrent, loaded.limits.max_queued)
            {
                loaded.admission = old.admission.clone();
            }
            components.insert(id.clone(), Arc::new(loaded));
        }
        Ok(Self {
            router: manifest.router.clone(),
            components,
            graphs,
            inference_engines,
            compiler,
            limits: limits.clone(),
            options: options.clone(),
            manifest_path: manifest.path.clone(),
            draining: Default::default(),
            ready: AtomicBool::new(!options.preload),
            host_access: manifest.settings.host_access.as_ref().map(|s| Tokens::load(manifest, s).context("host_access")).transpose()?,
        })
        .inspect(|app| {
            if app.host_access.is_none() && app.components.values().any(|c| c.access.is_some()) {
                tracing::warn!(
                    "some components need tokens but the host's endpoints (/v2/models, statistics) are open and name every model; set host_access under [application.tool.spindle] to guard them"
                );
            }
        })
    }

    /// Marks the app as shutting down: readiness answers false from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The manifest it was built from.
    pub fn manifest_path(&self) -> &std::path::Path {
        &self.manifest_path
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether it serves every route now: built (and with `--preload`, everything loaded), and
    /// not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.is_draining()
    }

    /// Whether it loads everything before counting as ready (`--preload`).
    pub fn preloads(&self) -> bool {
        self.options.preload
    }

    /// The bearer tokens the host's own protocol endpoints need, if any.
    pub fn host_access(&self) -> Option<&Tokens> {
        self.host_access.as_ref()
    }

    /// Whether any route needs a token: then `Authorization` is the host's and no function sees it.
    pub fn uses_access(&self) -> bool {
        self.host_access.is_some() || self.components.values().any(|c| c.access.is_some())
    }

    /// The routes, as validated with the manifest.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// A component by id.
    pub fn component(&self, id: &ComponentId) -> Option<&Arc<LoadedComponent>> {
        self.components.get(id)
    }

    /// Every component, ordered by id.
    pub fn components(&self) -> Vec<&Arc<LoadedComponent>> {
        let mut components: Vec<_> = self.components.values().collect();
        components.sort_by(|a, b| a.id.cmp(&b.id));
        components
    }

    /// The inference engines this host probed at start.
    pub fn inference_engines(&self) -> &InferenceEngines {
        &self.inference_engines
    }

    /// The graph cache every component's models are compiled into.
    pub fn graphs(&self) -> &GraphCache {
        &self.graphs
    }

    /// Compiles every component and loads every named model now, instead of on first use.
    pub async fn preload(&self) -> Result<()> {
        for component in self.components.values() {
            self.instance_pre(component).await?;
            let nn = &component.nn;
            for name in nn.models.names() {
                nn.models.load(name, &nn.cache, &nn.placement.backend).await.with_context(|| format!("component '{}'", component.id))?;
            }
        }
        self.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The component's pre-instance, compiling (or loading from the cache) on first use.
    pub async fn instance_pre<'a>(&self, component: &'a LoadedComponent) -> Result<&'a ProxyPre<InstanceState>> {
        self.compiler.instance_pre(component).await
    }

    /// A fresh store for one request to `component`, which must answer by `deadline`: only its
    /// mounts, environment and models.
    pub fn new_store(&self, component: &LoadedComponent, deadline: Instant) -> Result<Store<InstanceState>> {
        let mut wasi = WasiCtxBuilder::new();
        // Mounted files are small local reads: do them on this thread, not via a blocking-pool hop.
        wasi.allow_blocking_current_thread(true);
        component.mounts.apply(&mut wasi)?;
        let budget = Arc::new(OutputBudget::default());
        wasi.envs(&component.environment)
            .stdout(GuestOutput::new(component.name.clone(), "stdout", budget.clone()))
            .stderr(GuestOutput::new(component.name.clone(), "stderr", budget));
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: component.outbound.clone(),
            nn: NnCtx::new(component.nn.clone(), deadline),
            limits: InstanceLimiter::new(&component.limits),
            variables: component.variables.clone(),
        };
        let mut store = Store::new(&self.compiler.wasm_engine, state);
        store.limiter(|s| &mut s.limits);
        // Guest code yields to the async runtime every epoch tick, so a busy guest shares its
        // worker thread; the request deadline itself is a timer around the whole call.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }
}

/// Component instances the pool reserves at most: each memory slot reserves gigabytes of address
/// space, and 2,048 × 4 of them stay well inside what a 64-bit process may map.
const MAX_POOLED_INSTANCES: usize = 2048;

/// Per component instance: core instances, memories and tables it may take from the pool.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 32;

fn wasm_engine_config(max_memory_bytes: usize, component_instances: usize, keep_resident_bytes: usize) -> Config {
    let instances = u32::try_from(component_instances).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.max_memory_size(max_memory_bytes)
        .total_component_instances(instances)
        .total_stacks(instances)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        // A fresh instance per request: reset what the last one touched with memset (only the
        // resident pages, where the kernel can tell) instead of madvise, which unmaps the pages,
        // shoots down TLBs on every core, and makes the next request fault them back in.
        .linear_memory_keep_resident(keep_resident_bytes)
        .table_keep_resident(keep_resident_bytes)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config.wasm_component_model_async(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
