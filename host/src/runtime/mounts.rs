//! A component's `files`, mounted read-only exactly as its manifest grants.
//!
//! A directory mount (`{ source = "dir", destination = "/d" }`) preopens the directory at `/d`; its
//! source must lie, symlinks resolved, in the app's folder (or the `files_root` the manifest
//! grants). Glob patterns (`"models/cifar10/*.onnx"`) mount each matching file at the same
//! relative path under `/`; like Spin, those files are copied once per app into a staging folder,
//! so the guest can never reach a file the manifest did not name. A directory mount that
//! `exclude_files` thins is staged the same way, so excluded files are really not there. Walking a
//! folder never follows a symlink to a directory (no cycles), and a symlinked file is mounted only
//! if it resolves inside its mount.

use crate::manifest::{Component, ComponentId, FileMount, Manifest};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The mounts of one component, prepared once per app.
pub struct Mounts {
    /// `(host directory, guest path)` pairs to preopen read-only.
    preopens: Vec<(PathBuf, String)>,
    /// Every mounted file as `(guest path, host path)`.
    pub files: Vec<(String, PathBuf)>,
    _staging: Vec<tempfile::TempDir>,
}

impl Mounts {
    /// Resolves the component's `files` and `exclude_files` against the manifest's folder.
    pub fn prepare(manifest: &Manifest, id: &ComponentId, component: &Component) -> Result<Self> {
        let excluded = component
            .exclude_files
            .iter()
            .map(|p| glob::Pattern::new(p).with_context(|| format!("component.{id}.exclude_files: bad pattern '{p}'")))
            .collect::<Result<Vec<_>>>()?;
        let is_excluded = |rel: &str| excluded.iter().any(|p| p.matches(rel));
        let mut mounts = Mounts { preopens: Vec::new(), files: Vec::new(), _staging: Vec::new() };
        let root = manifest.files_root();
        let root = root.canonicalize().with_context(|| format!("resolving files_root {}", root.display()))?;
        let mut staged: Vec<(String, PathBuf)> = Vec::new();
        for mount in &component.files {
            match mount {
                FileMount::Directory(p) => {
                    let source = manifest.resolve(&p.source);
                    if !source.is_dir() {
                        bail!("component.{id}.files: source '{}' is not a directory ({})", p.source, source.display());
                    }
                    let source = source.canonicalize()?;
                    if !source.starts_with(&root) {
                        bail!("component.{id}.files: source '{}' resolves to {}, outside {}", p.source, source.display(), root.display());
                    }
                    let mut kept = Vec::new();
                    let mut thinned = false;
                    for host in walk(&source)? {
                        let rel = relative(&host, &source)?;
                        if is_excluded(&rel) {
                            thinned = true;
                        } else {
                            kept.push((rel, host));
                        }
                    }
                    if thinned {
                        let staging = stage(id, &kept)?;
                        for (rel, _) in &kept {
                            mounts.files.push((join_guest(&p.destination, rel), staging.path().join(rel)));
                        }
                        mounts.preopens.push((staging.path().to_owned(), p.destination.clone()));
                        mounts._staging.push(staging);
                    } else {
                        mounts.files.extend(kept.into_iter().map(|(rel, host)| (join_guest(&p.destination, &rel), host)));
                        mounts.preopens.push((source, p.destination.clone()));
                    }
                }
                FileMount::Pattern(pattern) => {
                    let full = manifest.resolve(pattern);
                    let matches =
                        glob::glob(&full.to_string_lossy()).with_context(|| format!("component.{id}.files: bad pattern '{pattern}'"))?;
                    let before = staged.len();
                    for entry in matches {
                        let host = entry?;
                        for file in if host.is_dir() { walk(&host)? } else { vec![host] } {
                            let rel = relative(&file, &manifest.dir)
                                .with_context(|| format!("component.{id}.files: '{pattern}' reaches outside the app folder"))?;
                            if !is_excluded(&rel) {
                                staged.push((rel, file));
                            }
                        }
                    }
                    if staged.len() == before {
                        bail!("component.{id}.files: pattern '{pattern}' matches no files under {}", manifest.dir.display());
                    }
                }
            }
        }
        if !staged.is_empty() {
            let staging = stage(id, &staged)?;
            for (rel, _) in &staged {
                mounts.files.push((join_guest("/", rel), staging.path().join(rel)));
            }
            mounts.preopens.push((staging.path().to_owned(), "/".into()));
            mounts._staging.push(staging);
        }
        Ok(mounts)
    }

    /// Preopens every mount, read-only.
    pub fn apply(&self, wasi: &mut WasiCtxBuilder) -> Result<()> {
        for (host, guest) in &self.preopens {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("mounting {} at {guest}", host.display()))?;
        }
        Ok(())
    }
}

/// Copies `(relative path, host file)` pairs into a fresh staging folder.
fn stage(id: &ComponentId, files: &[(String, PathBuf)]) -> Result<tempfile::TempDir> {
    let staging = tempfile::Builder::new().prefix(&format!("spindle-{id}-")).tempdir()?;
    for (rel, host) in files {
        let target = staging.path().join(rel);
        std::fs::create_dir_all(target.parent().unwrap_or(staging.path()))?;
        std::fs::copy(host, &target).with_context(|| format!("staging {}", host.display()))?;
    }
    Ok(staging)
}

/// Every file under `dir`, not following symlinks to directories; a symlinked file only if it
/// resolves inside `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let base = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let mut out = Vec::new();
    walk_into(&base, &base, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_into(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk_into(base, &path, out)?;
        } else if kind.is_symlink() {
            let target = path.canonicalize().ok();
            if target.is_some_and(|t| t.starts_with(base) && t.is_file()) {
                out.push(path);
            } else {
                tracing::warn!(link = %path.display(), "not mounted: a symlink to a directory or to outside its mount");
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `base`; both are resolved first, and the result never starts with `/`.
fn relative(path: &Path, base: &Path) -> Result<String> {
    let base = base.canonicalize().with_context(|| format!("resolving {}", base.display()))?;
    let path = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
    let rel = path.strip_prefix(&base).with_context(|| format!("{} is not under {}", path.display(), base.display()))?;
    if rel.as_os_str().is_empty() || rel.is_absolute() {
        bail!("{} is not a file under {}", path.display(), base.display());
    }
    Ok(rel.to_string_lossy().replace('\\', "/"))
}

fn join_guest(dir: &str, rel: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_staged_copies_and_sources_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models/m")).unwrap();
        std::fs::write(dir.path().join("models/m/model.onnx"), b"bytes").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"no").unwrap();
        let text = "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.a]\nsource = \"a.wasm\"\n\
                    files = [\"models/m/*.onnx\"]\n";
        let manifest = Manifest::parse(&dir.path().join("spin.toml"), text).unwrap();
        let (id, component) = manifest.app.component.iter().next().unwrap();
        let mounts = Mounts::prepare(&manifest, id, component).unwrap();
        assert_eq!(mounts.files.len(), 1);
        let (guest, host) = &mounts.files[0];
        assert_eq!(guest, "/models/m/model.onnx");
        assert_ne!(host.canonicalize().unwrap(), dir.path().join("models/m/model.onnx").canonicalize().unwrap());
        assert_eq!(std::fs::read(dir.path().join("models/m/model.onnx")).unwrap(), b"bytes");
        assert_eq!(std::fs::read(host).unwrap(), b"bytes");
    }

    #[test]
    fn patterns_may_not_leave_the_app_or_match_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("outside.txt"), b"no").unwrap();
        for (files, message) in [("[\"../outside.txt\"]", "outside the app folder"), ("[\"nothing/*\"]", "matches no files")] {
            let text =
                format!("spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.a]\nsource = \"a.wasm\"\nfiles = {files}\n");
            let manifest = Manifest::parse(&dir.path().join("app/spin.toml"), &text).unwrap();
            let (id, component) = manifest.app.component.iter().next().unwrap();
            let err = Mounts::prepare(&manifest, id, component).err().expect("refused");
            assert!(format!("{err:#}").contains(message), "{err:#}");
        }
    }

    fn prepare(dir: &Path, files: &str, extra: &str) -> Result<Mounts> {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n{extra}[component.a]\nsource = \"a.wasm\"\nfiles = {files}\nexclude_files = [\"**/*.key\"]\n"
        );
        let manifest = Manifest::parse(&dir.join("app/spin.toml"), &text)?;
        let (id, component) = manifest.app.component.iter().next().unwrap();
        Mounts::prepare(&manifest, id, component)
    }

    #[test]
    fn directory_mounts_stay_in_the_app_skip_loops_and_honour_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("app/models");
        std::fs::create_dir_all(&models).unwrap();
        std::fs::write(models.join("model.onnx"), b"m").unwrap();
        std::fs::write(models.join("tls.key"), b"secret").unwrap();
        std::fs::write(dir.path().join("outside.txt"), b"no").unwrap();
        std::os::unix::fs::symlink(&models, models.join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), models.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("app/up")).unwrap();

        let mounts = prepare(dir.path(), r#"[{ source = "models", destination = "/m" }]"#, "").unwrap();
        let guest: Vec<&str> = mounts.files.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(guest, ["/m/model.onnx"], "no loop, no escape, no excluded key");
        // The excluded key is not in what is mounted: a staged copy without it.
        assert_eq!(mounts.preopens.len(), 1);
        assert!(!mounts.preopens[0].0.join("tls.key").exists());
        assert!(mounts.preopens[0].0.join("model.onnx").exists());

        let err = prepare(dir.path(), r#"[{ source = "up", destination = "/up" }]"#, "").err().expect("a symlink out of the app");
        assert!(format!("{err:#}").contains("outside"), "{err:#}");
        let allowed =
            prepare(dir.path(), r#"[{ source = "up", destination = "/up" }]"#, "[application.tool.spindle]\nfiles_root = \"..\"\n");
        assert!(allowed.is_ok(), "{:#}", allowed.err().unwrap());
    }
}
