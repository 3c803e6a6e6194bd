//! `spin.toml` (manifest version 2): its types, strict parsing, and every check the manifest
//! alone can fail, each with its error text.
//!
//! Every table denies unknown keys, so a typo is an error that names the file, line and key.
//! Spindle's own settings live under `[component.NAME.tool.spindle]`, which Spin ignores, so the
//! same file stays valid for `spin up`. Cross-field checks (trigger → component, routes, mounts'
//! destinations, Spindle settings) run after parsing ([`validate`]); the route table they build is
//! kept in the [`Manifest`] and is what the server routes with ([`routes`]).
//!
//! This crate reads files and nothing else: checks that need the file system beyond the
//! manifest itself (a component's `.wasm` exists, a mount's globs match) run when the app is
//! built, by the host's runtime.

mod id;
pub mod routes;
mod types;
mod validate;

pub use id::{ComponentId, InvalidComponentId};
pub use routes::{RouteError, RouteMatch, Router};
pub use types::*;
pub use validate::Invalid;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed and validated manifest, with the folder its relative paths start from.
#[derive(Debug)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The folder relative paths start from.
    pub dir: PathBuf,
    /// The tables as written.
    pub app: AppManifest,
    /// Spindle settings for the app, from `[application.tool.spindle]`.
    pub settings: AppSettings,
    /// Spindle settings per component, from `tool.spindle` (defaults where absent).
    pub spindle: BTreeMap<ComponentId, SpindleSettings>,
    /// The routes of `[[trigger.http]]`, validated.
    pub router: Router,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read and is not a valid manifest.
    #[error("invalid manifest {path}: {reason}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: Invalid,
    },
}

impl Manifest {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let invalid = |reason: Invalid| ManifestError::Invalid { path: path.to_owned(), reason };
        let app: AppManifest = toml::from_str(text).map_err(|e| invalid(Invalid::Syntax(e.to_string().trim_end().to_owned())))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        let validate::Validated { settings, spindle, router } = validate::validate(&app, &dir).map_err(invalid)?;
        Ok(Self { path: path.to_owned(), dir, app, settings, spindle, router })
    }

    /// Resolves a manifest-relative path.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The folder directory mounts may name sources under: the manifest's own, or `files_root`.
    pub fn files_root(&self) -> PathBuf {
        self.resolve(self.settings.files_root.as_deref().unwrap_or("."))
    }

    /// The Spindle settings of a component (defaults if it has none, or is not in the manifest).
    pub fn settings(&self, id: &ComponentId) -> SpindleSettings {
        self.spindle.get(id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/bad")
    }

    /// Each `tests/manifests/bad/NAME.toml` must be refused with an error containing every
    /// line of `NAME.err`.
    #[test]
    fn golden_bad_manifests() {
        let mut checked = 0;
        for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let expected = std::fs::read_to_string(path.with_extension("err")).expect("matching .err file");
            let error = Manifest::load(&path).expect_err(&format!("{} should be refused", path.display())).to_string();
            for line in expected.lines().filter(|l| !l.is_empty()) {
                assert!(error.contains(line), "{}: error\n{error}\ndoes not contain\n{line}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} golden manifests");
    }

    #[test]
    fn the_repo_manifest_is_valid_and_other_tools_are_ignored() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
        let manifest = Manifest::load(&repo).expect("repo spin.toml");
        assert!(manifest.app.component.contains_key(&ComponentId::parse("cifar10").unwrap()));
        let text = "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.a]\nsource = \"a.wasm\"\n\
                    [component.a.tool.spindle]\nmemory_limit_mib = 64\n[component.a.tool.other]\nanything = 1\n";
        let manifest = Manifest::parse(Path::new("x/spin.toml"), text).expect("valid");
        let a = ComponentId::parse("a").unwrap();
        assert_eq!(manifest.spindle[&a].memory_limit_mib, Some(64));
    }
}
