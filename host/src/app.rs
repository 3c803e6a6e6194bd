//! An app, built once: engine, linker, one pre-instantiated component per manifest entry,
//! their mounts and named models, and the shared graph cache. Requests only add a `Store`.

use crate::files::Mounts;
use crate::instance::{InstanceState, OutboundPolicy};
use crate::manifest::{ComponentId, Manifest, SpindleSettings};
use crate::nn::backend::tract::TractBackend;
use crate::nn::registry::{ComponentModels, GraphCache};
use crate::nn::{self, NnCtx};
use crate::routes::Router;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
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
}

impl Default for HostOptions {
    fn default() -> Self {
        Self { named_models: true }
    }
}

/// Host-wide limits; a component's `tool.spindle` settings override them.
#[derive(Clone, Debug)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 256 << 20, timeout: Duration::from_secs(30), max_body_bytes: 32 << 20 }
    }
}

impl Limits {
    fn with(&self, settings: &SpindleSettings) -> Self {
        Self {
            memory_bytes: settings.memory_limit_mib.map_or(self.memory_bytes, |m| (m as usize) << 20),
            timeout: settings.timeout_ms.map_or(self.timeout, Duration::from_millis),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// One component, ready to instantiate.
pub struct LoadedComponent {
    pub id: ComponentId,
    pub pre: ProxyPre<InstanceState>,
    pub mounts: Mounts,
    pub models: Arc<ComponentModels>,
    pub environment: Vec<(String, String)>,
    pub outbound: OutboundPolicy,
    pub limits: Limits,
}

/// The whole app.
pub struct App {
    pub engine: Engine,
    pub router: Router,
    pub components: HashMap<ComponentId, Arc<LoadedComponent>>,
    pub graphs: Arc<GraphCache>,
}

impl App {
    /// Compiles and links every component of the manifest.
    pub fn build(manifest: &Manifest, limits: &Limits, options: &HostOptions) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model_async(true).epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let linker = linker(&engine)?;
        let router = Router::build(&manifest.app)?;
        let graphs = Arc::new(GraphCache::new(Arc::new(TractBackend)));
        let mut components = HashMap::new();
        for (id, component) in &manifest.app.component {
            let source = manifest.resolve(&component.source);
            if !source.is_file() {
                bail!(
                    "component '{id}': source {} does not exist; build it first (`spindle build`, or `spindle up --build`)",
                    source.display()
                );
            }
            let started = std::time::Instant::now();
            let compiled = Component::from_file(&engine, &source)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component '{id}': compiling {}", source.display()))?;
            let pre = linker
                .instantiate_pre(&compiled)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component '{id}': linking imports"))?;
            let pre = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
                Ok(p3) => ProxyPre::P3(p3),
                Err(_) => ProxyPre::P2(wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
                    format!("component '{id}' exports neither wasi:http/handler@0.3 nor wasi:http/incoming-handler@0.2")
                })?),
            };
            let mounts = Mounts::prepare(manifest, id, component)?;
            let models = if options.named_models {
                ComponentModels::from_mounted_files(mounts.files.iter().cloned())
                    .with_context(|| format!("component '{id}'"))?
            } else {
                ComponentModels::default()
            };
            tracing::info!(
                component = %id,
                ms = started.elapsed().as_millis() as u64,
                models = ?models.names().collect::<Vec<_>>(),
                "component ready"
            );
            let settings = manifest.spindle.get(id).cloned().unwrap_or_default();
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    id: id.clone(),
                    pre,
                    mounts,
                    models: Arc::new(models),
                    environment: component.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    outbound: OutboundPolicy::new(&component.allowed_outbound_hosts),
                    limits: limits.with(&settings),
                }),
            );
        }
        Ok(Self { engine, router, components, graphs })
    }

    /// A fresh store for one request to `component`: only its mounts, environment and models.
    pub fn new_store(&self, component: &LoadedComponent) -> Result<Store<InstanceState>> {
        let mut wasi = WasiCtxBuilder::new();
        component.mounts.apply(&mut wasi)?;
        wasi.envs(&component.environment).inherit_stderr();
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: component.outbound.clone(),
            nn: NnCtx { models: component.models.clone(), cache: self.graphs.clone() },
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

fn linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    nn::add_to_linker(&mut linker, InstanceState::nn)?;
    Ok(linker)
}
