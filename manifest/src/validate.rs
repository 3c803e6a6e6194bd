//! The checks that span fields, run once the tables have parsed; each failure is an [`Invalid`]
//! whose text names the table and says what was expected.

use crate::{
    AppManifest, AppSettings, ComponentId, ComponentRef, Executor, FileMount, RouteError, RouteSpec, Router, Source, SpindleSettings,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// Not TOML, or a table or field that the manifest does not allow (toml's own text, which
    /// names the line and the key).
    #[error("{0}")]
    Syntax(String),
    /// `spin_manifest_version` is not 2.
    #[error("spin_manifest_version must be 2, found {0}")]
    Version(u32),
    /// A field of Spin's manifest that Spindle does not implement.
    #[error("{field}: not supported by Spindle ({why})")]
    Unsupported {
        /// Where it is, as `component.NAME.key_value_stores`.
        field: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// A variable or a `{{ name }}` template that cannot be resolved.
    #[error("{0}")]
    Variable(String),
    /// A trigger names a component the manifest does not define.
    #[error("trigger.http[{index}] names component '{component}', which is not defined (defined: {defined})")]
    UndefinedComponent {
        /// The trigger's index.
        index: usize,
        /// The component it names.
        component: ComponentId,
        /// The components there are, comma-separated.
        defined: String,
    },
    /// A directory mount's destination is relative.
    #[error("component.{component}.files: destination '{destination}' must be an absolute path")]
    RelativeDestination {
        /// The component.
        component: ComponentId,
        /// The destination as written.
        destination: String,
    },
    /// A directory mount's source lies outside the folder mounts may come from.
    #[error(
        "component.{component}.files: source '{source_dir}' is outside the app folder{root}; name a folder above it as files_root under [application.tool.spindle] to allow it"
    )]
    SourceOutsideRoot {
        /// The component.
        component: ComponentId,
        /// The source as written.
        source_dir: String,
        /// ` (files_root '…')` when one is set.
        root: String,
    },
    /// `[application.tool.spindle]` does not parse.
    #[error("application.tool.spindle: {0}")]
    AppSettings(String),
    /// `[component.NAME.tool.spindle]` does not parse.
    #[error("component.{component}.tool.spindle: {message}")]
    SpindleSettings {
        /// The component.
        component: ComponentId,
        /// toml's text.
        message: String,
    },
    /// The routes do not make a router.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Refuses, by name, the fields of Spin's manifest that Spindle does not implement.
fn unsupported(app: &AppManifest) -> Result<(), Invalid> {
    let refuse = |field: String, why: &str| Err(Invalid::Unsupported { field, why: why.to_owned() });
    if let Some(kind) = app.trigger.other.keys().next() {
        return refuse(format!("trigger.{kind}"), "Spindle serves HTTP triggers only");
    }
    for (kind, settings) in &app.application.trigger {
        let base_is_root = settings.get("base").and_then(toml::Value::as_str) == Some("/");
        if kind != "http" || settings.len() != 1 || !base_is_root {
            return refuse(format!("application.trigger.{kind}"), "only [application.trigger.http] base = \"/\" is accepted");
        }
    }
    for (index, trigger) in app.trigger.http.iter().enumerate() {
        let field = |name: &str| format!("trigger.http[{index}].{name}");
        if let Some(ComponentRef::Inline(_)) = trigger.component {
            return refuse(field("component"), "write the component as [component.NAME] and name it here");
        }
        if let Some(Executor::Wagi { .. }) = trigger.executor {
            return refuse(field("executor"), "WAGI components are not run; use the http executor");
        }
        for (name, present) in [
            ("components", trigger.components.is_some()),
            ("dependencies", trigger.dependencies.is_some()),
            ("static_response", trigger.static_response.is_some()),
        ] {
            if present {
                return refuse(field(name), "answers come from the trigger's component alone");
            }
        }
        if let RouteSpec::Path(route) = &trigger.route
            && route.split('/').any(|segment| segment.starts_with(':') || segment == "*")
        {
            return refuse(field("route"), "routes are exact or end in /...; ':name' and '*' segments are not matched");
        }
    }
    for (id, component) in &app.component {
        let field = |name: &str| format!("component.{id}.{name}");
        if let Source::Remote(_) = component.source {
            return refuse(field("source"), "download the component and set source to the local .wasm file");
        }
        if !component.allowed_http_hosts.is_empty() {
            return refuse(field("allowed_http_hosts"), "deprecated by Spin: list \"https://HOST\" entries in allowed_outbound_hosts");
        }
        if let Some(host) = component.allowed_outbound_hosts.iter().find(|h| h.contains(".spin.internal") || h.contains("://self")) {
            return refuse(field("allowed_outbound_hosts"), &format!("'{host}': service chaining to other components is not provided"));
        }
        for (name, granted, why) in [
            ("key_value_stores", !component.key_value_stores.is_empty(), "no key-value stores are provided"),
            ("sqlite_databases", !component.sqlite_databases.is_empty(), "no SQLite databases are provided"),
            ("ai_models", !component.ai_models.is_empty(), "models are served through wasi:nn: mount the ONNX file in files"),
            ("dependencies", !component.dependencies.is_empty(), "components are not composed; build the dependency into the component"),
        ] {
            if granted {
                return refuse(field(name), why);
            }
        }
    }
    Ok(())
}

/// `namespace:package/interface` or `namespace:package/*`, without a version.
fn is_interface_pattern(pattern: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match pattern.split_once(':').and_then(|(ns, rest)| Some((ns, rest.split_once('/')?))) {
        Some((namespace, (package, interface))) => word(namespace) && word(package) && (interface == "*" || word(interface)),
        None => false,
    }
}

fn not_an_interface(pattern: &str) -> String {
    format!("imports: '{pattern}' is not an interface ('wasi:sockets/tcp') or a package ('wasi:sockets/*')")
}

/// What validation produces besides a yes.
pub(super) struct Validated {
    pub settings: AppSettings,
    pub spindle: BTreeMap<ComponentId, SpindleSettings>,
    pub router: Router,
}

/// Checks `app`, whose relative paths start from `dir`.
pub(super) fn validate(app: &AppManifest, dir: &Path) -> Result<Validated, Invalid> {
    if app.spin_manifest_version != 2 {
        return Err(Invalid::Version(app.spin_manifest_version));
    }
    unsupported(app)?;
    for (index, trigger) in app.trigger.http.iter().enumerate() {
        let Some(component) = trigger.component_id() else {
            return Err(Invalid::Syntax(format!("trigger.http[{index}]: missing field `component`")));
        };
        if !app.component.contains_key(component) {
            return Err(Invalid::UndefinedComponent {
                index,
                component: component.clone(),
                defined: app.component.keys().map(ComponentId::as_str).collect::<Vec<_>>().join(", "),
            });
        }
    }
    let settings = match app.application.tool.get("spindle") {
        None => AppSettings::default(),
        Some(table) => AppSettings::deserialize(table.clone()).map_err(|e| Invalid::AppSettings(e.to_string()))?,
    };
    if let Some(bad) = settings.imports.iter().find(|i| !is_interface_pattern(i)) {
        return Err(Invalid::AppSettings(not_an_interface(bad)));
    }
    let root = lexical(&dir.join(settings.files_root.as_deref().unwrap_or(".")));
    let mut spindle = BTreeMap::new();
    for (id, component) in &app.component {
        for mount in &component.files {
            let FileMount::Directory(d) = mount else { continue };
            if !d.destination.starts_with('/') {
                return Err(Invalid::RelativeDestination { component: id.clone(), destination: d.destination.clone() });
            }
            if !inside(&lexical(&dir.join(&d.source)), &root) {
                return Err(Invalid::SourceOutsideRoot {
                    component: id.clone(),
                    source_dir: d.source.clone(),
                    root: settings.files_root.as_ref().map(|r| format!(" (files_root '{r}')")).unwrap_or_default(),
                });
            }
        }
        let settings = match component.tool.get("spindle") {
            None => SpindleSettings::default(),
            Some(table) => SpindleSettings::deserialize(table.clone())
                .map_err(|e| Invalid::SpindleSettings { component: id.clone(), message: e.to_string() })?,
        };
        if let Some(bad) = settings.imports.iter().find(|i| !is_interface_pattern(i)) {
            return Err(Invalid::SpindleSettings { component: id.clone(), message: not_an_interface(bad) });
        }
        spindle.insert(id.clone(), settings);
    }
    let router = Router::build(app)?;
    Ok(Validated { settings, spindle, router })
}

/// Whether `path` lies in `root` (both lexical).
fn inside(path: &Path, root: &Path) -> bool {
    path.strip_prefix(root).is_ok_and(|rest| !matches!(rest.components().next(), Some(Component::ParentDir)))
}

/// A relative path with `.` dropped and `..` applied, leading `..`s kept: `a/../../b` → `../b`.
pub(super) fn lexical(path: &Path) -> PathBuf {
    let mut parts: Vec<Component<'_>> = Vec::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(parts.last(), Some(Component::Normal(_))) => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_must_stay_inside_the_root() {
        let app = Path::new("/srv/app");
        let inside_of = |path: &str, root: &str| inside(&lexical(&app.join(path)), &lexical(&app.join(root)));
        assert!(inside_of("models/cifar10", "."));
        assert!(inside_of("./models/../models", "."));
        assert!(!inside_of("../models", "."));
        assert!(!inside_of("models/../../x", "."));
        assert!(inside_of("../../models/cifar10", "../.."));
        assert!(!inside_of("../../../etc", "../.."));
        assert!(!inside_of("..", "models"));
        assert!(!inside_of("/etc", "."));
        assert!(inside_of("/srv/app/models", "."));
        assert!(inside_of("/opt/models/m", "/opt/models"));
    }

    #[test]
    fn import_grants_are_interfaces_or_packages() {
        for good in ["wasi:sockets/tcp", "wasi:sockets/*", "fermyon:spin/key-value"] {
            assert!(is_interface_pattern(good), "{good}");
        }
        for bad in ["wasi:sockets/tcp@0.2.6", "wasi:sockets", "sockets/tcp", "wasi:/tcp", "*", "wasi:Sockets/tcp"] {
            assert!(!is_interface_pattern(bad), "{bad}");
        }
    }
}
