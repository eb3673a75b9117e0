//! The access log's lines (target `latchkey::access`, one per token request), formatted by a
//! layer of their own: the same fields, order and shape as every other line of the chosen
//! format, written straight into a reused buffer instead of through the general formatter,
//! which costs several times more per line. The log stays on by default at full detail; this
//! keeps it from showing in tokens per CPU-second.

use std::{cell::RefCell, fmt::Write as _, time::SystemTime};

use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{layer::Context, registry::LookupSpan};

use crate::{cli::LogFormat, log_buffer::LineBuffer};

/// The access log's target.
pub const TARGET: &str = "latchkey::access";

/// Formats `latchkey::access` events into the line buffer; every other event passes by.
pub struct AccessLayer {
    pub format: LogFormat,
    pub out: LineBuffer,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S> tracing_subscriber::Layer<S> for AccessLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != TARGET {
            return;
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            format_line(
                &mut line,
                self.format,
                *meta.level(),
                SystemTime::now(),
                event,
            );
            self.out.append(&line);
        });
    }
}

/// One line, as the general formatter would write it.
fn format_line(
    line: &mut Vec<u8>,
    format: LogFormat,
    level: Level,
    now: SystemTime,
    event: &Event<'_>,
) {
    let ts = humantime::format_rfc3339_micros(now);
    match format {
        LogFormat::Json => {
            let _ = write!(
                Bytes(line),
                "{{\"timestamp\":\"{ts}\",\"level\":\"{level}\""
            );
            event.record(&mut JsonFields { line });
            line.extend_from_slice(b",\"target\":");
            json_string(line, TARGET);
            line.extend_from_slice(b"}\n");
        }
        LogFormat::Text => {
            let _ = write!(Bytes(line), "{ts} {level:>5} {TARGET}:");
            event.record(&mut TextFields { line });
            line.push(b'\n');
        }
    }
}

/// `fmt::Write` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn json_string(line: &mut Vec<u8>, s: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *line, s);
}

/// JSON members, `,"name":value`, the message first as the general formatter writes it.
struct JsonFields<'a> {
    line: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.line.push(b',');
        json_string(self.line, field.name());
        self.line.push(b':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        json_string(self.line, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(Bytes(self.line), "{value}");
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(Bytes(self.line), "{value}");
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        let _ = write!(Bytes(self.line), "{value}");
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        json_string(self.line, &format!("{value:?}"));
    }
}

/// ` message name=value …`, strings quoted the way the general formatter's Debug does.
struct TextFields<'a> {
    line: &'a mut Vec<u8>,
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(Bytes(self.line), " {}={value:?}", field.name());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(Bytes(self.line), " {value:?}");
        } else {
            let _ = write!(Bytes(self.line), " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, atomic::AtomicU64};

    use tracing_subscriber::{Layer, fmt, layer::SubscriberExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    fn emit() {
        tracing::info!(
            target: "latchkey::access",
            client_id = "a \"quoted\" \\ id",
            grant_type = "client_credentials",
            auth = "client_secret_basic",
            result = "success",
            status = 200u16,
            latency_us = 17u64,
            suppressed = 0u64,
            "token request"
        );
    }

    /// The general formatter's line and this layer's, for the same event.
    fn both(format: LogFormat) -> (String, String) {
        let general = Sink::default();
        let layer = fmt::layer().with_writer(general.clone()).with_ansi(false);
        let layer = match format {
            LogFormat::Json => layer
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .boxed(),
            LogFormat::Text => layer.boxed(),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
        let buffer = LineBuffer::new(16, Arc::new(AtomicU64::new(0)));
        let ours = Sink::default();
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(AccessLayer {
                format,
                out: buffer.clone(),
            }),
            emit,
        );
        let writer = buffer.start(ours.clone(), |_| String::new()).unwrap();
        buffer.stop();
        crate::log_buffer::join_within(writer, std::time::Duration::from_secs(5));
        let text = |s: &Sink| String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
        (text(&general), text(&ours))
    }

    /// Lines equal but for the timestamp.
    #[test]
    fn lines_match_the_general_formatter() {
        let (general, ours) = both(LogFormat::Text);
        assert_eq!(general[27..], ours[27..], "{general}\n{ours}");
        assert!(ours.ends_with('\n'));
        let (general, ours) = both(LogFormat::Json);
        // `{"timestamp":"` and 27 bytes of time: the rest is byte for byte the same.
        assert_eq!(general[41..], ours[41..], "{general}\n{ours}");
        let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(v["client_id"], "a \"quoted\" \\ id");
    }
}
