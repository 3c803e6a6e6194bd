//! Where engine work runs: never on a thread that is serving HTTP, and at most one job per core
//! at a time, so a burst of requests queues here instead of oversubscribing the machine. A graph
//! whose runs are typically short stays on the async worker that asks ([`RunHistory`]).

use super::backend::{self, BackendError, NamedTensor, RunControl};
use super::graphs::SharedGraph;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Runs that typically take less stay on the async worker that asked: handing the worker's other
/// tasks to a new thread (`block_in_place`) costs ~13 µs, a quarter of a small CNN's run, and
/// tokio's guidance for the time between a task's yields is 10–100 µs.
const INLINE_BELOW: Duration = Duration::from_micros(100);

/// How long one graph's runs take, which decides whether the next run may stay on the async
/// worker that asks for it.
pub struct RunHistory {
    /// Moving average of the engine time in µs; `u64::MAX` until the first run.
    typical_us: AtomicU64,
    /// The largest input (bytes) of a run that took less than [`INLINE_BELOW`]: a larger one may
    /// take longer, so it does not run inline on the strength of smaller ones.
    quick_input_bytes: AtomicU64,
}

impl Default for RunHistory {
    fn default() -> Self {
        Self { typical_us: AtomicU64::new(u64::MAX), quick_input_bytes: AtomicU64::new(0) }
    }
}

impl RunHistory {
    fn runs_inline(&self, input_bytes: u64) -> bool {
        self.typical_us.load(Ordering::Relaxed) < INLINE_BELOW.as_micros() as u64
            && input_bytes <= self.quick_input_bytes.load(Ordering::Relaxed)
    }

    fn observe(&self, took: Duration, input_bytes: u64) {
        if took < INLINE_BELOW {
            self.quick_input_bytes.fetch_max(input_bytes, Ordering::Relaxed);
        }
        let sample = took.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let _ = self.typical_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |typical| {
            Some(if typical == u64::MAX { sample } else { typical - typical / 8 + sample / 8 })
        });
    }
}

/// The engine-work pool: one slot per job the machine's cores can run at once.
pub struct InferencePool {
    permits: Arc<tokio::sync::Semaphore>,
}

impl InferencePool {
    /// One job per `threads_per_job` cores, at least one.
    pub fn sized_to_machine(threads_per_job: usize) -> Self {
        Self::with_size(std::thread::available_parallelism().map_or(1, |n| n.get()) / threads_per_job.max(1))
    }

    /// `size` jobs at once (at least one).
    pub fn with_size(size: usize) -> Self {
        Self { permits: Arc::new(tokio::sync::Semaphore::new(size.max(1))) }
    }

    /// Runs `graph` once a slot is free: on the calling worker when its runs are typically
    /// short, else handing the worker's other tasks to another thread. The run stops at
    /// `deadline` (tract between nodes; ONNX Runtime through its terminate flag, set by a timer
    /// on another worker), so its slot is free again by then. Returns the outputs and the
    /// engine time.
    pub async fn compute(
        &self,
        graph: Arc<SharedGraph>,
        inputs: Vec<NamedTensor>,
        deadline: Instant,
    ) -> Result<(Vec<NamedTensor>, Duration), BackendError> {
        let input_bytes = inputs.iter().map(|(_, t)| t.data.len() as u64).sum();
        let inline = graph.history().runs_inline(input_bytes);
        let watches_deadline = graph.graph().watches_deadline();
        let control = Arc::new(RunControl::until(deadline));
        let work = {
            let control = control.clone();
            move || {
                let started = Instant::now();
                let outputs = backend::compute(graph.graph(), inputs, &control);
                let took = started.elapsed();
                graph.history().observe(took, input_bytes);
                outputs.map(|o| (o, took))
            }
        };
        let _slot = self.permits.acquire().await.map_err(|e| BackendError::Runtime(e.to_string()))?;
        if inline || watches_deadline {
            return if inline { work() } else { on_this_thread_or_blocking(work).await };
        }
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            control.stop();
        });
        let result = on_this_thread_or_blocking(work).await;
        timer.abort();
        result
    }

    /// Runs CPU-bound engine work that cannot be stopped (compiling a model) on a blocking
    /// thread once a slot is free. The slot stays taken until the work ends; the caller may stop
    /// waiting for it (its request's deadline) and the result is then dropped.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> Result<R, BackendError> + Send + 'static) -> Result<R, BackendError> {
        let slot = self.permits.clone().acquire_owned().await.map_err(|e| BackendError::Runtime(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| BackendError::Runtime(format!("inference task failed: {e}")))?
    }
}

/// On the multi-threaded runtime the calling worker becomes the inference thread and hands its
/// queued tasks to another worker: no thread hop, and I/O keeps flowing.
async fn on_this_thread_or_blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, BackendError> + Send + 'static,
) -> Result<R, BackendError> {
    if tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread) {
        return tokio::task::block_in_place(work);
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| BackendError::Runtime(format!("inference task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quick_runs_on_inputs_no_larger_than_seen_stay_on_the_worker() {
        let history = RunHistory::default();
        assert!(!history.runs_inline(100), "nothing known yet");
        history.observe(Duration::from_micros(50), 100);
        assert!(history.runs_inline(100));
        assert!(!history.runs_inline(101), "a larger input than any quick run");
        for _ in 0..40 {
            history.observe(Duration::from_millis(5), 100);
        }
        assert!(!history.runs_inline(100), "runs got slow");
    }
}
