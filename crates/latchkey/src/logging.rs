//! Structured logs, as text for people or JSON for collectors, written off the serving path.
//!
//! Formatting happens where the event is raised (the access log by a layer of its own,
//! [`crate::access_line`], as cheap as its line); the finished line goes into a per-thread
//! shard of a bounded buffer ([`crate::log_buffer`]) that one writer thread empties into
//! stdout in batches. A slow or paused log reader fills the buffer, never a serving thread:
//! lines that find it full are dropped and counted, the count is logged when the reader
//! catches up and exported as `latchkey_log_lines_dropped_total`, and on a clean shutdown
//! everything buffered is written out (bounded in time).

use std::{
    io::Write,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, fmt, fmt::MakeWriter, layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::{access_line, cli::LogFormat, error::Error, log_buffer::LineBuffer};

/// How long a clean shutdown waits for the log reader to take what is buffered.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines dropped so far, for the metric.
static DROPPED: OnceLock<Arc<AtomicU64>> = OnceLock::new();

/// The count of log lines dropped so far (`None` before logging starts).
pub fn dropped() -> Option<Arc<AtomicU64>> {
    DROPPED.get().cloned()
}

/// Hands each line the general formatter finishes to the buffer.
#[derive(Clone)]
struct BufferWriter(LineBuffer);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> BufferWriter {
        self.clone()
    }
}

/// Keeps the writer thread; dropping it writes out what is buffered.
pub struct LogGuard {
    buffer: LineBuffer,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LogGuard {
    /// Write out every buffered line and stop the writer, waiting up to `timeout` for a slow
    /// reader; the number of lines dropped during the run is logged first.
    fn stop(&mut self, timeout: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped_total = dropped,
                "log lines dropped during this run because the log reader was slow"
            );
        }
        self.buffer.stop();
        crate::log_buffer::join_within(thread, timeout);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.stop(FLUSH_TIMEOUT);
    }
}

/// A line reporting dropped lines, in the configured format (written by the writer itself,
/// so it cannot be dropped).
fn dropped_line(format: LogFormat, dropped: u64) -> String {
    let ts = humantime::format_rfc3339_micros(SystemTime::now());
    let msg = "log lines were dropped while the log reader was slow";
    match format {
        LogFormat::Json => format!(
            "{{\"timestamp\":\"{ts}\",\"level\":\"WARN\",\"message\":\"{msg}\",\"dropped\":{dropped},\"target\":\"latchkey::logging\"}}\n"
        ),
        LogFormat::Text => format!("{ts}  WARN latchkey::logging: {msg} dropped={dropped}\n"),
    }
}

/// Start logging to stdout through a buffer of `buffer_lines` lines per logging thread.
pub fn init(format: LogFormat, filter: &str, buffer_lines: usize) -> Result<LogGuard, Error> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| Error::Usage(format!("--log-level {filter:?}: {e}")))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let dropped = Arc::new(AtomicU64::new(0));
    let buffer = LineBuffer::new(buffer_lines, dropped.clone());
    let report = match format {
        LogFormat::Json => |n| dropped_line(LogFormat::Json, n),
        LogFormat::Text => |n| dropped_line(LogFormat::Text, n),
    };
    let thread = buffer
        .start(
            std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            report,
        )
        .map_err(|e| Error::Logging(e.to_string()))?;
    let general = fmt::layer()
        .with_writer(BufferWriter(buffer.clone()))
        .with_ansi(ansi);
    let general = match format {
        LogFormat::Text => general.boxed(),
        LogFormat::Json => general
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
    };
    let not_access = filter_fn(|meta| meta.target() != access_line::TARGET);
    let access = access_line::AccessLayer {
        format,
        out: buffer.clone(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(general.with_filter(not_access))
        .with(access)
        .try_init()
        .map_err(|e| Error::Logging(e.to_string()))?;
    let _ = DROPPED.set(dropped.clone());
    Ok(LogGuard {
        buffer,
        dropped,
        thread: Some(thread),
    })
}
