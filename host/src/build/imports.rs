//! Each built component's imports, checked against what it is granted, so that no function
//! gains a capability (a new WASI interface, outbound HTTP, sockets) without a change to its
//! manifest that a reviewer sees.
//!
//! Every component is granted [`GRANTED`]: what a function needs to answer HTTP and run
//! models. `allowed_outbound_hosts` also grants outbound HTTP; anything else is named in
//! `[component.NAME.tool.spindle] imports` (or for every component, `[application.tool.spindle]
//! imports`), as interfaces (`wasi:sockets/tcp`) or whole packages (`wasi:sockets/*`), without
//! versions.

use crate::manifest::{ComponentId, Manifest};
use anyhow::{Context, Result, bail};

/// Interfaces every component may import.
pub const GRANTED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:cli/types",
    "wasi:clocks/*",
    "wasi:random/*",
    "wasi:io/*",
    "wasi:filesystem/*",
    "wasi:http/types",
    "wasi:nn/*",
    "spin:variables/variables",
];

/// Granted by a non-empty `allowed_outbound_hosts`.
const OUTBOUND: &[&str] = &["wasi:http/outgoing-handler", "wasi:http/client"];

/// Whether `import` (`wasi:io/streams@0.2.6`) is one of `patterns`.
fn granted(import: &str, patterns: &[impl AsRef<str>]) -> bool {
    let interface = import.split_once('@').map_or(import, |(name, _)| name);
    patterns.iter().map(AsRef::as_ref).any(|p| match p.strip_suffix("/*") {
        Some(package) => interface.split_once('/').is_some_and(|(pkg, _)| pkg == package),
        None => interface == p,
    })
}

/// The imports of component `id`'s `.wasm` that it is not granted.
pub fn ungranted(manifest: &Manifest, id: &ComponentId) -> Result<Vec<String>> {
    let component = &manifest.app.component[id];
    let path = manifest.resolve(component.source.path());
    let bytes = std::fs::read(&path).with_context(|| format!("component '{id}': reading {}", path.display()))?;
    let imports =
        super::portable::imports(&bytes).with_context(|| format!("component '{id}': reading the imports of {}", path.display()))?;
    let extra = [manifest.settings(id).imports, manifest.settings.imports.clone()].concat();
    let outbound = if component.allowed_outbound_hosts.is_empty() { &[][..] } else { OUTBOUND };
    Ok(imports.into_iter().filter(|i| !granted(i, GRANTED) && !granted(i, outbound) && !granted(i, &extra)).collect())
}

/// Fails when component `id` imports what it is not granted, naming each import and where to
/// grant it.
pub fn check(manifest: &Manifest, id: &ComponentId) -> Result<()> {
    let ungranted = ungranted(manifest, id)?;
    if !ungranted.is_empty() {
        bail!(
            "component '{id}' imports {} that it is not granted: {}. If it should, grant {} in \
             [component.{id}.tool.spindle] imports (or allowed_outbound_hosts for outbound HTTP)",
            if ungranted.len() == 1 { "an interface" } else { "interfaces" },
            ungranted.join(", "),
            if ungranted.len() == 1 { "it" } else { "them" },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::granted;

    #[test]
    fn interfaces_and_packages_match_without_versions() {
        assert!(granted("wasi:io/streams@0.2.6", &["wasi:io/*"]));
        assert!(granted("wasi:http/types@0.2.6", &["wasi:http/types"]));
        assert!(!granted("wasi:http/outgoing-handler@0.2.6", &["wasi:http/types", "wasi:io/*"]));
        assert!(!granted("wasi:iox/streams@0.2.6", &["wasi:io/*"]));
        assert!(!granted("wasi:sockets/tcp@0.2.6", super::GRANTED));
        assert!(granted("wasi:sockets/tcp@0.2.6", &["wasi:sockets/tcp"]));
    }
}
