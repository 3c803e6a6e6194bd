//! The checks that span fields, run once the tables have parsed; each failure is an [`Invalid`]
//! whose text names the table and says what was expected.

use super::{AppManifest, ComponentId, FileMount, RouteError, Router, SpindleSettings};
use serde::Deserialize;
use std::collections::BTreeMap;

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

/// What validation produces besides a yes.
pub(super) struct Validated {
    pub spindle: BTreeMap<ComponentId, SpindleSettings>,
    pub router: Router,
}

pub(super) fn validate(app: &AppManifest) -> Result<Validated, Invalid> {
    if app.spin_manifest_version != 2 {
        return Err(Invalid::Version(app.spin_manifest_version));
    }
    for (index, trigger) in app.trigger.http.iter().enumerate() {
        if !app.component.contains_key(&trigger.component) {
            return Err(Invalid::UndefinedComponent {
                index,
                component: trigger.component.clone(),
                defined: app.component.keys().map(ComponentId::as_str).collect::<Vec<_>>().join(", "),
            });
        }
    }
    let mut spindle = BTreeMap::new();
    for (id, component) in &app.component {
        for mount in &component.files {
            if let FileMount::Directory(d) = mount
                && !d.destination.starts_with('/')
            {
                return Err(Invalid::RelativeDestination { component: id.clone(), destination: d.destination.clone() });
            }
        }
        let settings = match component.tool.get("spindle") {
            None => SpindleSettings::default(),
            Some(table) => SpindleSettings::deserialize(table.clone())
                .map_err(|e| Invalid::SpindleSettings { component: id.clone(), message: e.to_string() })?,
        };
        spindle.insert(id.clone(), settings);
    }
    let router = Router::build(app)?;
    Ok(Validated { spindle, router })
}
