//! The app `spindle new` adds to: the folder of its `spin.toml`, which is written last, after
//! the manifest it would become has been validated. Until then, what was created is removed
//! again if anything fails.

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
    /// The component's routes.
    pub routes: Vec<String>,
}

/// An app being added to.
pub struct Project {
    name: String,
    root: PathBuf,
    manifest: PathBuf,
    text: String,
    addition: String,
    routes: Vec<String>,
    workspace: Option<String>,
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    committed: bool,
}

impl Project {
    /// The app of `manifest`, to gain a component `name`: refused when the name is taken, or
    /// its model folder exists. A manifest that does not exist yet is started.
    pub fn open(manifest: &Path, name: &str) -> Result<Self> {
        ComponentId::parse(name)?;
        let root = match manifest.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let text = match std::fs::read_to_string(manifest) {
            Ok(text) => {
                let app = Manifest::parse_with(manifest, &text, &|_| Some(String::new()))?;
                if app.app.component.keys().any(|id| id.as_str() == name) {
                    bail!("{} already has a component '{name}'; spindle new does not overwrite: choose another name", manifest.display());
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
            name: name.to_owned(),
            root,
            manifest: manifest.to_owned(),
            text,
            addition: String::new(),
            routes: Vec::new(),
            workspace: None,
            dirs: Vec::new(),
            files: Vec::new(),
            committed: false,
        };
        project.refuse_existing(&format!("models/{name}"))?;
        Ok(project)
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

    /// Writes `models/NAME/model.onnx` and `model.json`.
    pub fn write_model(&mut self, onnx: &[u8], description: &str) -> Result<()> {
        let dir = format!("models/{}", self.name);
        self.create_dir(&dir)?;
        self.write(&format!("{dir}/model.onnx"), onnx)?;
        self.write(&format!("{dir}/model.json"), description.as_bytes())
    }

    /// Creates the folder `relative`, which must not exist; it is removed if the rest fails.
    pub fn create_dir(&mut self, relative: &str) -> Result<()> {
        let dir = self.root.join(relative);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.dirs.push(dir);
        Ok(())
    }

    /// Writes the file `relative`, inside a folder this project created.
    pub fn write(&mut self, relative: &str, contents: &[u8]) -> Result<()> {
        let path = self.root.join(relative);
        debug_assert!(self.dirs.iter().any(|d| path.starts_with(d)), "{relative} is outside the folders spindle new created");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        self.files.push(PathBuf::from(relative));
        Ok(())
    }

    /// Adds the component, built by the function crate `function` (under `functions/`) and
    /// mounting its model's files, and an HTTP trigger for each of `routes`; `watch` adds to the
    /// files whose change rebuilds it.
    pub fn add_component(&mut self, routes: &[String], description: &str, function: &str, watch: &[String]) {
        let name = &self.name;
        for route in routes {
            self.addition += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{name}\"\n\n");
        }
        let defaults = ["src/**/*.rs", "Cargo.toml", "../sdk/src/**/*.rs"].map(String::from);
        let watch: Vec<toml::Value> = defaults.into_iter().chain(watch.iter().cloned()).map(toml::Value::String).collect();
        self.addition += &format!(
            r#"[component.{name}]
description = {description}
source = "target/wasm32-wasip2/release/{wasm}.wasm"
files = ["models/{name}/model.onnx", "models/{name}/model.json"]
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
        for existing in members.iter().filter_map(|m| m.as_str()) {
            let package = std::fs::read_to_string(self.root.join(existing).join("Cargo.toml"))
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
            if package.as_deref() == Some(self.name.as_str()) {
                bail!("the workspace already has a package '{}' ({existing}); choose another name", self.name);
            }
        }
        members.push(member);
        self.workspace = Some(doc.to_string());
        Ok(())
    }

    /// Validates the manifest with the new component, then writes it (and the workspace).
    pub fn commit(mut self) -> Result<Created> {
        let mut text = self.text.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text = format!("{text}\n{}", self.addition);
        Manifest::parse_with(&self.manifest, &text, &|_| Some(String::new()))
            .context("the manifest with the new component would be invalid")?;
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
        Ok(Created { manifest: self.manifest.clone(), files: std::mem::take(&mut self.files), routes: std::mem::take(&mut self.routes) })
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if !self.committed {
            for dir in self.dirs.iter().rev() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
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
