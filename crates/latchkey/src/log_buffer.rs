//! Finished log lines on their way to stdout, without a wake-up or a shared lock per line.
//!
//! Each thread that logs appends to a shard of its own (a lock only the writer ever contends
//! for, and only to swap the shard's buffer out). One writer thread takes every shard's lines
//! a few times a second, or as soon as a shard is half full, and writes them in one go. So a
//! serving thread pays a copy into memory per line, never a syscall or a futex wake, and adding
//! cores adds shards, not contention. A slow or paused reader fills the shards: lines beyond a
//! shard's bound are dropped and counted, never waited for. Lines of one thread stay in order;
//! lines of different threads are interleaved per batch (each carries its timestamp).

use std::{
    cell::RefCell,
    io::Write,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{JoinHandle, Thread},
    time::{Duration, Instant},
};

/// How often the writer takes what is buffered when no shard asks sooner.
const TICK: Duration = Duration::from_millis(25);

/// Lines one thread has buffered.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
}

struct Shard {
    pending: Mutex<Pending>,
    /// Its thread has exited: the writer drains it one last time and forgets it.
    retired: AtomicBool,
}

struct Inner {
    id: u64,
    shards: Mutex<Vec<Arc<Shard>>>,
    lines_per_shard: usize,
    dropped: Arc<AtomicU64>,
    stop: AtomicBool,
    writer: Mutex<Option<Thread>>,
}

/// The buffer every log line goes through; cheap to clone.
#[derive(Clone)]
pub struct LineBuffer {
    inner: Arc<Inner>,
}

/// This thread's shard (and which buffer it belongs to: tests make several buffers).
struct Local {
    id: u64,
    shard: Arc<Shard>,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.shard.retired.store(true, Ordering::Release);
    }
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl LineBuffer {
    /// A buffer holding at most `lines_per_thread` lines per logging thread.
    pub fn new(lines_per_thread: usize, dropped: Arc<AtomicU64>) -> LineBuffer {
        LineBuffer {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                shards: Mutex::new(Vec::new()),
                lines_per_shard: lines_per_thread.max(16),
                dropped,
                stop: AtomicBool::new(false),
                writer: Mutex::new(None),
            }),
        }
    }

    /// Append one finished line (or drop and count it when this thread's shard is full).
    pub fn append(&self, line: &[u8]) {
        let inner = &self.inner;
        let wake = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if local.as_ref().is_none_or(|l| l.id != inner.id) {
                let shard = Arc::new(Shard {
                    pending: Mutex::new(Pending::default()),
                    retired: AtomicBool::new(false),
                });
                lock(&inner.shards).push(shard.clone());
                *local = Some(Local {
                    id: inner.id,
                    shard,
                });
            }
            let Some(Local { shard, .. }) = local.as_ref() else {
                return false;
            };
            let mut p = lock(&shard.pending);
            if p.lines >= inner.lines_per_shard {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            p.bytes.extend_from_slice(line);
            p.lines += 1;
            p.lines == inner.lines_per_shard / 2
        });
        // Outside the TLS borrow (and only once per half shard): ask for an early write.
        if wake && let Some(t) = lock(&inner.writer).as_ref() {
            t.unpark();
        }
    }

    /// Start the writer thread; `report` makes the line telling how many lines were dropped.
    pub fn start<W: Write + Send + 'static>(
        &self,
        out: W,
        report: fn(u64) -> String,
    ) -> std::io::Result<JoinHandle<()>> {
        let this = self.clone();
        let handle = std::thread::Builder::new()
            .name("latchkey-log".into())
            .spawn(move || this.writer_loop(out, report))?;
        *lock(&self.inner.writer) = Some(handle.thread().clone());
        Ok(handle)
    }

    /// Ask the writer to write out everything buffered and stop.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = lock(&self.inner.writer).as_ref() {
            t.unpark();
        }
    }

    /// Take every shard's lines and write them; returns whether anything was written.
    fn drain(&self, out: &mut impl Write, spare: &mut Vec<u8>) -> bool {
        let shards: Vec<Arc<Shard>> = lock(&self.inner.shards).clone();
        let mut wrote = false;
        for shard in &shards {
            // Read before taking the lines: a shard seen retired here gets no line later.
            let retired = shard.retired.load(Ordering::Acquire);
            {
                let mut p = lock(&shard.pending);
                std::mem::swap(&mut p.bytes, spare);
                p.lines = 0;
            }
            if !spare.is_empty() {
                let _ = out.write_all(spare);
                wrote = true;
            }
            spare.clear();
            if retired {
                lock(&self.inner.shards).retain(|s| !Arc::ptr_eq(s, shard));
            }
        }
        wrote
    }

    fn writer_loop(self, mut out: impl Write, report: fn(u64) -> String) {
        let mut spare = Vec::new();
        let mut reported = 0;
        loop {
            let stopping = self.inner.stop.load(Ordering::Acquire);
            let wrote = self.drain(&mut out, &mut spare);
            let dropped = self.inner.dropped.load(Ordering::Relaxed);
            if dropped > reported {
                let _ = out.write_all(report(dropped - reported).as_bytes());
                reported = dropped;
            }
            if wrote || stopping {
                let _ = out.flush();
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(TICK);
        }
    }
}

/// Wait up to `timeout` for the writer to finish (a reader that never comes back costs at
/// most that).
pub fn join_within(thread: JoinHandle<()>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that records what reached it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn report(n: u64) -> String {
        format!("dropped {n}\n")
    }

    #[test]
    fn a_full_shard_drops_and_counts_and_the_writer_reports_it() {
        let dropped = Arc::new(AtomicU64::new(0));
        let buffer = LineBuffer::new(16, dropped.clone());
        for i in 0..20 {
            buffer.append(format!("line {i}\n").as_bytes());
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
        let sink = Sink::default();
        let t = buffer.start(sink.clone(), report).unwrap();
        buffer.stop();
        join_within(t, Duration::from_secs(5));
        let text = String::from_utf8(lock(&sink.0).clone()).unwrap();
        let expected: String = (0..16).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, format!("{expected}dropped 4\n"));
    }

    #[test]
    fn lines_of_every_thread_arrive_once_and_in_order_per_thread() {
        let dropped = Arc::new(AtomicU64::new(0));
        let buffer = LineBuffer::new(100_000, dropped.clone());
        let sink = Sink::default();
        let writer = buffer.start(sink.clone(), report).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = buffer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        b.append(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        buffer.stop();
        join_within(writer, Duration::from_secs(5));
        let text = String::from_utf8(lock(&sink.0).clone()).unwrap();
        let mut next = [0u32; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<u32>().unwrap(),
                next[t],
                "thread {t} out of order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [5000; 4]);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        // The exited threads' shards are forgotten once drained.
        assert!(lock(&buffer.inner.shards).is_empty());
    }
}
