//! What each request may use, and how many requests a component takes in: [`Limits`] (host-wide
//! defaults with a component's `tool.spindle` overrides) and [`Admission`] (bounded concurrency
//! with a bounded queue; beyond it, 503).

use crate::manifest::SpindleSettings;
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
    /// Requests a component runs at once.
    pub max_concurrent: usize,
    /// Requests that may wait for a slot; beyond that, 503 with `Retry-After`.
    pub max_queued: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            body_timeout: Duration::from_secs(30),
            max_concurrent: 32,
            max_queued: 128,
        }
    }
}

impl Limits {
    /// These limits with a component's own settings applied.
    pub fn with(&self, settings: &SpindleSettings) -> Self {
        Self {
            memory_bytes: settings.memory_limit_mib.map_or(self.memory_bytes, |m| (m as usize) << 20),
            timeout: settings.timeout_ms.map_or(self.timeout, Duration::from_millis),
            max_concurrent: settings.max_concurrent_requests.unwrap_or(self.max_concurrent).max(1),
            max_queued: settings.max_queued_requests.unwrap_or(self.max_queued),
            ..self.clone()
        }
    }
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

    /// Waits for a slot, or refuses at once when the queue is full.
    pub async fn enter(&self) -> Result<SemaphorePermit<'_>, QueueFull> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueFull);
        }
        let permit = self.running.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| QueueFull)
    }
}
