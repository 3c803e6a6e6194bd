//! Changing a running app without dropping a request: `SIGHUP` reloads it, and `spindle up
//! --watch` (as `spin watch`) rebuilds a component when its `build.watch` files change and reloads
//! when `spin.toml`, a component's `.wasm` or a mounted file changes. Each reload builds the new
//! app beside the old one and swaps it in whole ([`LiveApp::reload`]); a failed build or reload
//! keeps the old version serving and says why.
//!
//! The watcher polls modification times and sizes rather than subscribing to file-system events:
//! it sees files replaced by rename (as cargo and editors write them) and needs no inotify watches.

use crate::build;
use crate::manifest::{ComponentId, FileMount, Manifest};
use crate::runtime::LiveApp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often `--watch` looks at the files.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Files walked per mount at most, so a mount of a huge tree cannot make each look slow.
const MAX_WATCHED_PER_ENTRY: usize = 10_000;

/// Reloads, saying how it went; a failure leaves the old version serving.
pub async fn reload(live: &LiveApp, why: &str) -> bool {
    let started = Instant::now();
    match live.reload().await {
        Ok(app) => {
            tracing::info!(
                reason = why,
                components = app.components().len(),
                ms = started.elapsed().as_millis() as u64,
                "reloaded: new requests get the new version"
            );
            metrics::counter!(crate::telemetry::metrics::RELOADS, "outcome" => "swapped").increment(1);
            true
        }
        Err(e) => {
            tracing::error!(reason = why, "reload failed; the previous version keeps serving: {e:#}");
            metrics::counter!(crate::telemetry::metrics::RELOADS, "outcome" => "failed").increment(1);
            false
        }
    }
}

/// Reloads on every `SIGHUP`, until the process ends.
pub async fn on_sighup(live: Arc<LiveApp>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload only with --watch");
        return;
    };
    while hangups.recv().await.is_some() {
        reload(&live, "SIGHUP").await;
    }
}

/// What a file looked like: modification time and size, or absent.
type Stamp = Option<(SystemTime, u64)>;

/// Stamps of a set of files.
type Snapshot = BTreeMap<PathBuf, Stamp>;

/// `spindle up --watch`: until the process ends, rebuilds components whose `build.watch` files
/// changed and reloads when the app's files changed.
pub async fn watch(live: Arc<LiveApp>) {
    let manifest_path = live.current().manifest_path().to_owned();
    let mut manifest = Manifest::load(&manifest_path).ok();
    let mut sources = manifest.as_ref().map(build_sources).unwrap_or_default();
    let mut app_files = app_snapshot(&manifest_path, manifest.as_ref());
    tracing::info!(files = app_files.len(), "watching the manifest, each component's .wasm, mounts and build.watch files");
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        if live.current().is_draining() {
            return;
        }
        let now = manifest.as_ref().map(build_sources).unwrap_or_default();
        let changed: Vec<ComponentId> =
            now.iter().filter(|(id, stamps)| sources.get(*id) != Some(stamps)).map(|(id, _)| id.clone()).collect();
        let app_now = app_snapshot(&manifest_path, manifest.as_ref());
        if changed.is_empty() && app_now == app_files {
            continue;
        }
        // Let a save that writes several files finish before acting on it.
        tokio::time::sleep(WATCH_INTERVAL).await;
        if let Some(manifest) = &manifest {
            for id in &changed {
                let (manifest_path, id) = (manifest.path.clone(), id.clone());
                let built = tokio::task::spawn_blocking(move || {
                    let manifest = Manifest::load(&manifest_path)?;
                    build::build_component(&manifest, &id)
                })
                .await;
                match built {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("rebuild failed; the previous version keeps serving: {e:#}"),
                    Err(e) => tracing::error!("rebuild panicked; the previous version keeps serving: {e}"),
                }
            }
        }
        sources = manifest.as_ref().map(build_sources).unwrap_or_default();
        let app_now = app_snapshot(&manifest_path, manifest.as_ref());
        if app_now != app_files {
            if reload(&live, "files changed").await {
                manifest = Manifest::load(&manifest_path).ok();
                sources = manifest.as_ref().map(build_sources).unwrap_or_default();
            } else if let Ok(fixed) = Manifest::load(&manifest_path) {
                // The manifest reads, the app did not build: watch what it names now anyway.
                manifest = Some(fixed);
            }
            app_files = app_snapshot(&manifest_path, manifest.as_ref());
        }
    }
}

/// Per component with a build: the stamps of the files its `build.watch` globs match, relative
/// to its `workdir`.
fn build_sources(manifest: &Manifest) -> BTreeMap<ComponentId, Snapshot> {
    manifest
        .app
        .component
        .iter()
        .filter_map(|(id, component)| {
            let build = component.build.as_ref()?;
            let workdir = manifest.resolve(build.workdir.as_deref().unwrap_or("."));
            let mut files = Snapshot::new();
            for pattern in &build.watch {
                stamp_glob(&workdir.join(pattern), &mut files);
            }
            Some((id.clone(), files))
        })
        .collect()
}

/// The stamps of the manifest, each component's `.wasm` and every file it mounts.
fn app_snapshot(manifest_path: &Path, manifest: Option<&Manifest>) -> Snapshot {
    let mut files = Snapshot::new();
    files.insert(manifest_path.to_owned(), stamp(manifest_path));
    let Some(manifest) = manifest else { return files };
    for component in manifest.app.component.values() {
        let source = manifest.resolve(&component.source);
        files.insert(source.clone(), stamp(&source));
        for mount in &component.files {
            match mount {
                FileMount::Pattern(pattern) => stamp_glob(&manifest.resolve(pattern), &mut files),
                FileMount::Directory(dir) => stamp_tree(&manifest.resolve(&dir.source), &mut files),
            }
        }
    }
    files
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn stamp_glob(pattern: &Path, into: &mut Snapshot) {
    let Ok(matches) = glob::glob(&pattern.to_string_lossy()) else { return };
    for path in matches.flatten().take(MAX_WATCHED_PER_ENTRY) {
        stamp_tree(&path, into);
    }
}

/// Stamps a file, or every file under a folder (not following links to folders).
fn stamp_tree(root: &Path, into: &mut Snapshot) {
    let mut pending = vec![root.to_owned()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if let Ok(entries) = std::fs::read_dir(&path) {
                    pending.extend(entries.flatten().map(|e| e.path()));
                }
            }
            _ => {
                into.insert(path.clone(), stamp(&path));
                seen += 1;
                if seen >= MAX_WATCHED_PER_ENTRY {
                    return;
                }
            }
        }
    }
}
