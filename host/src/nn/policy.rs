//! Which engine and device run a component's models: decided by the host, by policy.
//!
//! `--engine auto|tract|onnxruntime` and `--device auto|cpu|gpu` set the default; a component's
//! `[component.NAME.tool.spindle]` `engine` / `device` override it. `auto` takes a GPU engine when
//! one probes ready, else the fastest CPU engine available (ONNX Runtime, then tract). Asking for
//! something that is not available is an error at start, saying why, never a silent fallback.
//! Of the GPU engines, ONNX Runtime's CUDA execution provider comes first, then tract's CUDA runtime.

use super::backend::onnxruntime::{self, OnnxRuntime, OnnxRuntimeBackend};
use super::backend::tract::TractBackend;
use super::backend::{Backend, Device};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use spindle_manifest::{DeviceChoice, EngineChoice};

/// Where a component's models run, and why.
#[derive(Clone)]
pub struct Placement {
    /// The inference engine, on its device.
    pub backend: Arc<dyn Backend>,
    /// The backend's device.
    pub device: Device,
    /// Why this one, for the start-up table and errors.
    pub reason: String,
}

/// A choice that cannot be honoured on this host.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// The engine asked for is not available.
    #[error("engine {engine} was asked for but is unavailable: {why}")]
    EngineUnavailable {
        /// The engine.
        engine: &'static str,
        /// Why it is unavailable.
        why: String,
    },
    /// A GPU was asked for and no GPU engine probed ready.
    #[error("device gpu was asked for but no GPU engine is ready: {why}")]
    NoGpu {
        /// Why each candidate is not ready.
        why: String,
    },
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} ({})", self.backend.name(), self.device, self.reason)
    }
}

/// The inference engines this host has, probed once at start.
pub struct InferenceEngines {
    tract: Arc<dyn Backend>,
    onnxruntime: Result<Arc<dyn Backend>, String>,
    onnxruntime_library: Option<std::path::PathBuf>,
    tract_gpu: Result<Arc<dyn Backend>, String>,
    onnxruntime_gpu: Result<Arc<dyn Backend>, String>,
}

fn shared<B: Backend>(backend: B) -> Arc<dyn Backend> {
    Arc::new(backend)
}

impl InferenceEngines {
    /// Probes every engine. `onnxruntime_library` is `--onnxruntime PATH`. `want_gpu` is false
    /// when no component can be placed on a GPU (`--device cpu` everywhere): the GPU probes,
    /// which load the CUDA libraries, are then skipped and say so. `threads` is how many
    /// threads each CPU engine job uses.
    pub fn probe(onnxruntime_library: Option<&Path>, want_gpu: bool, threads: usize) -> Self {
        let runtime = onnxruntime::locate(onnxruntime_library).map(OnnxRuntime::new);
        let skipped = || Err::<Arc<dyn Backend>, String>("not probed: every component asks for device cpu".into());
        let (tract_gpu, onnxruntime_gpu) = if want_gpu {
            (
                TractBackend::cuda().map(shared),
                runtime
                    .as_ref()
                    .map_err(|e| format!("onnxruntime unavailable: {e}"))
                    .and_then(|rt| OnnxRuntimeBackend::cuda(rt.clone()).map(shared)),
            )
        } else {
            (skipped(), skipped())
        };
        Self {
            tract: shared(TractBackend::cpu(threads)),
            onnxruntime_library: runtime.as_ref().ok().map(|rt| rt.library().to_owned()),
            onnxruntime: runtime.map(|rt| shared(OnnxRuntimeBackend::cpu(rt, threads))),
            tract_gpu,
            onnxruntime_gpu,
        }
    }

    /// One line per engine and device: name, device, availability.
    pub fn table(&self) -> Vec<(&'static str, Device, String)> {
        let status = |r: &Result<Arc<dyn Backend>, String>| match r {
            Ok(_) => "available".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        };
        vec![
            ("tract", Device::Cpu, "available (built in)".into()),
            (
                "onnxruntime",
                Device::Cpu,
                match (&self.onnxruntime, &self.onnxruntime_library) {
                    (Ok(_), Some(path)) => format!("available ({}, loaded on first use)", path.display()),
                    (_, _) => status(&self.onnxruntime),
                },
            ),
            ("tract", Device::Gpu, status(&self.tract_gpu)),
            ("onnxruntime", Device::Gpu, status(&self.onnxruntime_gpu)),
        ]
    }

    /// Resolves a choice, or says why it cannot be honoured.
    pub fn place(&self, engine: EngineChoice, device: DeviceChoice) -> Result<Placement, PlacementError> {
        let placed =
            |backend: &Arc<dyn Backend>, reason: String| Ok(Placement { backend: backend.clone(), device: backend.device(), reason });
        let cpu = |engine: EngineChoice, why: String| -> Result<Placement, PlacementError> {
            match engine {
                EngineChoice::Tract => placed(&self.tract, why),
                EngineChoice::Onnxruntime => match &self.onnxruntime {
                    Ok(b) => placed(b, why),
                    Err(e) => Err(PlacementError::EngineUnavailable { engine: "onnxruntime", why: e.clone() }),
                },
                EngineChoice::Auto => match &self.onnxruntime {
                    Ok(b) => placed(b, format!("{why}; onnxruntime is the fastest CPU engine available")),
                    Err(e) => placed(&self.tract, format!("{why}; onnxruntime unavailable ({e}), so tract")),
                },
            }
        };
        // The GPU engine for this choice, or why there is none.
        let gpu = match engine {
            EngineChoice::Tract => self.tract_gpu.clone().map_err(|e| format!("tract on gpu: {e}")),
            EngineChoice::Onnxruntime => self.onnxruntime_gpu.clone().map_err(|e| format!("onnxruntime on gpu: {e}")),
            EngineChoice::Auto => match (&self.onnxruntime_gpu, &self.tract_gpu) {
                (Ok(b), _) | (Err(_), Ok(b)) => Ok(b.clone()),
                (Err(ort), Err(tract)) => Err(format!("onnxruntime on gpu: {ort}; tract on gpu: {tract}")),
            },
        };
        match device {
            DeviceChoice::Gpu => match gpu {
                Ok(b) => placed(&b, format!("device gpu asked for; {} is ready on it", b.name())),
                Err(why) => Err(PlacementError::NoGpu { why }),
            },
            DeviceChoice::Cpu => cpu(engine, "device cpu asked for".into()),
            DeviceChoice::Auto => match gpu {
                Ok(b) => placed(&b, format!("auto: the {} GPU probe passed", b.name())),
                Err(_) => cpu(engine, "auto: no GPU engine ready (the engine table says why)".into()),
            },
        }
    }
}
