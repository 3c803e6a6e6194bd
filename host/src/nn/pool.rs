//! Where engine work runs: never on a thread that is serving HTTP, and at most one job per core
//! at a time, so a burst of requests queues here instead of oversubscribing the machine. A graph
//! whose runs are typically short stays on the async worker that asks ([`RunHistory`]).

use super::backend::{self, BackendError, NamedTensor, RunControl};
use super::graphs::SharedGraph;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
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
    size: usize,
    permits: Arc<tokio::sync::Semaphore>,
    watchdog: Watchdog,
}

impl InferencePool {
    /// One job per `threads_per_job` cores, at least one.
    pub fn sized_to_machine(threads_per_job: usize) -> Self {
        Self::with_size(std::thread::available_parallelism().map_or(1, |n| n.get()) / threads_per_job.max(1))
    }

    /// `size` jobs at once (at least one).
    pub fn with_size(size: usize) -> Self {
        Self { size: size.max(1), permits: Arc::new(tokio::sync::Semaphore::new(size.max(1))), watchdog: Watchdog::start() }
    }

    /// Jobs it runs at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `graph` once a slot is free: on the calling worker when its runs are typically
    /// short, else handing the worker's other tasks to another thread. The run stops at
    /// `deadline`, inline or not (tract between nodes; ONNX Runtime through its terminate flag,
    /// set by the pool's watchdog thread), so its slot is free again by then, but for a single
    /// node that runs long. Returns the outputs and the engine time.
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
        if !watches_deadline {
            self.watchdog.watch(deadline, &control);
        }
        if inline { work() } else { on_this_thread_or_blocking(work).await }
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

/// Stops runs at their deadlines from a thread of its own, so it fires even while every async
/// worker is busy with engine work. Runs that end first leave only a dead `Weak` behind, dropped
/// when its deadline comes.
struct Watchdog {
    shared: Arc<(Mutex<BinaryHeap<Reverse<Watched>>>, Condvar)>,
}

struct Watched {
    at: Instant,
    control: Weak<RunControl>,
}

impl PartialEq for Watched {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Watched {}
impl PartialOrd for Watched {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Watched {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Watchdog {
    fn start() -> Self {
        let shared = Arc::new((Mutex::new(BinaryHeap::<Reverse<Watched>>::new()), Condvar::new()));
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new().name("spindle-watchdog".into()).spawn(move || {
            // Ends once the pool is gone; wakes at least every second to notice.
            while let Some(shared) = weak.upgrade() {
                let (heap, wake) = &*shared;
                let mut heap = heap.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(w)| w.at <= now) {
                    if let Some(Reverse(due)) = heap.pop()
                        && let Some(control) = due.control.upgrade()
                    {
                        control.stop();
                    }
                }
                let wait = heap.peek().map_or(Duration::from_secs(1), |Reverse(w)| w.at - now).min(Duration::from_secs(1));
                drop(wake.wait_timeout(heap, wait).unwrap_or_else(|e| e.into_inner()));
            }
        });
        if let Err(e) = spawned {
            tracing::error!("no watchdog thread, so ONNX Runtime runs are not stopped at their deadline: {e}");
        }
        Self { shared }
    }

    fn watch(&self, at: Instant, control: &Arc<RunControl>) {
        let (heap, wake) = &*self.shared;
        let mut heap = heap.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = heap.peek().is_none_or(|Reverse(w)| at < w.at);
        heap.push(Reverse(Watched { at, control: Arc::downgrade(control) }));
        if earliest {
            wake.notify_one();
        }
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

    #[test]
    fn the_watchdog_stops_runs_at_their_deadline_and_not_before() {
        let watchdog = Watchdog::start();
        let now = Instant::now();
        let late = Arc::new(RunControl::default());
        let soon = Arc::new(RunControl::default());
        watchdog.watch(now + Duration::from_secs(60), &late);
        watchdog.watch(now + Duration::from_millis(50), &soon);
        let started = Instant::now();
        while !soon.is_stopped() {
            assert!(started.elapsed() < Duration::from_secs(5), "the earlier deadline was not kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(!late.is_stopped());
    }
}
