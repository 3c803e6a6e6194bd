//! Prometheus metrics, through the `metrics` facade: names in Triton's style, recorded where the
//! host sees each thing happen, rendered by `metrics-exporter-prometheus` on the admin listener
//! ([`super::admin`]). Without a recorder installed (library users, unit tests) every call is a
//! no-op.
//!
//! Histograms of durations are in microseconds, as Triton's `nv_inference_*_duration_us` are.

use metrics::{Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;

/// HTTP requests answered, by `component` (`none` for the host's own endpoints and 404s) and
/// `status` class (`2xx`…`5xx`).
pub const REQUESTS: &str = "spindle_requests";
/// Time from a request's headers to its response, by `component`.
pub const REQUEST_DURATION: &str = "spindle_request_duration_us";
/// Time a request waited for one of its component's slots (admission), by `component`.
pub const REQUEST_QUEUE_DURATION: &str = "spindle_request_queue_duration_us";
/// Requests a component did not answer, by `component` and `cause`.
pub const REQUEST_FAILURES: &str = "spindle_request_failures";
/// Fresh instances created (one per request that got past admission), by `component`.
pub const INSTANCE_CREATIONS: &str = "spindle_instance_creations";
/// Components made ready to instantiate, by `component` and `how` (`compiled`, `cache_hit`,
/// `shared`, `rebuilt`).
pub const COMPONENT_LOADS: &str = "spindle_component_loads";
/// Model graphs compiled by an engine (a cache miss), by `engine` and `device`.
pub const GRAPH_COMPILES: &str = "spindle_graph_compiles";
/// Graph loads answered from the shared cache without compiling, by `engine` and `device`.
pub const GRAPH_SHARED: &str = "spindle_graph_shared";
/// `wasi:nn` computes on a named model that answered, by `component`, `model`, `engine`, `device`.
pub const INFERENCE_SUCCESS: &str = "spindle_inference_request_success";
/// … that failed.
pub const INFERENCE_FAILURE: &str = "spindle_inference_request_failure";
/// Rows inferred (a batch of 8 counts 8), as Triton's `nv_inference_count`.
pub const INFERENCE_COUNT: &str = "spindle_inference_count";
/// Engine calls (a merged batch counts 1), as Triton's `nv_inference_exec_count`.
pub const INFERENCE_EXEC_COUNT: &str = "spindle_inference_exec_count";
/// Time from a compute call to its answer.
pub const INFERENCE_REQUEST_DURATION: &str = "spindle_inference_request_duration_us";
/// Time a compute waited to join a batch and for an engine slot.
pub const INFERENCE_QUEUE_DURATION: &str = "spindle_inference_queue_duration_us";
/// Time merging a compute's inputs into its batch.
pub const INFERENCE_COMPUTE_INPUT_DURATION: &str = "spindle_inference_compute_input_duration_us";
/// Time of the engine's run.
pub const INFERENCE_COMPUTE_INFER_DURATION: &str = "spindle_inference_compute_infer_duration_us";
/// Time splitting a compute's rows out of its batch's outputs.
pub const INFERENCE_COMPUTE_OUTPUT_DURATION: &str = "spindle_inference_compute_output_duration_us";
/// Rows per engine call.
pub const INFERENCE_BATCH_SIZE: &str = "spindle_inference_batch_size";
/// Connections open now.
pub const OPEN_CONNECTIONS: &str = "spindle_open_connections";
/// The process's resident memory, read at each scrape.
pub const RESIDENT_MEMORY: &str = "spindle_process_resident_memory_bytes";
/// Reloads (SIGHUP or `--watch`), by `outcome` (`swapped` or `failed`).
pub const RELOADS: &str = "spindle_reloads";
/// Audit lines dropped because the writer fell behind.
pub const AUDIT_LINES_DROPPED: &str = "spindle_audit_lines_dropped";

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Microsecond buckets from 50 µs to 60 s.
const DURATION_BUCKETS_US: &[f64] =
    &[50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 3e7, 6e7];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the process-wide recorder and describes every metric; the handle renders them.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_us".into()), DURATION_BUCKETS_US)?
        .set_buckets_for_metric(Matcher::Full(INFERENCE_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)?
        .install_recorder()?;
    // Histograms keep their samples until upkeep folds them into buckets: without it, a host
    // nobody scrapes would grow with every request.
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        }
    })?;
    describe_counter!(REQUESTS, "HTTP requests answered, by component and status class");
    describe_histogram!(REQUEST_DURATION, metrics::Unit::Microseconds, "Time from a request's headers to its response");
    describe_histogram!(REQUEST_QUEUE_DURATION, metrics::Unit::Microseconds, "Time waiting for a component slot (admission)");
    describe_counter!(REQUEST_FAILURES, "Requests a component did not answer, by cause");
    describe_counter!(INSTANCE_CREATIONS, "Fresh component instances created");
    describe_counter!(COMPONENT_LOADS, "Components compiled or loaded, by how (compiled, cache_hit, shared, rebuilt)");
    describe_counter!(GRAPH_COMPILES, "Model graphs compiled by an engine (graph cache misses)");
    describe_counter!(GRAPH_SHARED, "Graph loads answered from the shared graph cache");
    describe_counter!(INFERENCE_SUCCESS, "wasi:nn computes on a named model that answered");
    describe_counter!(INFERENCE_FAILURE, "wasi:nn computes on a named model that failed");
    describe_counter!(INFERENCE_COUNT, "Rows inferred");
    describe_counter!(INFERENCE_EXEC_COUNT, "Engine calls (a merged batch counts once)");
    describe_histogram!(INFERENCE_REQUEST_DURATION, metrics::Unit::Microseconds, "Time from a compute call to its answer");
    describe_histogram!(INFERENCE_QUEUE_DURATION, metrics::Unit::Microseconds, "Time a compute waited for its batch and an engine slot");
    describe_histogram!(INFERENCE_COMPUTE_INPUT_DURATION, metrics::Unit::Microseconds, "Time merging inputs into the batch");
    describe_histogram!(INFERENCE_COMPUTE_INFER_DURATION, metrics::Unit::Microseconds, "Time of the engine's run");
    describe_histogram!(INFERENCE_COMPUTE_OUTPUT_DURATION, metrics::Unit::Microseconds, "Time splitting outputs out of the batch");
    describe_histogram!(INFERENCE_BATCH_SIZE, "Rows per engine call");
    describe_gauge!(OPEN_CONNECTIONS, "Client connections open now");
    describe_gauge!(RESIDENT_MEMORY, metrics::Unit::Bytes, "Resident memory of the process");
    describe_counter!(RELOADS, "Reloads, by outcome");
    describe_counter!(AUDIT_LINES_DROPPED, "Audit lines dropped because the writer fell behind");
    Ok(handle)
}

/// A duration in microseconds, as histograms take it.
pub fn micros(took: Duration) -> f64 {
    took.as_secs_f64() * 1e6
}

/// `2xx`, `4xx`, … for a status code.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One answered HTTP request that no component answered (the host's endpoints, 404s).
pub fn host_request_answered(status: http::StatusCode, took: Duration) {
    counter!(REQUESTS, "component" => "none", "status" => status_class(status)).increment(1);
    histogram!(REQUEST_DURATION, "component" => "none").record(micros(took));
}

/// One component's request metrics, registered once.
pub struct ComponentMetrics {
    component: String,
    /// By status class: 1xx … 5xx.
    requests: [Counter; 5],
    duration: Histogram,
    queue: Histogram,
    instances: Counter,
}

impl ComponentMetrics {
    /// Registers them for `component`.
    pub fn new(component: &str) -> Self {
        let c = || component.to_owned();
        Self {
            component: c(),
            requests: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| counter!(REQUESTS, "component" => c(), "status" => class)),
            duration: histogram!(REQUEST_DURATION, "component" => c()),
            queue: histogram!(REQUEST_QUEUE_DURATION, "component" => c()),
            instances: counter!(INSTANCE_CREATIONS, "component" => c()),
        }
    }

    /// A request answered with `status` after `took`.
    pub fn answered(&self, status: http::StatusCode, took: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].increment(1);
        self.duration.record(micros(took));
    }

    /// A request admitted after waiting `waited` for a slot.
    pub fn admitted(&self, waited: Duration) {
        self.queue.record(micros(waited));
    }

    /// A fresh instance created.
    pub fn instance_created(&self) {
        self.instances.increment(1);
    }

    /// A request it did not answer, and why.
    pub fn failed(&self, cause: &'static str) {
        counter!(REQUEST_FAILURES, "component" => self.component.clone(), "cause" => cause).increment(1);
    }
}

/// The metrics of one named model in one component, registered once so that recording is a
/// few atomic adds.
pub struct ModelMetrics {
    success: Counter,
    failure: Counter,
    count: Counter,
    exec_count: Counter,
    request: Histogram,
    queue: Histogram,
    compute_input: Histogram,
    compute_infer: Histogram,
    compute_output: Histogram,
    batch_size: Histogram,
}

impl ModelMetrics {
    /// Registers them with their labels.
    pub fn new(component: &str, model: &str, engine: &str, device: &str) -> Self {
        let labels = [
            ("component", component.to_owned()),
            ("model", model.to_owned()),
            ("engine", engine.to_owned()),
            ("device", device.to_owned()),
        ];
        Self {
            success: counter!(INFERENCE_SUCCESS, &labels),
            failure: counter!(INFERENCE_FAILURE, &labels),
            count: counter!(INFERENCE_COUNT, &labels),
            exec_count: counter!(INFERENCE_EXEC_COUNT, &labels),
            request: histogram!(INFERENCE_REQUEST_DURATION, &labels),
            queue: histogram!(INFERENCE_QUEUE_DURATION, &labels),
            compute_input: histogram!(INFERENCE_COMPUTE_INPUT_DURATION, &labels),
            compute_infer: histogram!(INFERENCE_COMPUTE_INFER_DURATION, &labels),
            compute_output: histogram!(INFERENCE_COMPUTE_OUTPUT_DURATION, &labels),
            batch_size: histogram!(INFERENCE_BATCH_SIZE, &labels),
        }
    }

    /// A compute of `rows` answered after `took`: queue, input, infer, output as measured.
    pub fn succeeded(&self, rows: usize, took: Duration, [queue, input, infer, output]: [Duration; 4]) {
        self.success.increment(1);
        self.count.increment(rows as u64);
        self.request.record(micros(took));
        self.queue.record(micros(queue));
        self.compute_input.record(micros(input));
        self.compute_infer.record(micros(infer));
        self.compute_output.record(micros(output));
    }

    /// A compute that failed.
    pub fn failed(&self) {
        self.failure.increment(1);
    }

    /// One engine call on `rows`.
    pub fn executed(&self, rows: usize) {
        self.exec_count.increment(1);
        self.batch_size.record(rows as f64);
    }
}

/// Sets the gauges read at scrape time.
pub fn sample_process() {
    if let Some(rss) = resident_bytes() {
        gauge!(RESIDENT_MEMORY).set(rss as f64);
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
