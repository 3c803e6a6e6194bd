//! Compiled components on disk, so a later start skips Cranelift.
//!
//! An entry is `KEY.cwasm` (from `Engine::precompile_component`) with `KEY.sha256` beside it.
//! The key hashes the component's bytes and the engine's compatibility hash (its version and
//! every setting that changes code), so another engine's entry is simply another key. Writes go
//! to a temporary file renamed into place; a read checks the digest before wasmtime sees the
//! bytes, so a truncated, corrupt or missing entry is discarded and rebuilt, never trusted.

use anyhow::{Context, Result};
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

    /// `$XDG_CACHE_HOME/spindle` or `~/.cache/spindle`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("spindle")
    }

    /// The compiled component for `wasm`, from the cache when a valid entry exists.
    pub fn load(&self, wasm_engine: &Engine, wasm: &[u8]) -> Result<(Component, Outcome)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(wasm_engine, wasm).map_err(anyhow::Error::from)?, Outcome::Compiled));
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
}
