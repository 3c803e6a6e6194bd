//! `spindle build`: run each component's `[component.NAME.build]` commands, like `spin build`.

use crate::manifest::{ComponentId, Manifest};
use anyhow::{Context, Result, bail};
use std::process::Command;

/// Runs every component's build commands in its `workdir` (relative to the manifest), then
/// checks each component's imports against what it is granted.
pub fn build_all(manifest: &Manifest) -> Result<()> {
    for id in manifest.app.component.keys() {
        run_commands(manifest, id)?;
    }
    for id in manifest.app.component.keys() {
        super::imports::check(manifest, id)?;
    }
    eprintln!("Finished building all components");
    Ok(())
}

/// Runs one component's build commands, if it has any, then checks its imports.
pub fn build_component(manifest: &Manifest, id: &ComponentId) -> Result<()> {
    run_commands(manifest, id)?;
    super::imports::check(manifest, id)
}

fn run_commands(manifest: &Manifest, id: &ComponentId) -> Result<()> {
    let Some(build) = manifest.app.component.get(id).and_then(|c| c.build.as_ref()) else { return Ok(()) };
    let workdir = manifest.resolve(build.workdir.as_deref().unwrap_or("."));
    for command in build.command.commands() {
        eprintln!("Building component {id} in {}: {command}", workdir.display());
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&workdir)
            .envs(&build.environment)
            .status()
            .with_context(|| format!("component '{id}': running `{command}`"))?;
        if !status.success() {
            bail!("component '{id}': build command `{command}` failed ({status})");
        }
    }
    Ok(())
}
