//! Portable functions: a function composed with the `wasi:nn` provider component
//! (`functions/wasi-nn-provider`, tract in wasm), so it runs on hosts without `wasi:nn` — Spin,
//! Spin-compatible clouds, `wasmtime serve` — with no change to its source.
//!
//! `spindle build --portable` writes `NAME.portable.wasm` beside each function's build output,
//! checks that its imports are only WASI and `wasi:http`, and writes `spin.portable.toml`: the
//! same app with every such component pointing at its portable build.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// The provider's build output, relative to the manifest's folder.
pub const PROVIDER: &str = "target/wasm32-wasip2/release/wasi_nn_provider.wasm";

/// The import names of a component.
pub fn imports(component: &[u8]) -> Result<Vec<String>> {
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes("component", None, component.to_vec(), graph.types_mut())?;
    Ok(graph.types()[package.ty()].imports.keys().cloned().collect())
}

fn is_wasi_nn(import: &str) -> bool {
    import.starts_with("wasi:nn/")
}

/// Plugs the provider's `wasi:nn` exports into the function's `wasi:nn` imports.
pub fn compose(function: &[u8], provider: &[u8]) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let function = Package::from_bytes("function", None, function.to_vec(), graph.types_mut()).context("reading the function")?;
    let function = graph.register_package(function)?;
    let provider = Package::from_bytes("wasi-nn-provider", None, provider.to_vec(), graph.types_mut()).context("reading the provider")?;
    let provider = graph.register_package(provider)?;
    wac_graph::plug(&mut graph, vec![provider], function).context("plugging the provider into the function")?;
    let composed = graph.encode(EncodeOptions::default()).context("encoding the composition")?;
    let left: Vec<String> = imports(&composed)?.into_iter().filter(|i| is_wasi_nn(i)).collect();
    if !left.is_empty() {
        bail!("the composed component still imports {left:?}");
    }
    Ok(composed)
}

/// Where a function's portable build is written: `path/to/NAME.wasm` → `path/to/NAME.portable.wasm`.
pub fn portable_path(source: &Path) -> PathBuf {
    source.with_extension("portable.wasm")
}

/// Composes every component of the manifest that imports `wasi:nn` and writes `spin.portable.toml`.
pub fn build(manifest: &crate::manifest::Manifest) -> Result<PathBuf> {
    let provider_path = manifest.resolve(PROVIDER);
    let provider = std::fs::read(&provider_path).with_context(|| {
        format!(
            "reading the wasi:nn provider {}: build it with `cargo build --target wasm32-wasip2 --release -p wasi-nn-provider`",
            provider_path.display()
        )
    })?;
    let mut text: toml::Table = toml::from_str(&std::fs::read_to_string(&manifest.path)?)?;
    for (id, component) in &manifest.app.component {
        let source = manifest.resolve(component.source.path());
        let wasm = std::fs::read(&source).with_context(|| format!("component '{id}': reading {}", source.display()))?;
        if !imports(&wasm)?.iter().any(|i| is_wasi_nn(i)) {
            continue;
        }
        let composed = compose(&wasm, &provider).with_context(|| format!("component '{id}'"))?;
        let target = portable_path(&source);
        std::fs::write(&target, &composed).with_context(|| format!("writing {}", target.display()))?;
        eprintln!("Composed {id}: {} ({} bytes), imports: WASI and wasi:http only", target.display(), composed.len());
        let entry =
            text.get_mut("component").and_then(|c| c.get_mut(id.as_str())).and_then(|c| c.as_table_mut()).context("manifest layout")?;
        entry
            .insert("source".into(), toml::Value::String(portable_path(Path::new(component.source.path())).to_string_lossy().into_owned()));
        entry.remove("build");
    }
    let out = manifest.path.with_file_name("spin.portable.toml");
    let header = "# Written by `spindle build --portable`: the app with each wasi:nn function replaced by its\n\
                  # portable build, which carries its own wasi:nn. For `spin up`, Spin-compatible clouds and\n\
                  # `spindle up --no-wasi-nn`.\n";
    std::fs::write(&out, format!("{header}{}", toml::to_string(&text)?))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (scripts/test builds it before the tests)", path.display()))
    }

    #[test]
    fn the_composed_function_imports_no_wasi_nn() {
        let function = built("cifar10.wasm");
        assert!(imports(&function).unwrap().iter().any(|i| is_wasi_nn(i)), "the plain build imports wasi:nn");
        let composed = compose(&function, &built("wasi_nn_provider.wasm")).unwrap();
        let left = imports(&composed).unwrap();
        assert!(!left.iter().any(|i| is_wasi_nn(i)), "{left:?}");
        assert!(left.iter().all(|i| i.starts_with("wasi:")), "{left:?}");
    }

    #[test]
    fn a_provider_that_does_not_fit_is_refused() {
        let err = compose(&built("cifar10.wasm"), &built("hello.wasm")).unwrap_err();
        assert!(format!("{err:#}").contains("plugging"), "{err:#}");
    }
}
