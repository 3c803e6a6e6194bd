//! Host-wide choices that are not limits: which capabilities to link, where compiled components
//! are cached, which inference engine and device components get unless they choose.

use super::cache::ComponentCache;
use crate::nn::policy::{DeviceChoice, EngineChoice};
use std::path::PathBuf;

/// Host-wide choices that are not limits.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Answer `load-by-name` (the default). Off, the host behaves like one without named
    /// graphs, so functions fall back to `load`ing their mounted model files.
    pub named_models: bool,
    /// Merge concurrent computes on a named model whose description asks for dynamic batching
    /// (the default). Off, every compute runs alone; `max_batch_size` still holds.
    pub batching: bool,
    /// Link `wasi:nn` (the default). Off, the host is like Spin: no `wasi:nn` at all.
    pub wasi_nn: bool,
    /// Where compiled components are kept between starts.
    pub cache: ComponentCache,
    /// Default inference engine for components that do not choose.
    pub engine: EngineChoice,
    /// Default device for components that do not choose.
    pub device: DeviceChoice,
    /// `--engine-threads N`: threads per CPU engine job; the inference pool shrinks to match.
    pub engine_threads: usize,
    /// `--onnxruntime PATH`: the ONNX Runtime shared library.
    pub onnxruntime: Option<PathBuf>,
    /// `--keep-resident-mib N`: bytes of each instance's linear memory and tables reset with
    /// `memset` and kept mapped for the next instance, instead of unmapped with `madvise`.
    pub keep_resident_bytes: usize,
    /// `--preload`: compile every component and load every model before the app counts as
    /// ready (and, on reload, before the new version is swapped in).
    pub preload: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            named_models: true,
            batching: true,
            wasi_nn: true,
            cache: ComponentCache::disabled(),
            engine: EngineChoice::Auto,
            device: DeviceChoice::Auto,
            onnxruntime: None,
            engine_threads: 1,
            keep_resident_bytes: 8 << 20,
            preload: false,
        }
    }
}
