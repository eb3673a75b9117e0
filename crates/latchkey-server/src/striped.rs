//! Counters and a histogram for the token path that no two cores write to the same cache line
//! of. A plain atomic counter (and prometheus-client's histogram, which takes a lock per
//! observation) is one line every serving core writes per request: with N cores it bounces
//! between them and the token rate stops scaling. Here each thread writes its own stripe, and
//! a scrape, which is rare, adds the stripes up.

use std::{
    cell::Cell,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// Stripes per metric: threads beyond this share stripes (still correct, just less spread).
pub(crate) const STRIPES: usize = 32;

/// One cache line pair per stripe (adjacent-line prefetch pulls lines in twos).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, assigned round-robin the first time it asks.
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

/// A monotonic counter, striped; clones share it.
#[derive(Clone)]
pub struct StripedCounter {
    stripes: Arc<[Padded<AtomicU64>]>,
}

impl Default for StripedCounter {
    fn default() -> Self {
        StripedCounter {
            stripes: (0..STRIPES).map(|_| Padded::default()).collect(),
        }
    }
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StripedCounter").field(&self.get()).finish()
    }
}

impl StripedCounter {
    pub fn inc(&self) {
        self.stripes[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One stripe of a histogram: a count per bucket (the last is +Inf) and the sum in
/// nanoseconds.
struct HistogramStripe {
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A latency histogram with fixed upper bounds, striped; clones share it.
#[derive(Clone)]
pub struct StripedHistogram {
    bounds: Arc<[f64]>,
    /// The bounds in nanoseconds, for the comparison on the hot path.
    bounds_nanos: Arc<[u64]>,
    stripes: Arc<[Padded<HistogramStripe>]>,
}

impl std::fmt::Debug for StripedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripedHistogram")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl StripedHistogram {
    /// Upper bounds in seconds, ascending.
    pub fn new(bounds: impl Iterator<Item = f64>) -> StripedHistogram {
        let bounds: Arc<[f64]> = bounds.collect();
        let bounds_nanos = bounds.iter().map(|b| (b * 1e9) as u64).collect();
        let stripes = (0..STRIPES)
            .map(|_| {
                Padded(HistogramStripe {
                    buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                    sum_nanos: AtomicU64::new(0),
                })
            })
            .collect();
        StripedHistogram {
            bounds,
            bounds_nanos,
            stripes,
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_nanos.partition_point(|&b| b < nanos);
        let s = &self.stripes[stripe()].0;
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        s.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and the count of each bucket by its upper bound (+Inf last; not
    /// cumulative: the encoder adds them up, as for prometheus-client's own histogram).
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut per_bucket = vec![0u64; self.bounds.len() + 1];
        let mut sum = 0u64;
        for s in self.stripes.iter() {
            for (total, b) in per_bucket.iter_mut().zip(s.0.buckets.iter()) {
                *total += b.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(s.0.sum_nanos.load(Ordering::Relaxed));
        }
        let count = per_bucket.iter().sum();
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(per_bucket)
            .collect();
        (sum as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for StripedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for StripedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = Arc::new(StripedCounter::default());
        let h = Arc::new(StripedHistogram::new([0.001, 0.01].into_iter()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, h) = (c.clone(), h.clone());
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        c.inc();
                        h.observe(Duration::from_micros(i * 20));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 8000);
        let (sum, count, buckets) = h.get();
        assert_eq!(count, 8000);
        // 0..=50 µs steps of 20 µs ≤ 1 ms: i in 0..=50; ≤ 10 ms: i in 0..=500.
        assert_eq!(buckets[0], (0.001, 8 * 51));
        assert_eq!(buckets[1], (0.01, 8 * 450));
        assert_eq!(buckets[2].1, 8 * 499);
        let expected: f64 = 8.0 * (0..1000).map(|i| i as f64 * 20e-6).sum::<f64>();
        assert!((sum - expected).abs() < 1e-6, "{sum} vs {expected}");
    }

    #[test]
    fn encodes_as_prometheus_text() {
        let mut registry = Registry::default();
        let c = StripedCounter::default();
        let h = StripedHistogram::new([0.5].into_iter());
        registry.register("things", "Things", c.clone());
        registry.register("latency_seconds", "Latency", h.clone());
        c.inc();
        h.observe(Duration::from_millis(1));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE things counter\nthings_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
    }
}
