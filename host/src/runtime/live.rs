//! The app being served, swapped whole on reload: each request takes the current [`App`] when
//! it starts and keeps it to the end, so requests in flight finish on the old version while new
//! ones get the new; the old one is dropped (its staging folders with it) when its last request
//! ends.

use super::app::App;
use crate::manifest::Manifest;
use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The current app, and reloads of it.
pub struct LiveApp {
    current: ArcSwap<App>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    reloads: AtomicU64,
    /// Set once shutdown begins; an app swapped in after that drains too.
    draining: AtomicBool,
}

impl LiveApp {
    /// Serves `app` until the first reload.
    pub fn new(app: App) -> Self {
        Self {
            current: ArcSwap::from_pointee(app),
            reloading: Default::default(),
            reloads: Default::default(),
            draining: Default::default(),
        }
    }

    /// Begins shutdown: readiness answers false from now on, whichever version serves.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.current().start_draining();
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The app new requests get.
    pub fn current(&self) -> Arc<App> {
        self.current.load_full()
    }

    /// How many reloads have been swapped in.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reads the manifest again and builds the app it describes beside the current one (with
    /// `--preload`, compiling every component and loading every model first), then swaps it in.
    /// Any failure (a bad manifest, a missing `.wasm`, a model that does not compile) leaves the
    /// current app serving and is returned.
    pub async fn reload(&self) -> Result<Arc<App>> {
        let _one = self.reloading.lock().await;
        let old = self.current();
        if self.is_draining() {
            bail!("shutting down; not reloading");
        }
        // Reading files and staging mounts blocks: keep it off the threads serving requests.
        let building = old.clone();
        let new = tokio::task::spawn_blocking(move || {
            let manifest = Manifest::load(building.manifest_path())?;
            building.rebuild(&manifest).context("building the new version")
        })
        .await??;
        let new = Arc::new(new);
        if new.preloads() {
            new.preload().await.context("preloading the new version")?;
        }
        self.current.store(new.clone());
        // Shutdown marks the app it sees; if that was the old one, this one must drain too.
        if self.is_draining() {
            new.start_draining();
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(new)
    }
}
