//! Structured logs, as text for people or JSON for collectors, written off the serving path.
//!
//! Formatting happens where the event is raised; the finished line goes into a bounded queue
//! that one writer thread empties into stdout. A slow or paused log reader fills the queue,
//! never a serving thread: lines that find the queue full are dropped and counted, the count
//! is logged when the reader catches up and exported as `latchkey_log_lines_dropped_total`,
//! and on a clean shutdown everything queued is written out (bounded in time).

use std::{
    io::Write,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use tracing_subscriber::{EnvFilter, fmt, fmt::MakeWriter};

use crate::{cli::LogFormat, error::Error};

/// How long a clean shutdown waits for the log reader to take what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

enum Msg {
    Line(Vec<u8>),
    Stop,
}

/// Lines dropped so far, for the metric.
static DROPPED: OnceLock<Arc<AtomicU64>> = OnceLock::new();

/// The count of log lines dropped so far (`None` before logging starts).
pub fn dropped() -> Option<Arc<AtomicU64>> {
    DROPPED.get().cloned()
}

/// Hands finished lines to the writer thread without ever waiting.
#[derive(Clone)]
struct QueueWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Msg::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> QueueWriter {
        self.clone()
    }
}

/// Keeps the writer thread; dropping it writes out what is queued (see [`LogGuard::finish`]).
pub struct LogGuard {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LogGuard {
    /// Write out every queued line and stop the writer, waiting up to `timeout` for a slow
    /// reader; the number of lines dropped during the run is logged first.
    pub fn finish(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped_total = dropped,
                "log lines dropped during this run because the log reader was slow"
            );
        }
        // Wait for room rather than drop the stop message: a reader that came back drains the
        // queue, one that never does costs at most the timeout.
        let mut stop = Msg::Stop;
        loop {
            match self.tx.try_send(stop) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    stop = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let guard = LogGuard {
                tx: self.tx.clone(),
                dropped: self.dropped.clone(),
                thread: self.thread.take(),
            };
            guard.finish(FLUSH_TIMEOUT);
        }
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

fn writer_loop(rx: Receiver<Msg>, mut out: impl Write, dropped: Arc<AtomicU64>, format: LogFormat) {
    let mut reported = 0;
    loop {
        let Ok(mut msg) = rx.recv() else { return };
        // Write what is queued, then report drops and flush once.
        let stop = loop {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Msg::Stop => break true,
            }
            match rx.try_recv() {
                Ok(m) => msg = m,
                Err(_) => break false,
            }
        };
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = out.write_all(dropped_line(format, now - reported).as_bytes());
            reported = now;
        }
        let _ = out.flush();
        if stop {
            return;
        }
    }
}

/// Start logging to stdout through a queue of `buffer_lines` lines.
pub fn init(format: LogFormat, filter: &str, buffer_lines: usize) -> Result<LogGuard, Error> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| Error::Usage(format!("--log-level {filter:?}: {e}")))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (tx, rx) = mpsc::sync_channel(buffer_lines.max(16));
    let dropped = Arc::new(AtomicU64::new(0));
    let thread = {
        let dropped = dropped.clone();
        std::thread::Builder::new()
            .name("latchkey-log".into())
            .spawn(move || {
                let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
                writer_loop(rx, out, dropped, format);
            })
            .map_err(|e| Error::Logging(e.to_string()))?
    };
    let writer = QueueWriter {
        tx: tx.clone(),
        dropped: dropped.clone(),
    };
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| Error::Logging(e.to_string()))?;
    let _ = DROPPED.set(dropped.clone());
    Ok(LogGuard {
        tx,
        dropped,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records what reached it.
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_the_writer_reports_it() {
        let (tx, rx) = mpsc::sync_channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut w = QueueWriter {
            tx: tx.clone(),
            dropped: dropped.clone(),
        };
        for i in 0..5 {
            let _ = w.write(format!("line {i}\n").as_bytes());
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        let sink = Sink::default();
        let out = sink.clone();
        let d = dropped.clone();
        let t = std::thread::spawn(move || writer_loop(rx, out, d, LogFormat::Json));
        let _ = tx.send(Msg::Stop);
        let _ = t.join();
        let text = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert!(text.starts_with("line 0\nline 1\n"), "{text}");
        let last = text.lines().nth(2).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
        assert_eq!(v["dropped"], 3, "{text}");
    }
}
