//! What each request may use, and how many requests a component takes in: [`Limits`] (host-wide
//! defaults with a component's `tool.spindle` overrides), [`InstanceLimiter`] (what one instance
//! may allocate inside wasmtime) and [`Admission`] (bounded concurrency with a bounded queue;
//! beyond it, 503).

use crate::manifest::SpindleSettings;
use crate::nn::NnLimits;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Host-wide limits; a component's `tool.spindle` settings override them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Wall-clock deadline per request.
    pub timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// How long a client may take to send its body (408 after).
    pub body_timeout: Duration,
    /// Largest response body a guest may write (500 above).
    pub max_response_bytes: usize,
    /// Requests a component runs at once.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond that, 503 with `Retry-After`.
    pub max_queued: usize,
    /// What the component may make the host spend through `wasi:nn`.
    pub nn: NnLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            body_timeout: Duration::from_secs(30),
            max_response_bytes: 64 << 20,
            max_concurrent: 32,
            max_queued: 128,
            nn: NnLimits::default(),
        }
    }
}

impl Limits {
    /// These limits with a component's own settings applied.
    pub fn with(&self, settings: &SpindleSettings) -> Self {
        let memory_bytes = settings.memory_limit_mib.map_or(self.memory_bytes, |m| (m as usize) << 20);
        Self {
            memory_bytes,
            timeout: settings.timeout_ms.map_or(self.timeout, Duration::from_millis),
            max_concurrent: settings.max_concurrent_requests.unwrap_or(self.max_concurrent).max(1),
            max_queued: settings.max_queued_requests.unwrap_or(self.max_queued),
            max_body_bytes: settings.max_body_bytes.map_or(self.max_body_bytes, saturating_usize),
            body_timeout: settings.body_timeout_ms.map_or(self.body_timeout, Duration::from_millis),
            max_response_bytes: settings.max_response_bytes.map_or(self.max_response_bytes, saturating_usize),
            nn: NnLimits {
                max_model_bytes: settings.max_model_bytes.map_or(self.nn.max_model_bytes, saturating_usize),
                max_guest_graph_bytes: settings.max_guest_graph_bytes.map_or(self.nn.max_guest_graph_bytes, saturating_usize),
                // By default as much as the instance's own memory.
                max_tensor_bytes: settings.nn_memory_limit_mib.map_or(memory_bytes, |m| saturating_usize(m).saturating_mul(1 << 20)),
                allow_dynamic_shapes: settings.allow_dynamic_shapes.unwrap_or(self.nn.allow_dynamic_shapes),
            },
        }
    }
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Bounded concurrency with a bounded queue.
pub struct Admission {
    running: Semaphore,
    waiting: AtomicUsize,
    max_queued: usize,
}

/// Why a request was not admitted: every slot is taken and the queue is full.
#[derive(Debug)]
pub struct QueueFull;

impl Admission {
    /// Admission for a component with these limits.
    pub fn new(limits: &Limits) -> Self {
        Self { running: Semaphore::new(limits.max_concurrent), waiting: AtomicUsize::new(0), max_queued: limits.max_queued }
    }

    /// Waits for a slot, or refuses at once when the queue is full. A caller that stops
    /// waiting (its future dropped: a deadline, a reset stream) gives its place in the queue back.
    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, QueueFull> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueFull);
        }
        let _place = QueuePlace(&self.waiting);
        self.running.acquire().await.map_err(|_| QueueFull)
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// A place in the queue, given back however the wait ends.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one instance may allocate inside wasmtime: its linear memories together (not each) up to
/// the component's memory limit, and a bounded number of tables, table elements, instances and
/// memories. A refused `memory.grow` fails as the guest asked (it usually traps).
pub struct InstanceLimiter {
    memory_limit: usize,
    memory_total: usize,
    table_elements_total: usize,
}

/// Table elements one instance may have, across its tables.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances, tables and memories one store may create.
const MAX_INSTANCES: usize = 256;
const MAX_TABLES: usize = 256;
const MAX_MEMORIES: usize = 32;

impl InstanceLimiter {
    /// The limiter for one instance of a component with these limits.
    pub fn new(limits: &Limits) -> Self {
        Self { memory_limit: limits.memory_bytes, memory_total: 0, table_elements_total: 0 }
    }
}

impl wasmtime::ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_total.saturating_sub(current).saturating_add(desired);
        if total > self.memory_limit {
            return Ok(false);
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements_total.saturating_sub(current).saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements_total = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[tokio::test]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let admission = Admission::new(&Limits { max_concurrent: 1, max_queued: 1, ..Limits::default() });
        let running = admission.enter().await.expect("the free slot");
        let wait = std::time::Duration::from_millis(20);
        // Queued, then dropped by the timeout: its place must come back.
        assert!(tokio::time::timeout(wait, admission.enter()).await.is_err(), "queued, not refused");
        assert_eq!(admission.waiting(), 0);
        // So the next one queues too, rather than being refused as if the queue were still full.
        assert!(tokio::time::timeout(wait, admission.enter()).await.is_err(), "queued again");
        // And with the one place taken, a second waiter is refused.
        let queued = admission.enter();
        let mut queued = std::pin::pin!(queued);
        assert!(futures::poll!(queued.as_mut()).is_pending());
        assert_eq!(admission.waiting(), 1);
        assert!(matches!(admission.enter().await, Err(QueueFull)));
        drop(running);
        assert!(queued.await.is_ok());
        assert_eq!(admission.waiting(), 0);
    }

    #[test]
    fn memories_count_together_against_the_limit() {
        let mut limiter = InstanceLimiter::new(&Limits { memory_bytes: 100, ..Limits::default() });
        assert!(limiter.memory_growing(0, 60, None).unwrap(), "first memory");
        assert!(!limiter.memory_growing(0, 60, None).unwrap(), "a second memory may not double the grant");
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(!limiter.memory_growing(40, 41, None).unwrap());
        assert!(limiter.memory_growing(60, 60, None).unwrap(), "no growth");
        assert!(!limiter.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}
