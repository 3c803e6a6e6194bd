//! The app `spindle new` adds to: the folder of its `spin.toml`. Files are staged in memory;
//! nothing is written until the manifest the app would have has been validated, and the
//! manifest is written last. If a write fails, what was created is removed again.

use crate::manifest::{ComponentId, Manifest};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What `spindle new` wrote.
#[derive(Debug)]
pub struct Created {
    /// The manifest it added to (or created).
    pub manifest: PathBuf,
    /// Files it wrote, relative to the manifest's folder.
    pub files: Vec<PathBuf>,
    /// The component's id.
    pub component: String,
    /// The component's routes.
    pub routes: Vec<String>,
}

/// An app being added to.
pub struct Project {
    model: String,
    id: String,
    root: PathBuf,
    manifest: PathBuf,
    text: String,
    addition: String,
    routes: Vec<String>,
    workspace: Option<String>,
    dirs: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    created: Vec<PathBuf>,
    committed: bool,
}

impl Project {
    /// The app of `manifest`, to gain the model `model` and the component `id` that serves it
    /// (by default the model's name, or that name made a component id): refused when the id is
    /// taken, or the model's folder exists.
    pub fn open(manifest: &Path, model: &str, id: Option<&str>) -> Result<Self> {
        check_model_name(model)?;
        let id = match id {
            Some(id) => id.to_owned(),
            None if ComponentId::parse(model).is_ok() => model.to_owned(),
            None => component_id(model),
        };
        ComponentId::parse(&id)?;
        let name = id.as_str();
        let folder;
        let manifest = match manifest.is_dir() {
            true => {
                folder = manifest.join("spin.toml");
                &folder
            }
            false => manifest,
        };
        let root = match manifest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let text = match std::fs::read_to_string(manifest) {
            Ok(text) => {
                let app = Manifest::parse_with(manifest, &text, &|_| Some(String::new()))?;
                if app.app.component.keys().any(|id| id.as_str() == name) {
                    bail!(
                        "{} already has a component '{name}'; spindle new does not overwrite: choose another name (or --id)",
                        manifest.display()
                    );
                }
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let app = root.canonicalize().ok().and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned()));
                format!(
                    "spin_manifest_version = 2\n\n[application]\nname = \"{}\"\nversion = \"0.1.0\"\n",
                    app.unwrap_or_else(|| "app".into()).replace(['"', '\\'], "")
                )
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", manifest.display())),
        };
        let project = Self {
            model: model.to_owned(),
            id: id.clone(),
            root,
            manifest: manifest.to_owned(),
            text,
            addition: String::new(),
            routes: Vec::new(),
            workspace: None,
            dirs: Vec::new(),
            files: Vec::new(),
            created: Vec::new(),
            committed: false,
        };
        project.refuse_existing(&format!("models/{model}"))?;
        // One that differs only in case could not be checked out on macOS or Windows.
        if let Ok(entries) = std::fs::read_dir(project.root.join("models")) {
            for entry in entries.flatten() {
                if entry.file_name().to_str().is_some_and(|other| other.eq_ignore_ascii_case(model)) {
                    bail!("{} differs from the model name '{model}' only in case; choose another name", entry.path().display());
                }
            }
        }
        Ok(project)
    }

    /// The model's name: its folder under `models/`, its routes, its protocol name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The component's id, which also names a function crate written for it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Fails unless `relative` (what the new component builds from) is in the app's folder.
    pub fn require(&self, relative: &str, what: &str) -> Result<()> {
        match self.root.join(relative).exists() {
            true => Ok(()),
            false => bail!("{what} ({relative}) is not beside {}: run spindle new in the Spindle project", self.manifest.display()),
        }
    }

    /// Fails if `relative` exists.
    pub fn refuse_existing(&self, relative: &str) -> Result<()> {
        match self.root.join(relative).exists() {
            true => bail!(
                "{} already exists; spindle new does not overwrite: choose another name or remove it",
                self.root.join(relative).display()
            ),
            false => Ok(()),
        }
    }

    /// Stages `models/NAME/model.onnx` and `model.json`.
    pub fn write_model(&mut self, onnx: &[u8], description: &str) {
        let dir = format!("models/{}", self.model);
        self.create_dir(&dir);
        self.write(&format!("{dir}/model.onnx"), onnx);
        self.write(&format!("{dir}/model.json"), description.as_bytes());
    }

    /// Stages the folder `relative`, which must not exist when the project is committed.
    pub fn create_dir(&mut self, relative: &str) {
        self.dirs.push(relative.to_owned());
    }

    /// Stages the file `relative`, inside a staged folder.
    pub fn write(&mut self, relative: &str, contents: &[u8]) {
        debug_assert!(
            self.dirs.iter().any(|d| Path::new(relative).starts_with(d)),
            "{relative} is outside the folders spindle new creates"
        );
        self.files.push((relative.to_owned(), contents.to_vec()));
    }

    /// Adds the component, built by the function crate `function` (under `functions/`) and
    /// mounting its model's files, and an HTTP trigger for each of `routes`; `watch` adds to the
    /// files whose change rebuilds it.
    pub fn add_component(&mut self, routes: &[String], description: &str, function: &str, watch: &[String]) {
        let (name, model) = (&self.id, &self.model);
        for route in routes {
            self.addition += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{name}\"\n\n");
        }
        let defaults = ["src/**/*.rs", "Cargo.toml", "../sdk/src/**/*.rs"].map(String::from);
        let watch: Vec<toml::Value> = defaults.into_iter().chain(watch.iter().cloned()).map(toml::Value::String).collect();
        self.addition += &format!(
            r#"[component.{name}]
description = {description}
source = "target/wasm32-wasip2/release/{wasm}.wasm"
files = ["models/{model}/model.onnx", "models/{model}/model.json"]
[component.{name}.build]
command = "cargo build --target wasm32-wasip2 --release -p {function}"
workdir = "functions/{function}"
watch = {watch}
"#,
            description = toml::Value::String(description.to_owned()),
            watch = toml::Value::Array(watch),
            wasm = function.replace('-', "_"),
        );
        self.routes.extend_from_slice(routes);
    }

    /// Adds `member` to the members of the Cargo workspace beside the manifest, refusing a
    /// package name one of them has.
    pub fn add_workspace_member(&mut self, member: &str) -> Result<()> {
        let path = self.root.join("Cargo.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading the Cargo workspace {}", path.display()))?;
        let mut doc: toml_edit::DocumentMut = text.parse().with_context(|| format!("parsing {}", path.display()))?;
        let Some(members) = doc.get_mut("workspace").and_then(|w| w.get_mut("members")).and_then(|m| m.as_array_mut()) else {
            bail!("{} has no [workspace] members list to add {member} to", path.display());
        };
        // Cargo treats `-` and `_` alike in a package's library name and output file.
        let same = |package: &str| package.replace('-', "_") == self.id.replace('-', "_");
        let patterns: Vec<String> =
            members.iter().filter_map(|m| m.as_str()).map(|m| self.root.join(m).to_string_lossy().into_owned()).collect();
        for folder in patterns.iter().flat_map(|p| glob::glob(p).into_iter().flatten().flatten()) {
            let package = std::fs::read_to_string(folder.join("Cargo.toml"))
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
            if let Some(package) = package.filter(|p| same(p)) {
                bail!("the workspace already has a package '{package}' ({}); choose another name", folder.display());
            }
        }
        members.push(member);
        self.workspace = Some(doc.to_string());
        Ok(())
    }

    /// Validates the manifest with the new component; then writes the staged files, the
    /// workspace, and the manifest last.
    pub fn commit(mut self) -> Result<Created> {
        let mut text = self.text.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text = format!("{text}\n{}", self.addition);
        Manifest::parse_with(&self.manifest, &text, &|_| Some(String::new()))
            .context("the manifest with the new component would be invalid")?;
        for dir in self.dirs.clone() {
            self.make_dir(&self.root.join(&dir))?;
        }
        for (relative, contents) in &self.files {
            let path = self.root.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        }
        let cargo = self.root.join("Cargo.toml");
        let before = match &self.workspace {
            Some(workspace) => Some((std::fs::read_to_string(&cargo)?, replace(&cargo, workspace)?).0),
            None => None,
        };
        if let Err(e) = replace(&self.manifest, &text) {
            if let Some(before) = before {
                let _ = replace(&cargo, &before);
            }
            return Err(e);
        }
        self.committed = true;
        let files = self.files.iter().map(|(relative, _)| PathBuf::from(relative)).collect();
        Ok(Created { manifest: self.manifest.clone(), files, component: self.id.clone(), routes: std::mem::take(&mut self.routes) })
    }

    /// Creates `dir`, which must not exist, and the parents it lacks, each removed again if
    /// the project is not committed.
    fn make_dir(&mut self, dir: &Path) -> Result<()> {
        let mut missing: Vec<&Path> = dir.ancestors().skip(1).take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
        missing.reverse();
        for parent in missing {
            std::fs::create_dir(parent).with_context(|| format!("creating {}", parent.display()))?;
            self.created.push(parent.to_owned());
        }
        std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        self.created.push(dir.to_owned());
        Ok(())
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if !self.committed {
            for dir in self.created.iter().rev() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Fails unless `name` is a model name Triton's clients can send and a folder can carry.
fn check_model_name(name: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    // No trailing '.': Windows drops it from a folder's name.
    let ends = name.starts_with(|c: char| c.is_ascii_alphanumeric()) && !name.ends_with('.');
    if name.is_empty() || name.len() > 128 || !ends || !name.bytes().all(allowed) {
        bail!(
            "invalid model name '{name}': use letters, digits, '_', '-' and '.', starting with a letter or digit and not ending \
             with '.' (e.g. 'resnet50_v1.5'), at most 128"
        );
    }
    if name == "stats" {
        bail!("'stats' is taken by the statistics endpoint (/v2/models/stats): choose another model name");
    }
    Ok(())
}

/// `model` as a component id: lowercase, each run of other characters a `-`, and `model-` in
/// front of one that would start with a digit (`ResNet50_v1.5` is `resnet50-v1-5`).
fn component_id(model: &str) -> String {
    let mut id = String::new();
    for c in model.chars().map(|c| c.to_ascii_lowercase()) {
        match c {
            'a'..='z' | '0'..='9' => id.push(c),
            _ if !id.is_empty() && !id.ends_with('-') => id.push('-'),
            _ => {}
        }
    }
    let id = id.trim_end_matches('-');
    match id.starts_with(|c: char| c.is_ascii_lowercase()) {
        true => id.to_owned(),
        false => format!("model-{id}"),
    }
}

/// Writes `path` whole or not at all.
fn replace(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing {}", path.display()))?;
    let permissions =
        std::fs::metadata(path).map(|m| m.permissions()).unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
    file.as_file().set_permissions(permissions).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_become_component_ids() {
        assert_eq!(component_id("resnet50_v1.5"), "resnet50-v1-5");
        assert_eq!(component_id("ResNet50"), "resnet50");
        assert_eq!(component_id("3d-unet"), "model-3d-unet");
        assert_eq!(component_id("a..b__c."), "a-b-c");
        for model in ["resnet50_v1.5", "ResNet50", "3d-unet", "a..b__c.", "x"] {
            assert!(ComponentId::parse(&component_id(model)).is_ok(), "{model}");
        }
    }

    #[test]
    fn model_names_stay_inside_one_path_segment() {
        for good in ["cifar10", "resnet50_v1.5", "ResNet50", "3d-unet"] {
            assert!(check_model_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "v1.", "a/b", "a b", "a%2f", "a?b", "stats", &"a".repeat(129)] {
            assert!(check_model_name(bad).is_err(), "{bad:?}");
        }
    }
}
