//! Dynamic batching, per named model of one component: concurrent `compute` calls on the same
//! graph are merged along the first (batch) axis into one engine call, and each guest gets its
//! own rows back, the way Triton's dynamic batcher does.
//!
//! The settings are Triton's, read from the model's declared description (`model.json` beside
//! its ONNX file, the same file the function answers `/v2/models/{m}/config` from):
//! `max_batch_size`, and `dynamic_batching` with `max_queue_delay_microseconds`,
//! `preferred_batch_size` and `default_queue_policy` (`max_queue_size`,
//! `default_timeout_microseconds`). `max_batch_size` is enforced on every compute, batched or not.
//!
//! Each guest's inputs are validated before they join a batch, so a malformed one fails alone.
//! Only inputs whose other dimensions and types agree are merged. A batch goes to the engine as
//! soon as it is full, reaches a preferred size, its oldest member has waited
//! `max_queue_delay_microseconds`, or no other instance of the component that could still join
//! it is running: a lone request never waits for company that is not coming. An engine error
//! fails every member with that error; the graph keeps serving. A member whose request is gone,
//! or whose deadline or queue timeout passed, leaves the queue; the batch runs until the latest
//! of its members' deadlines.
//!
//! Batches are per component as well as per model, so one tenant's requests never share an
//! engine call with another's.

use super::backend::{self, BackendError, ElementType, NamedTensor, Tensor};
use super::graphs::{GraphCache, SharedGraph};
use super::stats::{ComputeTimes, ModelStats};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// A model's batching, as its description declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Rows a single compute may carry (0: the model has no batch axis to enforce).
    pub max_batch_size: usize,
    /// How concurrent computes are merged, if they are.
    pub dynamic: Option<DynamicBatching>,
}

/// Triton's `dynamic_batching` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicBatching {
    /// How long the oldest member may wait for others.
    pub max_queue_delay: Duration,
    /// Batch sizes that go to the engine as soon as they are reached.
    pub preferred_batch_sizes: Vec<usize>,
    /// Members that may wait; more get `QueueFull`.
    pub max_queue_size: usize,
    /// How long a member may wait in the queue, within its request's deadline.
    pub queue_timeout: Option<Duration>,
}

/// The parts of a `model.json` the host reads; the rest is the function's.
#[derive(Deserialize)]
struct Description {
    #[serde(default)]
    max_batch_size: usize,
    #[serde(default)]
    dynamic_batching: Option<DynamicBatchingDescription>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DynamicBatchingDescription {
    #[serde(default)]
    max_queue_delay_microseconds: u64,
    #[serde(default)]
    preferred_batch_size: Vec<usize>,
    #[serde(default)]
    default_queue_policy: QueuePolicyDescription,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuePolicyDescription {
    #[serde(default)]
    max_queue_size: Option<usize>,
    #[serde(default)]
    default_timeout_microseconds: Option<u64>,
}

/// Why a model's batching settings were refused at start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The description does not parse.
    #[error("{path}: {reason}")]
    Description {
        /// Where it is.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Batching asked for a model without a batch axis.
    #[error("model '{model}' asks for dynamic batching, but {reason}")]
    NoBatchAxis {
        /// The model.
        model: String,
        /// Why it has none.
        reason: String,
    },
}

impl BatchPolicy {
    /// The policy `description` (a `model.json`) declares for `model`, whose ONNX bytes are
    /// `onnx`; dynamic batching is dropped when `enabled` is false, `max_batch_size` still holds.
    pub fn from_description(model: &str, description: &Path, onnx: &Path, enabled: bool) -> Result<Self, PolicyError> {
        let refused = |reason: String| PolicyError::Description { path: description.display().to_string(), reason };
        let text = std::fs::read_to_string(description).map_err(|e| refused(e.to_string()))?;
        let declared: Description = serde_json::from_str(&text).map_err(|e| refused(e.to_string()))?;
        let no_axis = |reason: String| PolicyError::NoBatchAxis { model: model.to_owned(), reason };
        if declared.max_batch_size > 0 {
            let bytes = std::fs::read(onnx).map_err(|e| refused(format!("{}: {e}", onnx.display())))?;
            check_batch_axis(&bytes).map_err(no_axis)?;
        }
        let Some(dynamic) = declared.dynamic_batching else {
            return Ok(Self { max_batch_size: declared.max_batch_size, dynamic: None });
        };
        if declared.max_batch_size == 0 {
            return Err(no_axis("its max_batch_size is 0".into()));
        }
        if let Some(&size) = dynamic.preferred_batch_size.iter().find(|&&s| s == 0 || s > declared.max_batch_size) {
            return Err(refused(format!("preferred batch size {size} is not within 1..={}", declared.max_batch_size)));
        }
        if dynamic.max_queue_delay_microseconds > MAX_DELAY_US {
            return Err(refused(format!("max_queue_delay_microseconds is over {MAX_DELAY_US} (one minute)")));
        }
        let policy = dynamic.default_queue_policy;
        let dynamic = DynamicBatching {
            max_queue_delay: Duration::from_micros(dynamic.max_queue_delay_microseconds),
            preferred_batch_sizes: dynamic.preferred_batch_size,
            // As in Triton, 0 (or none) sets no bound of its own; the component's admission
            // queue bounds it anyway.
            max_queue_size: policy.max_queue_size.filter(|&n| n > 0).unwrap_or(usize::MAX),
            queue_timeout: policy.default_timeout_microseconds.filter(|&us| us > 0).map(Duration::from_micros),
        };
        Ok(Self { max_batch_size: declared.max_batch_size, dynamic: enabled.then_some(dynamic) })
    }
}

/// The longest `max_queue_delay_microseconds` accepted.
pub const MAX_DELAY_US: u64 = 60_000_000;

/// Every input and output of the ONNX model must have the same named symbol as its first
/// dimension: the batch. An unnamed one, or another name, might be anything (a count of boxes).
/// `Err` says which tensor breaks the rule, as "its input 'x' has ...".
pub fn check_batch_axis(onnx: &[u8]) -> Result<(), String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto;
    use tract_onnx::prelude::Framework;
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &onnx[..]).map_err(|e| format!("it does not parse: {e:#}"))?;
    let graph = proto.graph.unwrap_or_default();
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph.input.iter().filter(|v| !initializers.contains(&v.name.as_str()));
    let mut batch: Option<(String, String)> = None;
    for (kind, value) in inputs.map(|v| ("input", v)).chain(graph.output.iter().map(|v| ("output", v))) {
        let first = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t.shape.as_ref().and_then(|s| s.dim.first()).map(|d| d.value.clone()),
            _ => None,
        };
        let tensor = format!("its {kind} '{}'", value.name);
        let symbol = match first {
            Some(Some(Value::DimParam(symbol))) if !symbol.is_empty() => symbol,
            Some(Some(Value::DimValue(n))) => return Err(format!("{tensor} has a fixed first dimension of {n}")),
            Some(_) => return Err(format!("{tensor} has an unnamed first dimension")),
            None => return Err(format!("{tensor} declares no shape")),
        };
        match &batch {
            Some((first_tensor, name)) if *name != symbol => {
                return Err(format!("{tensor}'s first dimension is '{symbol}', {first_tensor}'s is '{name}'"));
            }
            Some(_) => {}
            None => batch = Some((tensor, symbol)),
        }
    }
    Ok(())
}

/// Why a compute was not run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The engine or the inputs refused it.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The batch queue is full.
    #[error("model '{model}' has {max_queue_size} computes waiting to be batched; retry shortly")]
    QueueFull {
        /// The model.
        model: String,
        /// Its queue bound.
        max_queue_size: usize,
    },
}

/// The computes of one named model of one component: checked against `max_batch_size`, and
/// merged when dynamic batching is on.
pub struct Batcher {
    model: String,
    policy: BatchPolicy,
    cache: Arc<GraphCache>,
    /// Engine calls this model may have running at once: the inference pool's size.
    max_running: usize,
    queue: Mutex<Queue>,
    wake: Arc<Notify>,
    /// What it has seen, for the statistics extension.
    stats: ModelStats,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Member>,
    /// Instances running that may still submit a compute here.
    coming: usize,
    /// Batches on the engine now.
    running: usize,
    dispatcher: bool,
}

struct Member {
    graph: Arc<SharedGraph>,
    /// Inputs in the graph's order, validated.
    inputs: Vec<Tensor>,
    rows: usize,
    /// Per input, the dimensions after the first and the element type: what must agree.
    key: Vec<(Vec<u32>, ElementType)>,
    /// When the request ends.
    deadline: Instant,
    /// When it stops waiting in the queue (its deadline, or its queue timeout).
    leaves: Instant,
    enqueued: Instant,
    reply: Reply,
}

/// A running instance that may still compute on a batched model: while it is counted, a lone
/// batch member may wait for it. Released at its first compute there, or when dropped.
pub struct Interest {
    batcher: Option<Arc<Batcher>>,
}

impl Interest {
    fn release(&mut self) {
        if let Some(batcher) = self.batcher.take() {
            batcher.queue.lock().unwrap_or_else(|e| e.into_inner()).coming -= 1;
            batcher.wake.notify_one();
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.release();
    }
}

impl Batcher {
    /// The computes of `model` under `policy`, run on `cache`'s pool, at most one batch per pool
    /// slot at once.
    pub fn new(model: &str, policy: BatchPolicy, cache: Arc<GraphCache>) -> Arc<Self> {
        let max_running = cache.pool().size();
        Arc::new(Self {
            model: model.to_owned(),
            policy,
            cache,
            max_running,
            queue: Mutex::default(),
            wake: Arc::default(),
            stats: ModelStats::default(),
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Its policy.
    pub fn policy(&self) -> &BatchPolicy {
        &self.policy
    }

    /// What it has seen of its model's computes.
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    /// Counts an instance that may compute here, until the returned guard says otherwise.
    pub fn interest(self: &Arc<Self>) -> Option<Interest> {
        self.policy.dynamic.as_ref()?;
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).coming += 1;
        Some(Interest { batcher: Some(self.clone()) })
    }

    /// Runs `inputs` on `graph`, alone or merged with other computes, and returns this
    /// compute's own outputs. `interest` is this instance's, released once it has submitted.
    pub async fn compute(
        self: &Arc<Self>,
        graph: Arc<SharedGraph>,
        inputs: Vec<NamedTensor>,
        deadline: Instant,
        interest: Option<&mut Interest>,
    ) -> Result<Vec<NamedTensor>, SubmitError> {
        let started = Instant::now();
        let Some(dynamic) = &self.policy.dynamic else {
            let alone = self.alone(graph, inputs, deadline).await;
            if alone.is_err() {
                self.stats.failed(started.elapsed());
            }
            return alone;
        };
        let queued = self.join(graph, inputs, deadline, dynamic);
        // This instance is no longer coming, whether it joined or was refused.
        if let Some(interest) = interest {
            interest.release();
        }
        let answer = queued.inspect_err(|_| self.stats.failed(started.elapsed()))?;
        self.wake.notify_one();
        answer.await.unwrap_or_else(|_| Err(BackendError::Runtime("the batch was dropped".into()))).map_err(SubmitError::from)
    }

    /// Runs one compute on its own, `max_batch_size` checked.
    async fn alone(&self, graph: Arc<SharedGraph>, inputs: Vec<NamedTensor>, deadline: Instant) -> Result<Vec<NamedTensor>, SubmitError> {
        let rows = if self.policy.max_batch_size > 0 { self.rows(&inputs)? } else { 1 };
        let started = Instant::now();
        let (outputs, infer) = self.cache.pool().compute(graph, inputs, deadline).await?;
        let took = started.elapsed();
        let times = ComputeTimes { queue: took.saturating_sub(infer), infer, ..ComputeTimes::default() };
        self.stats.executed(rows, times);
        self.stats.succeeded(rows, took, times);
        Ok(outputs)
    }

    /// Validates a compute and puts it in the queue.
    fn join(
        self: &Arc<Self>,
        graph: Arc<SharedGraph>,
        inputs: Vec<NamedTensor>,
        deadline: Instant,
        dynamic: &DynamicBatching,
    ) -> Result<oneshot::Receiver<Result<Vec<NamedTensor>, BackendError>>, SubmitError> {
        let inputs = backend::validate(graph.graph(), inputs)?;
        let rows = self.rows_of(graph.graph().inputs().iter().map(|s| s.name.as_str()).zip(&inputs))?;
        let key = inputs.iter().map(|t| (t.dims.get(1..).unwrap_or_default().to_vec(), t.ty)).collect();
        let now = Instant::now();
        let leaves = dynamic.queue_timeout.and_then(|t| now.checked_add(t)).map_or(deadline, |t| deadline.min(t));
        let (reply, answer) = oneshot::channel();
        let member = Member { graph, inputs, rows, key, deadline, leaves, enqueued: now, reply };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.waiting.len() >= dynamic.max_queue_size {
            return Err(SubmitError::QueueFull { model: self.model.clone(), max_queue_size: dynamic.max_queue_size });
        }
        queue.waiting.push_back(member);
        if !queue.dispatcher {
            queue.dispatcher = true;
            tokio::spawn(dispatch(Arc::downgrade(self)));
        }
        Ok(answer)
    }

    /// The rows of named inputs, refused past `max_batch_size`.
    fn rows(&self, inputs: &[NamedTensor]) -> Result<usize, BackendError> {
        self.rows_of(inputs.iter().map(|(name, t)| (name.as_str(), t)))
    }

    fn rows_of<'a>(&self, mut inputs: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Result<usize, BackendError> {
        let max = self.policy.max_batch_size;
        let Some((_, first)) = inputs.next() else { return Ok(0) };
        let rows = first.dims.first().copied().unwrap_or(0) as usize;
        if let Some((name, _)) = inputs.find(|(_, t)| t.dims.first().copied().unwrap_or(0) as usize != rows) {
            return Err(BackendError::InvalidInput(format!("input '{name}' has a different batch size than the first input's {rows}")));
        }
        if rows > max {
            return Err(BackendError::InvalidInput(format!("a batch of {rows} exceeds model '{}''s max_batch_size of {max}", self.model)));
        }
        Ok(rows)
    }

    /// The next batch, if one should go to the engine now; else when to look again.
    fn next_batch(&self, queue: &mut Queue, dynamic: &DynamicBatching) -> Result<Vec<Member>, Option<Instant>> {
        let now = Instant::now();
        let mut at = 0;
        while at < queue.waiting.len() {
            let m = &queue.waiting[at];
            if !m.reply.is_closed() && now < m.leaves {
                at += 1;
                continue;
            }
            let m = queue.waiting.remove(at).expect("in bounds");
            self.stats.failed(now.duration_since(m.enqueued));
            let waited = now.duration_since(m.enqueued).as_millis();
            let _ = m.reply.send(Err(BackendError::Stopped(format!(
                "the compute waited {waited} ms to be batched, past its request's deadline or queue timeout"
            ))));
        }
        let Some(first) = queue.waiting.front() else { return Err(None) };
        let soonest_leave = queue.waiting.iter().map(|m| m.leaves).min();
        if queue.running >= self.max_running {
            // A batch ending wakes the dispatcher; a member's timeout must too.
            return Err(soonest_leave);
        }
        let (mut rows, mut picked) = (0, Vec::new());
        for (at, m) in queue.waiting.iter().enumerate() {
            if m.key == first.key && rows + m.rows <= self.policy.max_batch_size {
                rows += m.rows;
                picked.push(at);
            }
        }
        let flush_at = first.enqueued.checked_add(dynamic.max_queue_delay).unwrap_or(first.leaves);
        let full = rows == self.policy.max_batch_size || dynamic.preferred_batch_sizes.contains(&rows);
        if !(full || queue.coming == 0 || now >= flush_at) {
            return Err(Some(soonest_leave.map_or(flush_at, |leave| leave.min(flush_at))));
        }
        queue.running += 1;
        // Removed from the back, so the positions still ahead stay where they were.
        let mut members: Vec<Member> = picked.into_iter().rev().filter_map(|at| queue.waiting.remove(at)).collect();
        members.reverse();
        Ok(members)
    }
}

/// Forms batches while the batcher lives and sends each to the engine.
async fn dispatch(batcher: Weak<Batcher>) {
    // Should this task end some other way than the batcher going (a panic), the next compute
    // starts another.
    let _restart = OnDrop(|| {
        if let Some(this) = batcher.upgrade() {
            this.queue.lock().unwrap_or_else(|e| e.into_inner()).dispatcher = false;
        }
    });
    loop {
        let Some(this) = batcher.upgrade() else { return };
        let Some(dynamic) = this.policy.dynamic.clone() else { return };
        let next = this.next_batch(&mut this.queue.lock().unwrap_or_else(|e| e.into_inner()), &dynamic);
        match next {
            Ok(members) => {
                tokio::spawn(async move {
                    // Its slot is given back however the batch ends, a panic included.
                    let _slot = OnDrop(|| {
                        this.queue.lock().unwrap_or_else(|e| e.into_inner()).running -= 1;
                        this.wake.notify_one();
                    });
                    this.run_batch(members).await;
                });
            }
            Err(look_again) => {
                let wake = this.wake.clone();
                drop(this);
                let woken = wake.notified();
                match look_again {
                    Some(at) => {
                        let _ = tokio::time::timeout_at(at.into(), woken).await;
                    }
                    None => woken.await,
                }
            }
        }
    }
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

impl Drop for Batcher {
    /// Wakes the dispatcher, which then finds the batcher gone and ends.
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl Batcher {
    /// One engine call for every member, each answered with its own rows.
    async fn run_batch(&self, mut members: Vec<Member>) {
        // Requests gone while the batch formed are not computed.
        members.retain(|m| !m.reply.is_closed());
        let Some(first) = members.first() else { return };
        let graph = first.graph.clone();
        let rows: usize = members.iter().map(|m| m.rows).sum();
        let deadline = members.iter().map(|m| m.deadline).max().unwrap_or(first.deadline);
        let specs = graph.graph().inputs();
        let mut merged: Vec<NamedTensor> = specs
            .iter()
            .zip(&first.inputs)
            .map(|(spec, t)| {
                let mut dims = t.dims.clone();
                dims[0] = rows as u32;
                (spec.name.clone(), Tensor { dims, ty: t.ty, data: Vec::with_capacity(t.data.len() / t.dims[0].max(1) as usize * rows) })
            })
            .collect();
        let formed = Instant::now();
        let mut replies = Vec::with_capacity(members.len());
        for member in members {
            for ((_, into), tensor) in merged.iter_mut().zip(member.inputs) {
                into.data.extend_from_slice(&tensor.data);
            }
            replies.push((member.rows, member.enqueued, member.reply));
        }
        tracing::debug!(model = %self.model, rows, computes = replies.len(), "batch");
        let sent = Instant::now();
        let result = self.cache.pool().compute(graph, merged, deadline).await;
        let computed = Instant::now();
        let fail = |e: BackendError, replies: Vec<(usize, Instant, Reply)>| {
            for (_, enqueued, reply) in replies {
                self.stats.failed(computed.duration_since(enqueued));
                let _ = reply.send(Err(e.clone()));
            }
        };
        let (outputs, infer) = match result {
            Ok(done) => done,
            Err(e) => return fail(e, replies),
        };
        if let Some((name, t)) = outputs.iter().find(|(_, t)| t.dims.first().copied() != Some(rows as u32)) {
            let e = BackendError::Runtime(format!("output '{name}' has dimensions {:?}, not {rows} rows, so it cannot be split", t.dims));
            return fail(e, replies);
        }
        let slot_wait = computed.duration_since(sent).saturating_sub(infer);
        let mut times = ComputeTimes { queue: Duration::ZERO, input: sent.duration_since(formed), infer, output: Duration::ZERO };
        let (mut start, mut splitting_total) = (0, Duration::ZERO);
        for (own, enqueued, reply) in replies {
            let splitting = Instant::now();
            let split = outputs
                .iter()
                .map(|(name, t)| {
                    let row_bytes = t.data.len() / rows.max(1);
                    let mut dims = t.dims.clone();
                    dims[0] = own as u32;
                    (name.clone(), Tensor { dims, ty: t.ty, data: t.data[start * row_bytes..(start + own) * row_bytes].to_vec() })
                })
                .collect();
            let answered = Instant::now();
            times.queue = formed.duration_since(enqueued) + slot_wait;
            times.output = answered.duration_since(splitting);
            splitting_total += times.output;
            self.stats.succeeded(own, answered.duration_since(enqueued), times);
            let _ = reply.send(Ok(split));
            start += own;
        }
        times.output = splitting_total;
        self.stats.executed(rows, times);
    }
}

/// Where a batch member's answer goes.
type Reply = oneshot::Sender<Result<Vec<NamedTensor>, BackendError>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::backend::{Backend, RunControl, compute, tract::TractBackend};
    use crate::nn::onnx_bytes;
    use crate::nn::pool::InferencePool;

    fn dynamic(delay_us: u64, queue_timeout: Option<Duration>) -> BatchPolicy {
        BatchPolicy {
            max_batch_size: 8,
            dynamic: Some(DynamicBatching {
                max_queue_delay: Duration::from_micros(delay_us),
                preferred_batch_sizes: vec![],
                max_queue_size: 1024,
                queue_timeout,
            }),
        }
    }

    async fn relu(cache: &Arc<GraphCache>) -> Arc<SharedGraph> {
        let tract: Arc<dyn Backend> = Arc::new(TractBackend::cpu(1));
        cache.get_or_compile(onnx_bytes::symbolic_relu().into(), &tract).await.unwrap()
    }

    fn floats(dims: &[u32], seed: usize) -> Tensor {
        let n: u32 = dims.iter().product();
        let data = (0..n as usize).flat_map(|i| ((i * 7 + seed * 13) as f32 % 11.0 - 5.0 + seed as f32 / 1000.0).to_le_bytes()).collect();
        Tensor { dims: dims.to_vec(), ty: ElementType::F32, data }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_computes_each_get_their_own_rows() {
        let cache = Arc::new(GraphCache::new(Arc::new(InferencePool::with_size(2))));
        let graph = relu(&cache).await;
        let batcher = Batcher::new("relu", dynamic(2000, None), cache.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        // 200 computes of 1 to 3 rows, widths 3 and 5 (never merged together), and a poisoned one.
        // As 200 running instances would be: each counted before any computes.
        let interests: Vec<_> = (0..200).map(|_| batcher.interest()).collect();
        let tasks: Vec<_> = interests
            .into_iter()
            .enumerate()
            .map(|(i, mut interest)| {
                let (batcher, graph) = (batcher.clone(), graph.clone());
                tokio::spawn(async move {
                    let input = if i == 100 {
                        Tensor { dims: vec![1, 3], ty: ElementType::F32, data: vec![0; 5] }
                    } else {
                        floats(&[(i % 3 + 1) as u32, if i % 2 == 0 { 3 } else { 5 }], i)
                    };
                    let got = batcher.compute(graph.clone(), vec![("x".into(), input.clone())], deadline, interest.as_mut()).await;
                    (i, input, got)
                })
            })
            .collect();
        for task in tasks {
            let (i, input, got) = task.await.unwrap();
            if i == 100 {
                let err = got.expect_err("the poisoned compute fails").to_string();
                assert!(err.contains("need 12 bytes, got 5"), "{err}");
                continue;
            }
            let alone = compute(graph.graph(), vec![("x".into(), input)], &RunControl::default()).unwrap();
            let got = got.unwrap();
            assert_eq!(got[0].1.dims, alone[0].1.dims, "compute {i}");
            assert_eq!(got[0].1.data, alone[0].1.data, "compute {i}");
        }
        let stats = batcher.stats().json("relu", "1");
        let (executions, computes) =
            (stats["execution_count"].as_u64().unwrap(), stats["inference_stats"]["success"]["count"].as_u64().unwrap());
        assert_eq!(computes, 199);
        assert_eq!(stats["inference_stats"]["fail"]["count"], 1, "the poisoned one");
        assert_eq!(stats["inference_count"], (0..200).filter(|&i| i != 100).map(|i| i % 3 + 1).sum::<u64>());
        assert!(executions < computes, "{executions} engine calls for {computes} computes: nothing was merged");
    }

    #[tokio::test]
    async fn max_batch_size_holds_with_or_without_batching() {
        let cache = Arc::new(GraphCache::new(Arc::new(InferencePool::with_size(1))));
        let graph = relu(&cache).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        for policy in [dynamic(0, None), BatchPolicy { max_batch_size: 8, dynamic: None }] {
            let batcher = Batcher::new("relu", policy, cache.clone());
            let err = batcher.compute(graph.clone(), vec![("x".into(), floats(&[9, 3], 0))], deadline, None).await.unwrap_err();
            assert_eq!(err.to_string(), "a batch of 9 exceeds model 'relu''s max_batch_size of 8");
            assert!(batcher.compute(graph.clone(), vec![("x".into(), floats(&[8, 3], 0))], deadline, None).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_lone_compute_does_not_wait_and_a_queued_one_times_out() {
        let cache = Arc::new(GraphCache::new(Arc::new(InferencePool::with_size(1))));
        let graph = relu(&cache).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        // Nobody else is coming: a 1 s delay is not waited for.
        let batcher = Batcher::new("relu", dynamic(1_000_000, None), cache.clone());
        let started = Instant::now();
        batcher.compute(graph.clone(), vec![("x".into(), floats(&[1, 3], 0))], deadline, None).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        // Another instance might still come, so the compute waits, and leaves at its queue timeout.
        let batcher = Batcher::new("relu", dynamic(1_000_000, Some(Duration::from_millis(50))), cache.clone());
        let _other = batcher.interest();
        let err = batcher.compute(graph.clone(), vec![("x".into(), floats(&[1, 3], 0))], deadline, None).await.unwrap_err();
        assert!(err.to_string().contains("waited"), "{err}");
        assert!(started.elapsed() < Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let cache = Arc::new(GraphCache::new(Arc::new(InferencePool::with_size(1))));
        let graph = relu(&cache).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut policy = dynamic(10_000_000, Some(Duration::from_millis(200)));
        policy.dynamic.as_mut().unwrap().max_queue_size = 1;
        let batcher = Batcher::new("relu", policy, cache.clone());
        let _other = batcher.interest();
        let waiting = batcher.compute(graph.clone(), vec![("x".into(), floats(&[1, 3], 0))], deadline, None);
        let refused = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            batcher.compute(graph.clone(), vec![("x".into(), floats(&[1, 3], 1))], deadline, None).await
        };
        let (waited, refused) = tokio::join!(waiting, refused);
        assert!(matches!(refused, Err(SubmitError::QueueFull { max_queue_size: 1, .. })), "{refused:?}");
        assert!(waited.unwrap_err().to_string().contains("waited"));
    }

    #[test]
    fn batching_a_model_without_a_batch_axis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (onnx, description) = (dir.path().join("outer.onnx"), dir.path().join("outer.json"));
        std::fs::write(&onnx, onnx_bytes::outer_product(4)).unwrap();
        std::fs::write(&description, r#"{"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 100}}"#).unwrap();
        let err = BatchPolicy::from_description("outer", &description, &onnx, true).unwrap_err().to_string();
        assert_eq!(err, "model 'outer' asks for dynamic batching, but its input 'a' has a fixed first dimension of 4");
        std::fs::write(&onnx, onnx_bytes::symbolic_relu()).unwrap();
        let policy = BatchPolicy::from_description("relu", &description, &onnx, true).unwrap();
        assert_eq!(policy.max_batch_size, 4);
        assert_eq!(policy.dynamic.unwrap().max_queue_delay, Duration::from_micros(100));
        let off = BatchPolicy::from_description("relu", &description, &onnx, false).unwrap();
        assert_eq!(off, BatchPolicy { max_batch_size: 4, dynamic: None });
        std::fs::write(&description, r#"{"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_us": 100}}"#).unwrap();
        let err = BatchPolicy::from_description("relu", &description, &onnx, true).unwrap_err().to_string();
        assert!(err.contains("unknown field `max_queue_delay_us`"), "{err}");
    }
}
