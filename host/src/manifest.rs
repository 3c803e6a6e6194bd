//! `spin.toml` (manifest version 2), parsed strictly.
//!
//! Every table denies unknown keys, so a typo is an error that names the file, line and key.
//! Spindle's own settings live under `[component.NAME.tool.spindle]`, which Spin ignores, so the
//! same file stays valid for `spin up`. Cross-field checks (trigger → component, routes, mounts)
//! run after parsing, in [`Manifest::validate`].

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A parsed and validated manifest, with the folder its relative paths start from.
#[derive(Debug)]
pub struct Manifest {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub app: AppManifest,
    /// Spindle settings per component, from `tool.spindle` (defaults where absent).
    pub spindle: BTreeMap<ComponentId, SpindleSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<ComponentId, Component>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub route: RouteSpec,
    pub component: ComponentId,
    #[serde(default)]
    pub executor: Option<Executor>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteSpec {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    pub private: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum Executor {
    Spin,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub files: Vec<FileMount>,
    #[serde(default)]
    pub exclude_files: Vec<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<BuildConfig>,
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
}

/// An entry of `files`: a glob relative to the manifest (mounted at the same path under `/`),
/// or a directory mounted at a destination.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    Pattern(String),
    Placement(Placement),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    pub command: BuildCommand,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BuildCommand {
    One(String),
    Many(Vec<String>),
}

impl BuildCommand {
    pub fn commands(&self) -> Vec<&str> {
        match self {
            BuildCommand::One(c) => vec![c.as_str()],
            BuildCommand::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

/// Spindle-only settings for one component (`[component.NAME.tool.spindle]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpindleSettings {
    /// Linear memory limit per instance, in MiB.
    #[serde(default)]
    pub memory_limit_mib: Option<u64>,
    /// Wall-clock deadline per request, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Requests this component runs at once.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    /// Requests that may wait for a slot before new ones get 503.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// Inference engine: `auto`, `tract` or `onnxruntime`.
    #[serde(default)]
    pub engine: Option<crate::nn::policy::EngineChoice>,
    /// Device: `auto`, `cpu` or `gpu`.
    #[serde(default)]
    pub device: Option<crate::nn::policy::DeviceChoice>,
}

/// A component id: lowercase words of letters and digits joined by `-` or `_` (Spin's rule).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(String);

impl ComponentId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let starts_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if starts_ok && s.split(['-', '_']).all(ok_word) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid component id '{s}': use lowercase letters and digits, words joined by '-' (e.g. 'cifar10', 'my-model')"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ComponentId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid manifest {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: path.to_owned(), message };
        let app: AppManifest = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        let spindle = validate(&app).map_err(invalid)?;
        Ok(Self { path: path.to_owned(), dir, app, spindle })
    }

    /// Resolves a manifest-relative path.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

fn validate(app: &AppManifest) -> Result<BTreeMap<ComponentId, SpindleSettings>, String> {
    if app.spin_manifest_version != 2 {
        return Err(format!("spin_manifest_version must be 2, found {}", app.spin_manifest_version));
    }
    for (i, trigger) in app.trigger.http.iter().enumerate() {
        if !app.component.contains_key(&trigger.component) {
            return Err(format!(
                "trigger.http[{i}] names component '{}', which is not defined (defined: {})",
                trigger.component,
                app.component.keys().map(ComponentId::as_str).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut spindle = BTreeMap::new();
    for (id, component) in &app.component {
        for mount in &component.files {
            if let FileMount::Placement(p) = mount {
                if !p.destination.starts_with('/') {
                    return Err(format!(
                        "component.{id}.files: destination '{}' must be an absolute path",
                        p.destination
                    ));
                }
            }
        }
        let settings = match component.tool.get("spindle") {
            None => SpindleSettings::default(),
            Some(table) => SpindleSettings::deserialize(table.clone())
                .map_err(|e| format!("component.{id}.tool.spindle: {e}"))?,
        };
        spindle.insert(id.clone(), settings);
    }
    crate::routes::Router::build(app).map_err(|e| e.to_string())?;
    Ok(spindle)
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
