//! What a guest writes to stdout and stderr: logged line by line as `spindle::guest` events,
//! attributed to its component (and, inside the request's span, to the request), up to a budget
//! per instance, that is per request; past it the rest is dropped with one warning, so one
//! request cannot flood the host's log or make it buffer. Filter it with `RUST_LOG`
//! (`spindle::guest=off`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of output one instance may have logged, stdout and stderr together.
pub const OUTPUT_BUDGET: usize = 64 << 10;

/// Longest line logged as one event; longer ones are split.
const MAX_LINE: usize = 4096;

/// One instance's budget, shared by its stdout and stderr.
#[derive(Default)]
pub struct OutputBudget {
    logged: AtomicUsize,
    warned: AtomicBool,
}

impl OutputBudget {
    fn spent(&self) -> bool {
        self.logged.load(Ordering::Relaxed) > OUTPUT_BUDGET
    }
}

/// stdout or stderr of one instance.
#[derive(Clone)]
pub struct GuestOutput(Arc<Stream>);

struct Stream {
    component: Arc<str>,
    name: &'static str,
    budget: Arc<OutputBudget>,
    /// The line not ended yet.
    line: Mutex<Vec<u8>>,
}

impl GuestOutput {
    /// The `name` stream (`stdout` or `stderr`) of an instance of `component`.
    pub fn new(component: Arc<str>, name: &'static str, budget: Arc<OutputBudget>) -> Self {
        Self(Arc::new(Stream { component, name, budget, line: Mutex::default() }))
    }
}

impl Stream {
    /// Logs each complete line, and each `MAX_LINE` bytes of a longer one; once the instance's
    /// budget is spent, drops the rest without looking at it. Linear in what it logs.
    fn write(&self, bytes: &[u8]) {
        if self.budget.spent() {
            return;
        }
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (mut text, ended) = match piece.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (piece, false),
            };
            while !text.is_empty() {
                let take = (MAX_LINE - line.len()).min(text.len());
                line.extend_from_slice(&text[..take]);
                text = &text[take..];
                if line.len() == MAX_LINE {
                    self.emit(&mut line);
                }
            }
            if ended {
                self.emit(&mut line);
            }
            if self.budget.spent() {
                line.clear();
                return;
            }
        }
    }

    fn emit(&self, line: &mut Vec<u8>) {
        let len = line.len() + 1;
        let before = self.budget.logged.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) <= OUTPUT_BUDGET {
            let text = String::from_utf8_lossy(line);
            tracing::info!(target: "spindle::guest", component = %self.component, stream = self.name, "{}", text.trim_end_matches('\r'));
        } else if !self.budget.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "spindle::guest",
                component = %self.component,
                "this instance wrote more than {OUTPUT_BUDGET} bytes to stdout and stderr; the rest is dropped"
            );
        }
        line.clear();
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut line = std::mem::take(self.line.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !line.is_empty() {
            self.emit(&mut line);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // Written where the guest writes, not from a task of its own, so that the lines belong to
    // the request's span.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_write_without_newlines_stops_at_the_budget() {
        let budget = Arc::new(OutputBudget::default());
        let out = GuestOutput::new("c".into(), "stdout", budget.clone());
        // Was quadratic: each 4 KiB line moved the rest of a 64 MiB buffer.
        out.0.write(&vec![b'x'; 64 << 20]);
        out.0.write(b"more\n");
        assert!(budget.spent());
        assert!(out.0.line.lock().unwrap().is_empty(), "nothing is buffered past the budget");
    }
}
