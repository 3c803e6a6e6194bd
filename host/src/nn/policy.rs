//! Which engine and device run a component's models: decided by the host, by policy.
//!
//! `--engine auto|tract|onnxruntime` and `--device auto|cpu|gpu` set the default; a component's
//! `[component.NAME.tool.spindle]` `engine` / `device` override it. `auto` takes a GPU engine when
//! one probes ready, else the fastest CPU engine available (ONNX Runtime, then tract). Asking for
//! something that is not available is an error at start, saying why, never a silent fallback.

use super::backend::Backend;
use super::backend::onnxruntime::{self, OnnxRuntimeBackend};
use super::backend::tract::TractBackend;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// An engine choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    #[default]
    Auto,
    Tract,
    Onnxruntime,
}

/// A device choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// Where a component's models run, and why.
#[derive(Clone)]
pub struct Placement {
    pub backend: Arc<dyn Backend>,
    pub device: &'static str,
    pub reason: String,
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} ({})", self.backend.name(), self.device, self.reason)
    }
}

/// The engines this host has, probed once at start.
pub struct Engines {
    tract: Arc<dyn Backend>,
    onnxruntime_library: Option<std::path::PathBuf>,
    onnxruntime: Result<Arc<dyn Backend>, String>,
    gpu: Result<Arc<dyn Backend>, String>,
}

impl Engines {
    /// Probes every engine. `onnxruntime_library` is `--onnxruntime PATH`.
    pub fn probe(onnxruntime_library: Option<&Path>) -> Self {
        let located = onnxruntime::locate(onnxruntime_library);
        let onnxruntime_library = located.as_ref().ok().cloned();
        let onnxruntime = located.map(|path| Arc::new(OnnxRuntimeBackend::new(path)) as Arc<dyn Backend>);
        Self {
            tract: Arc::new(TractBackend),
            onnxruntime_library,
            onnxruntime,
            gpu: Err("this build has no GPU engine".into()),
        }
    }

    /// One line per engine: name, device, availability.
    pub fn table(&self) -> Vec<(String, &'static str, String)> {
        let status = |r: &Result<Arc<dyn Backend>, String>| match r {
            Ok(_) => "available".to_owned(),
            Err(e) => format!("unavailable: {e}"),
        };
        vec![
            ("tract".into(), "cpu", "available (built in)".into()),
            ("onnxruntime".into(), "cpu", match (&self.onnxruntime, &self.onnxruntime_library) {
                (Ok(_), Some(path)) => format!("available ({}, loaded on first use)", path.display()),
                (_, _) => status(&self.onnxruntime),
            }),
            ("gpu".into(), "gpu", status(&self.gpu)),
        ]
    }

    /// Resolves a choice, or says why it cannot be honoured.
    pub fn place(&self, engine: EngineChoice, device: DeviceChoice) -> Result<Placement, String> {
        let cpu = |engine: EngineChoice, why: String| -> Result<Placement, String> {
            match engine {
                EngineChoice::Tract => Ok(Placement { backend: self.tract.clone(), device: "cpu", reason: why }),
                EngineChoice::Onnxruntime => match &self.onnxruntime {
                    Ok(b) => Ok(Placement { backend: b.clone(), device: "cpu", reason: why }),
                    Err(e) => Err(format!("engine onnxruntime was asked for but is unavailable: {e}")),
                },
                EngineChoice::Auto => match &self.onnxruntime {
                    Ok(b) => Ok(Placement { backend: b.clone(), device: "cpu", reason: format!("{why}; onnxruntime is the fastest CPU engine available") }),
                    Err(e) => Ok(Placement { backend: self.tract.clone(), device: "cpu", reason: format!("{why}; onnxruntime unavailable ({e}), so tract") }),
                },
            }
        };
        match device {
            DeviceChoice::Gpu => match &self.gpu {
                Ok(b) => Ok(Placement { backend: b.clone(), device: "gpu", reason: "device gpu asked for".into() }),
                Err(e) => Err(format!("device gpu was asked for but no GPU engine is ready: {e}")),
            },
            DeviceChoice::Cpu => cpu(engine, "device cpu asked for".into()),
            DeviceChoice::Auto => match (&self.gpu, engine) {
                (Ok(b), EngineChoice::Auto) => Ok(Placement { backend: b.clone(), device: "gpu", reason: "auto: the GPU probe passed".into() }),
                (Err(e), _) => cpu(engine, format!("auto: no GPU ({e})")),
                (Ok(_), _) => cpu(engine, format!("engine {engine:?} asked for")),
            },
        }
    }
}
