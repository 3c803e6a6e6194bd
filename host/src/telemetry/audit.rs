//! The audit log (`--audit-log FILE`, or `-` for stdout): one JSON line per request, handed to a
//! writer thread of its own that writes each line whole and flushes it, so concurrent requests
//! never interleave and a slow disk never holds up the threads serving requests. Past
//! [`QUEUED_LINES`] lines waiting, new ones are dropped and counted
//! (`spindle_audit_lines_dropped`). It names the principal, never the token.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines that may wait for the writer.
pub const QUEUED_LINES: usize = 16_384;

/// Where audit lines go.
pub struct AuditLog {
    lines: Mutex<Option<std::sync::mpsc::SyncSender<Vec<u8>>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// One request, as the audit log records it.
#[derive(Serialize)]
pub struct AuditRecord<'a> {
    /// When it arrived, RFC 3339 in UTC with microseconds.
    pub time: String,
    /// Its `x-request-id`.
    pub request_id: &'a str,
    /// The principal whose token it carried, if its route needs one.
    pub principal: Option<&'a str>,
    /// The client's address.
    pub client: String,
    /// The method.
    pub method: &'a str,
    /// The path asked for (at most 256 bytes of it).
    pub path: &'a str,
    /// The route that matched.
    pub route: Option<&'a str>,
    /// The component that answered.
    pub component: Option<&'a str>,
    /// The named models its instance loaded.
    pub models: &'a [String],
    /// The component's engine and device.
    pub engine: Option<&'a str>,
    /// …
    pub device: Option<&'a str>,
    /// The status sent.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From its headers to its response, in microseconds.
    pub duration_us: u64,
    /// The client went away before the answer (status 499).
    pub cancelled: bool,
}

impl AuditLog {
    /// Appends to `target` (created with mode 0600), or writes to stdout for `-`.
    pub fn open(target: &Path) -> Result<Self> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            let mut options = std::fs::OpenOptions::new();
            options.append(true).create(true);
            // Created private; never through a link someone else planted.
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
            Box::new(options.open(target).with_context(|| format!("opening the audit log {}", target.display()))?)
        };
        let (lines, queued) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED_LINES);
        let writer = std::thread::Builder::new().name("audit-log".into()).spawn(move || {
            let mut out = out;
            for line in queued {
                if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                    tracing::error!("writing the audit log: {e}");
                }
            }
        })?;
        Ok(Self { lines: Mutex::new(Some(lines)), writer: Some(writer) })
    }

    /// Writes one record as one line.
    pub fn record(&self, record: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => return tracing::error!("audit record: {e}"),
        };
        line.push(b'\n');
        let sent = self.lines.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|lines| lines.try_send(line));
        if !matches!(sent, Some(Ok(()))) {
            metrics::counter!(crate::telemetry::metrics::AUDIT_LINES_DROPPED).increment(1);
        }
    }
}

impl Drop for AuditLog {
    /// Writes every line still queued before the log goes.
    fn drop(&mut self) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// `time` as RFC 3339 in UTC, with microseconds.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rest / 3600, rest % 3600 / 60, rest % 60, since.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_micros(1_795_996_800_123_456)), "2026-11-30T00:00:00.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000Z");
    }
}
