//! `spindle build`: run each component's `[component.NAME.build]` commands, like `spin build`.

use crate::manifest::Manifest;
use anyhow::{Context, Result, bail};
use std::process::Command;

/// Runs every component's build commands in its `workdir` (relative to the manifest).
pub fn build_all(manifest: &Manifest) -> Result<()> {
    for (id, component) in &manifest.app.component {
        let Some(build) = &component.build else { continue };
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
    }
    eprintln!("Finished building all components");
    Ok(())
}
