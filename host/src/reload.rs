//! Changing a running app without dropping a request: `SIGHUP` reloads it, and `spindle up
//! --watch` (as `spin watch`) rebuilds a component when its `build.watch` files change and reloads
//! when `spin.toml`, a component's `.wasm`, a mounted file or a tokens file changes. Each reload builds the new
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

/// Files stamped per watched path (a glob's match, a mounted folder) at most, so a huge tree
/// cannot make each look slow.
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
    let mut manifest = Manifest::load(&manifest_path).ok().map(Arc::new);
    let (mut sources, mut app_files) = look(&manifest_path, manifest.clone()).await;
    tracing::info!(files = app_files.len(), "watching the manifest, each component's .wasm, mounts and build.watch files");
    while !live.is_draining() {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let (now, app_now) = look(&manifest_path, manifest.clone()).await;
        let changed: Vec<ComponentId> =
            now.iter().filter(|(id, stamps)| sources.get(*id) != Some(stamps)).map(|(id, _)| id.clone()).collect();
        if changed.is_empty() && app_now == app_files {
            continue;
        }
        // Let a save that writes several files finish before acting on it.
        tokio::time::sleep(WATCH_INTERVAL).await;
        // What was seen before acting: a file saved during a build or reload is a change next time.
        sources = look(&manifest_path, manifest.clone()).await.0;
        if let Some(manifest) = &manifest {
            for id in changed {
                let manifest = manifest.clone();
                match tokio::task::spawn_blocking(move || build::build_component(&manifest, &id)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("rebuild failed; the previous version keeps serving: {e:#}"),
                    Err(e) => tracing::error!("rebuild panicked; the previous version keeps serving: {e}"),
                }
            }
        }
        let app_now = look(&manifest_path, manifest.clone()).await.1;
        if app_now != app_files {
            app_files = app_now;
            reload(&live, "files changed").await;
            // Watch what the manifest names now, whether or not the app it describes built.
            if let Ok(read) = Manifest::load(&manifest_path) {
                manifest = Some(Arc::new(read));
            }
        }
    }
}

/// The stamps of every component's `build.watch` files, and of the app's files, read off the
/// threads serving requests.
async fn look(manifest_path: &Path, manifest: Option<Arc<Manifest>>) -> (BTreeMap<ComponentId, Snapshot>, Snapshot) {
    let path = manifest_path.to_owned();
    tokio::task::spawn_blocking(move || {
        let manifest = manifest.as_deref();
        (manifest.map(build_sources).unwrap_or_default(), app_snapshot(&path, manifest))
    })
    .await
    .unwrap_or_default()
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
    let tokens_files = manifest.spindle.values().filter_map(|s| s.access.as_ref()).chain(manifest.settings.host_access.as_ref());
    for file in tokens_files.filter_map(|source| source.tokens_file.as_deref()) {
        let path = manifest.resolve(file);
        files.insert(path.clone(), stamp(&path));
    }
    for component in manifest.app.component.values() {
        let source = manifest.resolve(component.source.path());
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
