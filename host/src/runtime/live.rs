//! The app being served, swapped whole on reload: each request takes the current [`App`] when
//! it starts and keeps it to the end, so requests in flight finish on the old version while new
//! ones get the new; the old one is dropped (its staging folders with it) when its last request
//! ends.

use super::app::App;
use crate::manifest::Manifest;
use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The current app, and reloads of it.
pub struct LiveApp {
    current: ArcSwap<App>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    reloads: std::sync::atomic::AtomicU64,
}

impl LiveApp {
    /// Serves `app` until the first reload.
    pub fn new(app: App) -> Self {
        Self { current: ArcSwap::from_pointee(app), reloading: Default::default(), reloads: Default::default() }
    }

    /// The app new requests get.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// How many reloads have been swapped in.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the manifest again and builds the app it describes beside the current one (with
    /// `--preload`, compiling every component and loading every model first), then swaps it in.
    /// Any failure (a bad manifest, a missing `.wasm`, a model that does not compile) leaves the
    /// current app serving and is returned.
    pub async fn reload(&self) -> Result<Arc<App>> {
        let _one = self.reloading.lock().await;
        let old = self.current();
        if old.is_draining() {
            bail!("shutting down; not reloading");
        }
        let manifest = Manifest::load(old.manifest_path())?;
        let new = Arc::new(old.rebuild(&manifest).context("building the new version")?);
        if new.preloads() {
            new.preload().await.context("preloading the new version")?;
        }
        self.current.store(new.clone());
        self.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(new)
    }
}
