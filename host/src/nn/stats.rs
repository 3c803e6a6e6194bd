//! What the host saw of one named model's computes, in the shape of Triton's statistics
//! extension (`GET /v2/models/{m}/stats`): every `wasi:nn` compute on the model counts, whichever
//! route its request came in by, since the host sees the computes and the function does not.
//!
//! Per compute: `success` or `fail` (count and time from the compute call to its answer),
//! `queue` (waiting to join a batch and for an engine slot), `compute_input` (merging it into
//! its batch), `compute_infer` (the engine's run) and `compute_output` (splitting its rows
//! out). Per engine call: `execution_count` and `batch_stats` by batch size; `inference_count`
//! counts rows, as Triton's does.

use crate::telemetry::metrics::ModelMetrics;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count and the nanoseconds it took, as Triton reports each duration.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        json!({"count": self.count.load(Ordering::Relaxed), "ns": self.ns.load(Ordering::Relaxed)})
    }
}

/// How one compute went, from the host's side.
#[derive(Clone, Copy, Debug, Default)]
pub struct ComputeTimes {
    /// Waiting to join a batch and for an engine slot.
    pub queue: Duration,
    /// Merging its inputs into the batch.
    pub input: Duration,
    /// The engine's run.
    pub infer: Duration,
    /// Splitting its rows out of the batch's outputs.
    pub output: Duration,
}

/// One named model's statistics, within one component.
#[derive(Default)]
pub struct ModelStats {
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    /// Per batch size: engine calls and their input, infer and output times.
    batches: Mutex<BTreeMap<usize, [(u64, u64); 3]>>,
    /// The same, for Prometheus, once its component and placement are known.
    metrics: OnceLock<ModelMetrics>,
}

impl ModelStats {
    /// Labels its Prometheus metrics with the component, model and placement.
    pub fn label(&self, component: &str, model: &str, engine: &str, device: &str) {
        let _ = self.metrics.set(ModelMetrics::new(component, model, engine, device));
    }

    /// A compute answered after `took`, with `times` spent where they say.
    pub fn succeeded(&self, rows: usize, took: Duration, times: ComputeTimes) {
        if let Some(metrics) = self.metrics.get() {
            metrics.succeeded(rows, took, [times.queue, times.input, times.infer, times.output]);
        }
        self.inference_count.fetch_add(rows as u64, Ordering::Relaxed);
        self.success.add(took);
        self.queue.add(times.queue);
        self.compute_input.add(times.input);
        self.compute_infer.add(times.infer);
        self.compute_output.add(times.output);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// A compute that failed after `took`.
    pub fn failed(&self, took: Duration) {
        if let Some(metrics) = self.metrics.get() {
            metrics.failed();
        }
        self.fail.add(took);
    }

    /// One engine call on a batch of `rows`.
    pub fn executed(&self, rows: usize, times: ComputeTimes) {
        if let Some(metrics) = self.metrics.get() {
            metrics.executed(rows);
        }
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let entry = batches.entry(rows).or_default();
        for (slot, took) in entry.iter_mut().zip([times.input, times.infer, times.output]) {
            slot.0 += 1;
            slot.1 = slot.1.saturating_add(ns(took));
        }
    }

    /// Engine calls so far, and rows inferred.
    pub fn counts(&self) -> (u64, u64) {
        (self.execution_count.load(Ordering::Relaxed), self.inference_count.load(Ordering::Relaxed))
    }

    /// Adds another component's statistics of the same model into `into` (Triton's JSON).
    pub fn merge_into(&self, into: &mut Value) {
        let mine = self.json("", "");
        merge_numbers(into, &mine);
    }

    /// Triton's `model_stats` entry for this model.
    pub fn json(&self, name: &str, version: &str) -> Value {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let tally = |(count, ns): (u64, u64)| json!({"count": count, "ns": ns});
        json!({
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms.load(Ordering::Relaxed),
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": self.compute_input.json(),
                "compute_infer": self.compute_infer.json(),
                "compute_output": self.compute_output.json(),
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "batch_stats": batches.iter().map(|(size, [input, infer, output])| json!({
                "batch_size": size,
                "compute_input": tally(*input),
                "compute_infer": tally(*infer),
                "compute_output": tally(*output),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Adds every number in `from` to the one at the same place in `into`; `last_inference` takes
/// the later; lists of batch sizes are joined by size.
fn merge_numbers(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(key) {
                    Some(existing) if key == "last_inference" => {
                        *existing = json!(existing.as_u64().unwrap_or(0).max(value.as_u64().unwrap_or(0)));
                    }
                    Some(existing) => merge_numbers(existing, value),
                    None => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(into), Value::Array(from)) => {
            for entry in from {
                match into.iter_mut().find(|e| e["batch_size"] == entry["batch_size"]) {
                    Some(existing) => merge_numbers(existing, entry),
                    None => into.push(entry.clone()),
                }
            }
        }
        (into @ Value::Number(_), Value::Number(from)) => {
            *into = json!(into.as_u64().unwrap_or(0).saturating_add(from.as_u64().unwrap_or(0)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_computes_rows_and_engine_calls_in_tritons_shape() {
        let stats = ModelStats::default();
        let times = ComputeTimes { queue: Duration::from_micros(5), infer: Duration::from_micros(100), ..Default::default() };
        stats.executed(3, times);
        stats.succeeded(1, Duration::from_micros(120), times);
        stats.succeeded(2, Duration::from_micros(130), times);
        stats.failed(Duration::from_micros(7));
        let mut json = stats.json("m", "1");
        assert_eq!(json["inference_count"], 3);
        assert_eq!(json["execution_count"], 1);
        assert_eq!(json["inference_stats"]["success"], json!({"count": 2, "ns": 250_000}));
        assert_eq!(json["inference_stats"]["fail"], json!({"count": 1, "ns": 7_000}));
        assert_eq!(json["inference_stats"]["queue"]["ns"], 10_000);
        assert_eq!(json["batch_stats"][0]["batch_size"], 3);
        assert_eq!(json["batch_stats"][0]["compute_infer"], json!({"count": 1, "ns": 100_000}));
        stats.merge_into(&mut json);
        assert_eq!(json["inference_count"], 6);
        assert_eq!(json["batch_stats"][0]["compute_infer"]["count"], 2);
        assert_eq!(json["name"], "m");
    }
}
