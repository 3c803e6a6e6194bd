//! Compiled components on disk, so a later start skips Cranelift.
//!
//! An entry is `KEY.cwasm` (from `Engine::precompile_component`) with `KEY.sha256` beside it.
//! The key hashes the component's bytes and the engine's compatibility hash (its version and
//! every setting that changes code), so another engine's entry is simply another key. Writes go
//! to a temporary file renamed into place; a read checks the digest before wasmtime sees the
//! bytes, so a truncated, corrupt or missing entry is discarded and rebuilt. The digest proves
//! nothing against someone who can write the folder, so the folder itself must be this user's
//! alone ([`owned_by_us_alone`]).

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled; the cache was empty for this key (or is off).
    Compiled,
    /// Compiled because the cached entry failed its check; the entry was replaced.
    Rebuilt,
}

/// The on-disk cache of compiled components; `None` when caching is off.
#[derive(Clone, Debug)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write).
    pub fn at(dir: PathBuf) -> Self {
        Self { dir: Some(dir) }
    }

    /// No cache: always compile.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// `$XDG_CACHE_HOME/spindle` or `~/.cache/spindle`; none when neither variable is set (never
    /// a shared temporary folder).
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|base| base.join("spindle"))
    }

    /// The compiled component for `wasm`, from the cache when a valid entry exists. A cache folder
    /// that another user could write is not used at all (see [`owned_by_us_alone`]).
    pub fn load(&self, wasm_engine: &Engine, wasm: &[u8]) -> Result<(Component, Outcome)> {
        let trusted = self.dir.as_deref().map(|dir| owned_by_us_alone(dir).map(|()| dir));
        let dir = match trusted {
            Some(Ok(dir)) => dir,
            Some(Err(e)) => {
                tracing::warn!("not using the component cache: {e:#}");
                return Ok((Component::new(wasm_engine, wasm).map_err(anyhow::Error::from)?, Outcome::Compiled));
            }
            None => return Ok((Component::new(wasm_engine, wasm).map_err(anyhow::Error::from)?, Outcome::Compiled)),
        };
        let key = key(wasm_engine, wasm);
        let entry = dir.join(format!("{key}.cwasm"));
        let digest_file = dir.join(format!("{key}.sha256"));
        let mut outcome = Outcome::Compiled;
        if let Some(bytes) = read_verified(&entry, &digest_file) {
            // SAFETY: these bytes are exactly what `precompile_component` wrote for this engine
            // configuration (the key covers both; the digest proves the file is intact).
            match unsafe { Component::deserialize(wasm_engine, &bytes) } {
                Ok(component) => return Ok((component, Outcome::Hit)),
                Err(e) => tracing::warn!(entry = %entry.display(), "discarding cached component: {e}"),
            }
            outcome = Outcome::Rebuilt;
        } else if entry.exists() {
            tracing::warn!(entry = %entry.display(), "discarding cached component: digest mismatch or missing");
            outcome = Outcome::Rebuilt;
        }
        let compiled = wasm_engine.precompile_component(wasm).map_err(anyhow::Error::from)?;
        if let Err(e) = write_entry(dir, &entry, &digest_file, &compiled) {
            tracing::warn!(dir = %dir.display(), "could not write the component cache: {e:#}");
        }
        // SAFETY: produced just now by this engine.
        let component = unsafe { Component::deserialize(wasm_engine, &compiled) }.map_err(anyhow::Error::from)?;
        Ok((component, outcome))
    }
}

/// Compiled code from the cache is loaded with `unsafe` deserialisation, and a digest kept beside
/// an entry only catches corruption, not someone who can write the folder. So the folder is
/// created mode 0700, and used only while it is a real directory, owned by this process's user,
/// that no group or other user may write.
pub fn owned_by_us_alone(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory (a symlink is not trusted)", dir.display());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let us = unsafe { libc::geteuid() };
    if meta.uid() != us {
        bail!("{} is owned by uid {}, not by this user (uid {us})", dir.display(), meta.uid());
    }
    if meta.mode() & 0o022 != 0 {
        bail!("{} may be written by other users (mode {:o})", dir.display(), meta.mode() & 0o777);
    }
    Ok(())
}

fn key(wasm_engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::hash::DefaultHasher::new();
    wasm_engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let mut key = Sha256::new();
    key.update(b"spindle-component-cache-v1\0");
    key.update(Sha256::digest(wasm));
    key.update(engine_hash.finish().to_le_bytes());
    hex(&key.finalize()[..20])
}

fn read_verified(entry: &Path, digest_file: &Path) -> Option<Vec<u8>> {
    let expected = std::fs::read_to_string(digest_file).ok()?;
    let bytes = std::fs::read(entry).ok()?;
    (hex(&Sha256::digest(&bytes)) == expected.trim()).then_some(bytes)
}

fn write_entry(dir: &Path, entry: &Path, digest_file: &Path, compiled: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    atomic_write(dir, entry, compiled)?;
    atomic_write(dir, digest_file, hex(&Sha256::digest(compiled)).as_bytes())
}

fn atomic_write(dir: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;

    fn entries(dir: &Path, ext: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().unwrap() == ext).collect()
    }

    /// A cache in a fresh folder holding one entry for WAT; returns the folder and that entry.
    fn primed(wasm_engine: &Engine) -> (tempfile::TempDir, ComponentCache, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::at(dir.path().to_owned());
        assert_eq!(cache.load(wasm_engine, WAT.as_bytes()).unwrap().1, Outcome::Compiled);
        let entry = entries(dir.path(), "cwasm").pop().unwrap();
        (dir, cache, entry)
    }

    #[test]
    fn compiles_once_then_hits_and_survives_corruption() {
        let wasm_engine = Engine::default();
        let wasm = WAT.as_bytes();
        let (dir, cache, entry) = primed(&wasm_engine);
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Hit);

        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Rebuilt);
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Hit);

        std::fs::write(&entry, &bytes[..10]).unwrap();
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Rebuilt);

        // An entry from another engine configuration is a different key, never this one.
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_eq!(cache.load(&other, wasm).unwrap().1, Outcome::Compiled);
        assert_eq!(entries(dir.path(), "cwasm").len(), 2);
    }

    #[test]
    fn a_foreign_file_under_the_right_name_is_rebuilt() {
        let wasm_engine = Engine::default();
        let wasm = WAT.as_bytes();
        let (_dir, cache, entry) = primed(&wasm_engine);
        let foreign = b"\x7fELF not a wasmtime artifact";
        std::fs::write(&entry, foreign).unwrap();
        std::fs::write(entry.with_extension("sha256"), hex(&Sha256::digest(foreign))).unwrap();
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Rebuilt);
        assert_eq!(cache.load(&wasm_engine, wasm).unwrap().1, Outcome::Hit);
    }

    #[test]
    fn a_folder_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("new");
        let cache = ComponentCache::at(cache_dir.clone());
        assert_eq!(cache.load(&engine, WAT.as_bytes()).unwrap().1, Outcome::Compiled);
        assert_eq!(std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777, 0o700, "created ours alone");
        assert_eq!(cache.load(&engine, WAT.as_bytes()).unwrap().1, Outcome::Hit);
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(cache.load(&engine, WAT.as_bytes()).unwrap().1, Outcome::Compiled, "not trusted, so not read");
        assert!(owned_by_us_alone(&cache_dir).unwrap_err().to_string().contains("may be written by other users"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(owned_by_us_alone(&link).is_err());
    }
}
