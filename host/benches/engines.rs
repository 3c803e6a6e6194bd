//! Per-call engine time in-process, without wasm or HTTP: `backend::compute` (validation, tensor
//! conversion, the engine) on the cifar10 CNN for each available CPU engine, back to back (caches
//! warm, as in a benchmark loop), with 8 MiB of other memory written between calls (caches cold,
//! as after a request's guest code and HTTP handling), and with the core idle 400 µs between
//! calls (as between one client's requests). Prints a table.
//!
//!     cargo bench -p spindle --bench engines

use spindle::nn::backend::{self, ElementType, RunControl, Tensor};
use spindle::nn::policy::{DeviceChoice, EngineChoice, InferenceEngines};
use std::time::Instant;

const CALLS: usize = 3000;

/// What happens between two calls.
#[derive(Clone, Copy)]
enum Between {
    Nothing,
    /// 8 MiB of other memory written: caches cold, as after a request's guest code.
    Written,
    /// 400 µs asleep: the core idle, as between requests from one client.
    Idle,
}

impl Between {
    fn describe(self) -> &'static str {
        match self {
            Between::Nothing => "nothing",
            Between::Written => "8 MiB written",
            Between::Idle => "400 µs idle",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = std::fs::read(root.join("models/cifar10/model.onnx"))?;
    let engines = InferenceEngines::probe(None, false, 1);
    let input = Tensor {
        dims: vec![1, 32, 32, 3],
        ty: ElementType::F32,
        data: (0..3072).flat_map(|i| ((i % 255) as f32 / 255.0).to_le_bytes()).collect(),
    };
    println!("| engine | between calls | backend::compute per call, median | p99 | calls |");
    println!("|---|---|---|---|---|");
    let mut other = vec![0u8; 8 << 20];
    let control = RunControl::default();
    for choice in [EngineChoice::Tract, EngineChoice::Onnxruntime] {
        let placement = match engines.place(choice, DeviceChoice::Cpu) {
            Ok(p) => p,
            Err(e) => {
                println!("| {choice:?} | | skipped: {e} | | |");
                continue;
            }
        };
        let graph = backend::load(placement.backend.as_ref(), &model)?;
        for between in [Between::Nothing, Between::Written, Between::Idle] {
            let mut micros = Vec::with_capacity(CALLS);
            for i in 0..CALLS + 200 {
                match between {
                    Between::Nothing => {}
                    Between::Written => {
                        other.iter_mut().step_by(64).for_each(|b| *b = b.wrapping_add(i as u8));
                        std::hint::black_box(&other);
                    }
                    Between::Idle => std::thread::sleep(std::time::Duration::from_micros(400)),
                }
                let started = Instant::now();
                backend::compute(graph.as_ref(), vec![("input".into(), input.clone())], &control)?;
                if i >= 200 {
                    micros.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
            micros.sort_by(f64::total_cmp);
            println!(
                "| {} | {} | {:.1} µs | {:.1} µs | {CALLS} |",
                placement.backend.name(),
                between.describe(),
                micros[CALLS / 2],
                micros[CALLS * 99 / 100]
            );
        }
    }
    Ok(())
}
