//! `spin.toml` (manifest version 2): its types, strict parsing, and every check the manifest
//! alone can fail, each with its error text.
//!
//! Every table denies unknown keys, so a typo is an error that names the file, line and key;
//! every key Spin defines is declared, and those Spindle does not implement are refused by name.
//! Spindle's own settings live under `[component.NAME.tool.spindle]`, which Spin ignores.
//! Cross-field checks (trigger → component, routes, mounts' destinations, Spindle settings, what
//! is not supported) run after parsing ([`validate`]); the route table they build is kept in the
//! [`Manifest`] and is what the server routes with ([`routes`]). Then Spin's variables are
//! resolved ([`variables`]).
//!
//! This crate reads files and the `SPIN_VARIABLE_*` environment, nothing else: checks that need
//! the file system beyond the manifest itself (a component's `.wasm` exists, a mount's globs
//! match) run when the app is built, by the host's runtime.

mod id;
pub mod routes;
mod types;
mod validate;
pub mod variables;

pub use id::{ComponentId, InvalidComponentId};
pub use routes::{RouteError, RouteMatch, Router};
pub use types::*;
pub use validate::Invalid;
pub use variables::ComponentVariables;

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
    /// Each component's `variables`, resolved.
    pub variables: ComponentVariables,
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

    /// Parses and validates manifest text; `path` names the file in errors and anchors relative
    /// paths. Variables come from this process's `SPIN_VARIABLE_*` environment variables.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        Self::parse_with(path, text, &|name| std::env::var(name).ok())
    }

    /// [`Manifest::parse`], with the environment variables `env` gives.
    pub fn parse_with(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ManifestError> {
        let invalid = |reason: Invalid| ManifestError::Invalid { path: path.to_owned(), reason };
        let mut app: AppManifest = toml::from_str(text).map_err(|e| {
            // A version 1 manifest fails on its first table; say what it is instead.
            let v1 = toml::from_str::<toml::Table>(text)
                .is_ok_and(|t| t.contains_key("spin_version") || t.get("spin_manifest_version").is_some_and(toml::Value::is_str));
            invalid(match v1 {
                true => Invalid::Unsupported {
                    field: "spin_manifest_version".into(),
                    why: "this is a version 1 manifest; `spin doctor` upgrades it to version 2".into(),
                },
                false => Invalid::Syntax(e.to_string().trim_end().to_owned()),
            })
        })?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        let validate::Validated { settings, spindle, router } = validate::validate(&app, &dir).map_err(invalid)?;
        let variables = variables::resolve(&mut app, env).map_err(invalid)?;
        Ok(Self { path: path.to_owned(), dir, app, settings, spindle, router, variables })
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

    /// Each `tests/manifests/spin/NAME.toml`, in the shape of Spin's own templates and samples,
    /// says on its first line what Spindle does with it: `# expect: ok`, or `# expect:
    /// unsupported FIELD`; a `# env: NAME=VALUE` line gives it environment variables.
    #[test]
    fn spin_shaped_manifests_are_read_or_refused_by_field() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifests/spin");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("tests/manifests/spin") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("an # expect: line");
            let env: BTreeMap<String, String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# env: "))
                .filter_map(|l| l.split_whitespace().next()?.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let parsed = Manifest::parse_with(&path, &text, &|name| env.get(name).cloned());
            match (expect, parsed) {
                ("ok", Ok(_)) => {}
                ("ok", Err(e)) => panic!("{}: {e}", path.display()),
                (unsupported, Ok(_)) => panic!("{}: read, but expected {unsupported}", path.display()),
                (unsupported, Err(e)) => {
                    let field = unsupported.strip_prefix("unsupported ").expect("ok or unsupported FIELD");
                    assert!(e.to_string().contains(&format!("{field}: not supported by Spindle (")), "{}: {e}", path.display());
                }
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} manifests");
    }

    #[test]
    fn variables_come_from_the_environment_or_their_default() {
        let text = r#"
spin_manifest_version = 2
[application]
name = "v"
[variables]
api_host = { default = "api.example.com" }
api_token = { required = true, secret = true }
optional_host = { default = "" }
[[trigger.http]]
route = "/..."
component = "app"
[component.app]
source = "app.wasm"
variables = { endpoint = "https://{{ api_host }}/v1", token = "{{ api_token }}" }
allowed_outbound_hosts = ["https://{{ api_host }}", "https://{{ optional_host }}"]
environment = { LITERAL = "{{ api_host }}" }
"#;
        let path = Path::new("/app/spin.toml");
        let missing = Manifest::parse_with(path, text, &|_| None).unwrap_err().to_string();
        assert!(missing.contains("variable 'api_token' is required: set SPIN_VARIABLE_API_TOKEN"), "{missing}");
        let env = |name: &str| match name {
            "SPIN_VARIABLE_API_TOKEN" => Some("s3cret".to_owned()),
            "SPIN_VARIABLE_API_HOST" => Some("eu.example.com".to_owned()),
            _ => None,
        };
        let manifest = Manifest::parse_with(path, text, &env).unwrap();
        let id = ComponentId::parse("app").unwrap();
        let vars = manifest.variables.of(&id).unwrap();
        assert_eq!(vars["endpoint"], "https://eu.example.com/v1");
        assert_eq!(vars["token"], "s3cret");
        let component = &manifest.app.component[&id];
        assert_eq!(component.allowed_outbound_hosts, ["https://eu.example.com"], "the empty one is dropped");
        assert_eq!(component.environment["LITERAL"], "{{ api_host }}", "environment is literal, as in Spin");
        assert!(!format!("{manifest:?}").contains("s3cret"), "values stay out of Debug");
        let undeclared = text.replace("{{ api_host }}/v1", "{{ other }}/v1");
        let e = Manifest::parse_with(path, &undeclared, &env).unwrap_err().to_string();
        assert!(e.contains("component.app.variables.endpoint: 'other' is not declared in [variables]"), "{e}");
    }
}
