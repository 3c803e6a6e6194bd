//! Per-request instance cost: a fresh `Store` plus instantiation from the `InstancePre`, for each
//! component of a manifest (default: tests/fixtures/spin.toml's `hello` and the cifar10 function).
//! Prints a table; asserts nothing.
//!
//!     cargo bench -p spindle --bench instantiate

use spindle::manifest::Manifest;
use spindle::runtime::{App, HostOptions, Limits};
use std::path::Path;
use std::time::Instant;

const ROUNDS: usize = 2000;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = Manifest::load(&root.join("tests/fixtures/spin.toml"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = App::build(&manifest, &Limits::default(), &HostOptions::default())?;
        println!("| component | fresh Store + instantiate, median | p99 | rounds |");
        println!("|---|---|---|---|");
        for id in ["hello", "cifar10"] {
            let component = app.components().into_iter().find(|c| c.id.as_str() == id).cloned().expect(id);
            let pre = app.instance_pre(&component).await?;
            let mut micros = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                let started = Instant::now();
                let mut store = app.new_store(&component, Instant::now() + std::time::Duration::from_secs(60))?;
                let proxy = pre.instantiate_async(&mut store).await.map_err(anyhow::Error::from)?;
                micros.push(started.elapsed().as_secs_f64() * 1e6);
                drop((proxy, store));
            }
            micros.sort_by(f64::total_cmp);
            println!("| {id} | {:.1} µs | {:.1} µs | {ROUNDS} |", micros[ROUNDS / 2], micros[ROUNDS * 99 / 100]);
        }
        anyhow::Ok(())
    })
}
