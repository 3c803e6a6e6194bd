//! One component of the app: what the manifest grants it, prepared once per app, and its
//! compiled, linked form ([`ProxyPre`]), prepared on first use (or at start with `--preload`).

use super::access::Tokens;
use super::cache::{ComponentCache, Outcome};
use super::instance::InstanceState;
use super::limits::{Admission, Limits};
use super::mounts::Mounts;
use super::outbound::OutboundPolicy;
use crate::manifest::ComponentId;
use crate::nn::ComponentNn;
use crate::nn::policy::Placement;
use crate::telemetry::metrics::ComponentMetrics;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::handler::ProxyPre;

/// One component: what it is granted, built once; its compiled form, built on first use.
pub struct LoadedComponent {
    /// Its id in the manifest.
    pub id: ComponentId,
    /// The same, shared by the log lines of its instances.
    pub(super) name: Arc<str>,
    /// Its `.wasm` on the host.
    pub source: PathBuf,
    /// Its files.
    pub(super) mounts: Mounts,
    /// Its `wasi:nn`: named models, placement, limits.
    pub nn: Arc<ComponentNn>,
    pub(super) environment: Vec<(String, String)>,
    /// Its `variables`, resolved.
    pub(super) variables: super::variables::Values,
    pub(super) outbound: OutboundPolicy,
    /// Its limits, the host's with its own settings applied.
    pub limits: Limits,
    /// Shared with the same component of the app it replaced, if its limits are the same, so a
    /// reload never lets it run more requests at once than its pool slots.
    pub(super) admission: Arc<Admission>,
    /// Its Prometheus metrics.
    pub metrics: ComponentMetrics,
    /// The bearer tokens a request to it must carry, if its manifest names any.
    pub access: Option<Tokens>,
    pre: OnceCell<ProxyPre<InstanceState>>,
}

impl LoadedComponent {
    pub(super) fn new(
        id: ComponentId,
        source: PathBuf,
        mounts: Mounts,
        nn: ComponentNn,
        environment: Vec<(String, String)>,
        outbound: OutboundPolicy,
        limits: Limits,
    ) -> Self {
        let admission = Arc::new(Admission::new(&limits));
        let metrics = ComponentMetrics::new(id.as_str());
        Self {
            name: id.as_str().into(),
            id,
            source,
            mounts,
            nn: Arc::new(nn),
            environment,
            variables: Default::default(),
            outbound,
            limits,
            admission,
            metrics,
            access: None,
            pre: OnceCell::new(),
        }
    }

    /// Whether it is compiled and linked (on first use, or at start with `--preload`).
    pub fn is_compiled(&self) -> bool {
        self.pre.initialized()
    }

    /// The inference engine and device its models run on.
    pub fn placement(&self) -> &Placement {
        &self.nn.placement
    }
}

/// Compiled components shared between manifest entries with the same bytes.
#[derive(Default)]
pub(super) struct CompiledComponents(Mutex<HashMap<[u8; 32], Component>>);

/// What compiling a component needs, shared by the app.
#[derive(Clone)]
pub(super) struct Compiler {
    pub wasm_engine: Engine,
    pub linker: Arc<Linker<InstanceState>>,
    pub cache: ComponentCache,
    pub compiled: Arc<CompiledComponents>,
    /// The largest linear memory the instance pool's slots hold.
    pub pool_memory_bytes: usize,
    /// Component instances the pool holds.
    pub pool_instances: usize,
}

impl Compiler {
    /// The component's pre-instance, compiling (or loading from the cache) on first use.
    pub async fn instance_pre<'a>(&self, component: &'a LoadedComponent) -> Result<&'a ProxyPre<InstanceState>> {
        component
            .pre
            .get_or_try_init(|| async {
                let compiler = self.clone();
                let (id, source) = (component.id.clone(), component.source.clone());
                tokio::task::spawn_blocking(move || compiler.prepare(&id, &source)).await?
            })
            .await
    }

    /// Compiles (or loads from the cache) one component and links it.
    fn prepare(&self, id: &ComponentId, source: &Path) -> Result<ProxyPre<InstanceState>> {
        let started = std::time::Instant::now();
        let wasm = std::fs::read(source).with_context(|| format!("component '{id}': reading {}", source.display()))?;
        let digest: [u8; 32] = Sha256::digest(&wasm).into();
        let shared = self.compiled.0.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).cloned();
        let (component, (outcome, how)) = match shared {
            Some(component) => (component, ("shared", "shared")),
            None => {
                let (component, outcome) = self
                    .cache
                    .load(&self.wasm_engine, &wasm)
                    .with_context(|| format!("component '{id}': compiling {}", source.display()))?;
                self.compiled.0.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, component.clone());
                let outcome = match outcome {
                    Outcome::Hit => ("cache hit", "cache_hit"),
                    Outcome::Compiled => ("compiled", "compiled"),
                    Outcome::Rebuilt => ("rebuilt (bad cache entry)", "rebuilt"),
                };
                (component, outcome)
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component '{id}': linking imports"))?;
        let pre = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
            Ok(p3) => ProxyPre::P3(p3),
            Err(_) => {
                ProxyPre::P2(wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
                    format!("component '{id}' exports neither wasi:http/handler@0.3 nor wasi:http/incoming-handler@0.2")
                })?)
            }
        };
        tracing::info!(component = %id, how = outcome, ms = started.elapsed().as_millis() as u64, "component ready");
        metrics::counter!(crate::telemetry::metrics::COMPONENT_LOADS, "component" => id.to_string(), "how" => how).increment(1);
        Ok(pre)
    }
}

/// The imports every component may use: WASI (p2 and p3), `wasi:http`, Spin's variables, and
/// `wasi:nn` unless the host runs without it.
pub(super) fn linker(wasm_engine: &Engine, wasi_nn: bool) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(wasm_engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    super::variables::add_to_linker(&mut linker)?;
    if wasi_nn {
        crate::nn::add_to_linker(&mut linker, InstanceState::nn)?;
    }
    Ok(linker)
}
