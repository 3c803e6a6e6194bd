//! The manifest's tables as serde types: what `spin.toml` may say, and nothing else.
//!
//! Every table denies unknown keys, and declares every key Spin's manifest v2 defines, so that a
//! Spin manifest never meets "unknown field". Fields Spindle reads are documented with what it
//! does with them; those it only accepts change nothing at run time; those it does not support
//! are refused after parsing, naming the field ([`crate::validate`]).

use crate::ComponentId;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file, as parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// Must be 2.
    pub spin_manifest_version: u32,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`: the app's variables, which component `variables` and
    /// `allowed_outbound_hosts` may name in `{{ name }}` templates.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// `[[trigger.http]]` and friends.
    #[serde(default)]
    pub trigger: Triggers,
    /// `[component.NAME]`, by id.
    #[serde(default)]
    pub component: BTreeMap<ComponentId, Component>,
}

/// `[application]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The app's name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// A description.
    #[serde(default)]
    pub description: String,
    /// Its authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Spin's deployment targets (a catalogue name, `{ url }` or `{ path }`): accepted, unused.
    #[serde(default)]
    pub targets: Vec<toml::Value>,
    /// App-wide settings per trigger type: for HTTP only the deprecated `base = "/"`.
    #[serde(default)]
    pub trigger: BTreeMap<String, toml::Table>,
    /// Other tools' settings: ignored.
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
}

/// `[variables]` entry: exactly one of `required = true` or a `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// A value must come from `SPIN_VARIABLE_NAME`, or the app does not start.
    #[serde(default)]
    pub required: bool,
    /// The value when `SPIN_VARIABLE_NAME` is not set.
    #[serde(default)]
    pub default: Option<String>,
    /// Never logged.
    #[serde(default)]
    pub secret: bool,
}

/// `[trigger]`: HTTP triggers; any other type is refused by name.
#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    /// `[[trigger.http]]`.
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    /// `[[trigger.redis]]` and other types.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// One `[[trigger.http]]`: a route to a component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    /// An optional trigger id.
    #[serde(default)]
    pub id: Option<String>,
    /// The route, or `{ private = true }`.
    pub route: RouteSpec,
    /// The component it runs: an id, or (refused) a component written inline. Spin lets a
    /// `static_response` stand in for it; Spindle refuses both then.
    #[serde(default)]
    pub component: Option<ComponentRef>,
    /// Spin's HTTP executor (`http`, or its alias `spin`); `wagi` is refused.
    #[serde(default)]
    pub executor: Option<Executor>,
    /// Spin's trigger-specific extra components: refused.
    #[serde(default)]
    pub components: Option<toml::Value>,
    /// Spin's HTTP middleware (`dependencies.middleware`): refused.
    #[serde(default)]
    pub dependencies: Option<toml::Value>,
    /// An answer Spin's host writes without a component: refused.
    #[serde(default)]
    pub static_response: Option<toml::Value>,
}

impl HttpTrigger {
    /// The id of the component it runs, when it names one.
    pub fn component_id(&self) -> Option<&ComponentId> {
        self.component.as_ref().and_then(ComponentRef::id)
    }
}

/// A trigger's `component`.
#[derive(Debug)]
pub enum ComponentRef {
    /// `component = "id"`.
    Id(ComponentId),
    /// `component = { source = "…", … }`, a component written inline.
    Inline(toml::Table),
}

/// An id with its own error when it is not one, rather than "no variant matched".
impl<'de> Deserialize<'de> for ComponentRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(id) => ComponentId::parse(&id).map(ComponentRef::Id).map_err(D::Error::custom),
            toml::Value::Table(table) => Ok(ComponentRef::Inline(table)),
            other => Err(D::Error::custom(format!("expected a component id or a table, found {}", other.type_str()))),
        }
    }
}

impl ComponentRef {
    /// The component's id; `None` for one written inline (refused when validated).
    pub fn id(&self) -> Option<&ComponentId> {
        match self {
            ComponentRef::Id(id) => Some(id),
            ComponentRef::Inline(_) => None,
        }
    }
}

/// A trigger's `route`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RouteSpec {
    /// A path: exact (`/a/b`) or a wildcard tail (`/a/...`).
    Path(String),
    /// `{ private = true }`: reachable by no route.
    Private(PrivateRoute),
}

/// `route = { private = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    /// Always true in practice.
    pub private: bool,
}

/// A trigger's `executor`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum Executor {
    /// `{ type = "http" }`: the component exports a `wasi:http` handler.
    #[serde(alias = "spin")]
    Http,
    /// `{ type = "wagi" }`: a CGI-style command (refused).
    Wagi {
        /// The command line.
        #[serde(default)]
        argv: Option<String>,
        /// The function to call (deprecated in Spin).
        #[serde(default)]
        entrypoint: Option<String>,
    },
}

/// `[component.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// The component's `.wasm`, relative to the manifest (a URL or registry package is refused).
    pub source: Source,
    /// A description.
    #[serde(default)]
    pub description: String,
    /// What the component may read, mounted read-only.
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Globs of files under `files` not to mount.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Where it may send HTTP requests; entries may hold `{{ variable }}` templates, resolved
    /// when the manifest is loaded.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Spin's deprecated form of `allowed_outbound_hosts`: refused, naming the replacement.
    #[serde(default)]
    pub allowed_http_hosts: Vec<String>,
    /// Its variables: `{{ variable }}` templates over the app's `[variables]`, resolved when the
    /// manifest is loaded.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Spin's key-value stores: refused unless empty.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Spin's SQLite databases: refused unless empty.
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    /// Spin's LLM models: refused unless empty (Spindle serves models through `wasi:nn`).
    #[serde(default)]
    pub ai_models: Vec<String>,
    /// Components composed into this one: refused unless empty.
    #[serde(default)]
    pub dependencies: BTreeMap<String, toml::Value>,
    /// Whether dependencies get this component's grants: inert without dependencies.
    #[serde(default)]
    pub dependencies_inherit_configuration: Option<bool>,
    /// Spin's deployment targets: accepted, unused.
    #[serde(default)]
    pub targets: Option<Vec<toml::Value>>,
    /// Variants used by `spin up --profile NAME`: accepted, unused.
    #[serde(default)]
    pub profile: BTreeMap<String, toml::Table>,
    /// Its environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// How `spindle build` builds it.
    #[serde(default)]
    pub build: Option<BuildConfig>,
    /// Tools' own settings; Spindle reads `tool.spindle` ([`SpindleSettings`]).
    #[serde(default)]
    pub tool: BTreeMap<String, toml::Table>,
}

/// A component's `source`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A file, relative to the manifest.
    Path(String),
    /// `{ url, digest }` or `{ package, version, registry }`: refused.
    Remote(toml::Table),
}

impl Source {
    /// The file, relative to the manifest; `""` for a remote source (refused when validated).
    pub fn path(&self) -> &str {
        match self {
            Source::Path(path) => path,
            Source::Remote(_) => "",
        }
    }
}

/// An entry of `files`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    /// A glob relative to the manifest; each matching file is mounted at the same path under `/`.
    Pattern(String),
    /// A directory mounted at a destination.
    Directory(DirectoryMount),
}

/// `{ source = "dir", destination = "/d" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryMount {
    /// The directory, relative to the manifest.
    pub source: String,
    /// Where the component sees it; absolute.
    pub destination: String,
}

/// `[component.NAME.build]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// One shell command or several, run in order.
    pub command: BuildCommand,
    /// Where they run, relative to the manifest.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Globs whose changes should rebuild the component.
    #[serde(default)]
    pub watch: Vec<String>,
    /// Environment variables for the commands.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

/// A build's `command`: one or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BuildCommand {
    /// One shell command.
    One(String),
    /// Shell commands run in order.
    Many(Vec<String>),
}

impl BuildCommand {
    /// The commands, in order.
    pub fn commands(&self) -> Vec<&str> {
        match self {
            BuildCommand::One(c) => vec![c.as_str()],
            BuildCommand::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

/// Spindle-only settings for the whole app (`[application.tool.spindle]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// The folder, relative to the manifest, that directory mounts may name sources under
    /// (default: the manifest's own folder). Naming a folder above it is an explicit grant.
    #[serde(default)]
    pub files_root: Option<String>,
    /// Bearer tokens for the host's own protocol endpoints (`/v2`, `/v2/models`, statistics,
    /// model readiness); health stays open for probes. Default: open.
    #[serde(default)]
    pub host_access: Option<AccessSource>,
    /// Interfaces every component of the app may import beyond the default grant, as in a
    /// component's `imports`.
    #[serde(default)]
    pub imports: Vec<String>,
}

/// Where a route's bearer tokens come from: exactly one of a file of hashed tokens or an
/// environment variable; never the tokens themselves.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSource {
    /// A file, relative to the manifest, of `PRINCIPAL sha256:HEX` lines (`spindle token add`).
    #[serde(default)]
    pub tokens_file: Option<String>,
    /// An environment variable holding `PRINCIPAL:TOKEN` pairs separated by commas.
    #[serde(default)]
    pub tokens_env: Option<String>,
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
    /// Largest request body accepted, in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// How long a client may take to send its request body, in milliseconds.
    #[serde(default)]
    pub body_timeout_ms: Option<u64>,
    /// Largest response body the component may write, in bytes.
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
    /// Requests this component runs at once.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    /// Requests that may wait for a slot before new ones get 503.
    #[serde(default)]
    pub max_queued_requests: Option<usize>,
    /// Largest model the component may hand `wasi:nn` as bytes (`load`), in bytes.
    #[serde(default)]
    pub max_model_bytes: Option<u64>,
    /// Bytes of models the graphs it compiles from bytes it hands over may add up to.
    #[serde(default)]
    pub max_guest_graph_bytes: Option<u64>,
    /// Host memory one instance may hold in `wasi:nn` tensors, in MiB (default: `memory_limit_mib`).
    #[serde(default)]
    pub nn_memory_limit_mib: Option<u64>,
    /// Lets it load models from bytes whose tensors' sizes do not follow from their inputs'
    /// shapes; the memory such a graph takes inside its engine then goes unchecked.
    #[serde(default)]
    pub allow_dynamic_shapes: Option<bool>,
    /// Interfaces it may import beyond those every component is granted (`wasi:sockets/tcp`,
    /// or `wasi:sockets/*` for a whole package); `spindle build` refuses a component that
    /// imports anything else.
    #[serde(default)]
    pub imports: Vec<String>,
    /// Inference engine: `auto`, `tract` or `onnxruntime`.
    #[serde(default)]
    pub engine: Option<EngineChoice>,
    /// Device: `auto`, `cpu` or `gpu`.
    #[serde(default)]
    pub device: Option<DeviceChoice>,
    /// Bearer tokens a request to this component must carry. Default: open.
    #[serde(default)]
    pub access: Option<AccessSource>,
}

/// An inference engine choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The fastest engine available on the chosen device.
    #[default]
    Auto,
    /// tract, always there.
    Tract,
    /// ONNX Runtime, when its library is found.
    Onnxruntime,
}

/// A device choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A GPU when a GPU engine probes ready, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A GPU, or an error at start.
    Gpu,
}
