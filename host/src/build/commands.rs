//! `spindle build`: run each component's `[component.NAME.build]` commands, like `spin build`.

use crate::manifest::{ComponentId, Manifest};
use anyhow::{Context, Result, bail};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs every component's build commands in its `workdir` (relative to the manifest), then
/// checks each component's imports against what it is granted. Says on stderr where it is: a
/// line as each component starts, with its place in the order, and one as it ends, with the
/// time it took (a first build compiles each function's dependencies and takes minutes).
pub fn build_all(manifest: &Manifest) -> Result<()> {
    let started = Instant::now();
    let with_commands: Vec<&ComponentId> = manifest.app.component.iter().filter(|(_, c)| c.build.is_some()).map(|(id, _)| id).collect();
    for (n, id) in with_commands.iter().enumerate() {
        let step = format!("[{}/{}]", n + 1, with_commands.len());
        let took = run_commands(manifest, id, &step)?;
        eprintln!("{step} Built component {id} in {} (total {})", elapsed(took), elapsed(started.elapsed()));
    }
    for id in manifest.app.component.keys() {
        super::imports::check(manifest, id)?;
    }
    eprintln!("Finished building {} components in {}; their imports are granted", with_commands.len(), elapsed(started.elapsed()));
    Ok(())
}

/// `42.1 s`, or `3 min 07 s`.
fn elapsed(took: Duration) -> String {
    let secs = took.as_secs_f64();
    match secs < 60.0 {
        true => format!("{secs:.1} s"),
        false => format!("{} min {:02} s", took.as_secs() / 60, took.as_secs() % 60),
    }
}

/// Runs one component's build commands, if it has any, then checks its imports.
pub fn build_component(manifest: &Manifest, id: &ComponentId) -> Result<()> {
    run_commands(manifest, id, "")?;
    super::imports::check(manifest, id)
}

/// Runs component `id`'s build commands, if it has any, each announced after `step`.
fn run_commands(manifest: &Manifest, id: &ComponentId, step: &str) -> Result<Duration> {
    let started = Instant::now();
    let Some(build) = manifest.app.component.get(id).and_then(|c| c.build.as_ref()) else { return Ok(started.elapsed()) };
    let workdir = manifest.resolve(build.workdir.as_deref().unwrap_or("."));
    for command in build.command.commands() {
        eprintln!("{step}{}Building component {id} in {}: {command}", if step.is_empty() { "" } else { " " }, workdir.display());
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
    Ok(started.elapsed())
}
