//! Slowing down secret guessing at the token endpoint, without locking out a client that
//! knows its secret.
//!
//! Failed client authentications are paid for from token buckets: one per source (an IPv4
//! address or IPv6 /64) and one per client id for sources that never authenticated as that
//! client. A source that did authenticate as a client (a "known" pair, kept for an hour) is
//! paid for from that pair's own bucket instead, so an attack on a client from elsewhere never
//! slows the client's own hosts, and an attack from elsewhere on other clients never slows
//! this pair. When the bucket a request is paid from is empty, the answer is 429 whatever the
//! credentials were: the attacker learns nothing, and is not counted again (buckets refill at
//! their rate: backoff, not lockout).
//!
//! The state is per replica and shared with none. That suffices: the bound a replica enforces
//! multiplies by the replica count (two or three), still orders of magnitude below the tens of
//! thousands of guesses per second an unthrottled server answers. Memory is bounded: at most
//! `max_tracked` sources and clients each; when full, idle entries are dropped, and keys that
//! still find no room share one overflow bucket (so spraying new keys is throttled as one).
//!
//! The tables sit behind one lock, which a success does not take on every request: a pair that
//! authenticated in the last [`RECHECK`] is vouched for by its serving thread's own cache of
//! pairs, so serving cores share no lock and write no common line on a success. A failure of a
//! pair bumps the generation of the pair's stripe (a line written only by failures), which
//! ends every thread's vouching for the pairs of that stripe: a pair whose own bucket a
//! guesser emptied is judged in full again on its next request, on every core.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    sources::source_key,
    striped::{self, Padded},
};

/// Limits of the throttle.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failed authentications a source (or a known source–client pair) may make at once.
    pub burst: u32,
    /// Failed authentications per second a source earns back; 0 turns throttling off.
    pub per_second: f64,
    /// Failed authentications per second, over all unknown sources, against one client id
    /// (its burst is five times the source burst).
    pub client_per_second: f64,
    /// Sources and client ids tracked at most (each table).
    pub max_tracked: usize,
    /// How long a source that authenticated as a client stays known for it.
    pub known_for: Duration,
    /// Failed-request log lines per source: burst and then per second.
    pub log_burst: u32,
    pub log_per_second: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            burst: 20,
            per_second: 5.0,
            client_per_second: 10.0,
            max_tracked: 16_384,
            known_for: Duration::from_secs(3600),
            log_burst: 10,
            log_per_second: 1.0,
        }
    }
}

/// What a request ended with, as the throttle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated (whatever came after).
    Authenticated,
    /// Client authentication failed (`invalid_client`).
    AuthFailed,
    /// Any other failure.
    Other,
}

/// Which bucket turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Source,
    Client,
    Pair,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Source => "source",
            By::Client => "client",
            By::Pair => "source_client",
        }
    }
}

/// The throttle's word on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `Some`: answer 429 with this Retry-After instead of the real answer.
    pub throttled: Option<(By, Duration)>,
    /// Whether this request's log line is written (failed requests are sampled per source).
    pub log: bool,
    /// Failed-request log lines left out for this source since the last one written.
    pub suppressed: u64,
    /// The client this request failed against has just come under attack (warn once).
    pub attack_started: bool,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, rate: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
    }

    fn has(&mut self, burst: f64, rate: f64, now: Instant) -> bool {
        self.refill(burst, rate, now);
        self.tokens >= 1.0
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn is_full(&mut self, burst: f64, rate: f64, now: Instant) -> bool {
        self.refill(burst, rate, now);
        self.tokens >= burst
    }

    /// Time until one token is back.
    fn wait(&self, rate: f64) -> Duration {
        if self.tokens >= 1.0 || rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / rate)
    }
}

#[derive(Debug)]
struct SourceEntry {
    guesses: Bucket,
    log: Bucket,
    suppressed: u64,
}

#[derive(Debug)]
struct Known {
    source: IpAddr,
    last: Instant,
    guesses: Bucket,
}

#[derive(Debug)]
struct ClientEntry {
    guesses: Bucket,
    known: Vec<Known>,
    under_attack: bool,
}

/// Sources and clients known to a pair: a few per client is plenty.
const KNOWN_PER_CLIENT: usize = 8;

#[derive(Debug)]
struct Tables {
    sources: HashMap<IpAddr, SourceEntry>,
    clients: HashMap<String, ClientEntry>,
    overflow_source: SourceEntry,
    overflow_client: ClientEntry,
    last_purge: Instant,
}

/// How long a success vouches for its source–client pair before the pair is judged in full
/// again (which also refreshes how long it stays known).
const RECHECK: Duration = Duration::from_secs(60);

/// Stripes of pair generations: a failure of a pair ends the vouching of 1/64 of all pairs.
const PAIR_STRIPES: usize = 64;

/// One serving thread's recently authenticated pairs, by a keyed hash of (source, client id):
/// when each was last judged in full, and its stripe's generation then.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Vouched(Mutex<HashMap<u64, (Instant, u64)>>);

/// Per-replica guess throttling state.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
    /// Per thread (stripe), its vouched pairs: locked by that thread alone (threads beyond
    /// the stripe count share).
    vouched: Box<[Vouched]>,
    /// Per pair stripe, bumped by every failure of a pair in it.
    generations: Box<[Padded<AtomicU64>]>,
    pair_hasher: RandomState,
}

/// Where an entry of a table lives: in the table, or in the shared overflow slot.
enum Slot<'a, T> {
    Own(&'a mut T),
    Overflow(&'a mut T),
}

impl<T> Slot<'_, T> {
    fn get(&mut self) -> &mut T {
        match self {
            Slot::Own(t) | Slot::Overflow(t) => t,
        }
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        let now = Instant::now();
        let tables = Tables {
            sources: HashMap::new(),
            clients: HashMap::new(),
            overflow_source: SourceEntry {
                guesses: Bucket::full(config.burst as f64, now),
                log: Bucket::full(config.log_burst as f64, now),
                suppressed: 0,
            },
            overflow_client: ClientEntry {
                guesses: Bucket::full(client_burst(&config), now),
                known: Vec::new(),
                under_attack: false,
            },
            last_purge: now,
        };
        Throttle {
            config,
            tables: Mutex::new(tables),
            vouched: (0..striped::STRIPES).map(|_| Vouched::default()).collect(),
            generations: (0..PAIR_STRIPES)
                .map(|_| Padded(AtomicU64::new(0)))
                .collect(),
            pair_hasher: RandomState::new(),
        }
    }

    /// The pair's hash and its stripe's generation.
    fn pair(&self, source: IpAddr, client_id: &str) -> (u64, &AtomicU64) {
        let h = self.pair_hasher.hash_one((source, client_id));
        (h, &self.generations[(h as usize) % PAIR_STRIPES].0)
    }

    /// This thread's vouched pairs.
    fn vouched(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, u64)>> {
        self.vouched[striped::stripe() % self.vouched.len()]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn enabled(&self) -> bool {
        self.config.per_second > 0.0
    }

    /// Judge a finished request: `source` is the peer's address, `client_id` the id it
    /// authenticated as (or tried to), `now` the current time.
    pub fn judge(
        &self,
        source: Option<IpAddr>,
        client_id: Option<&str>,
        outcome: Outcome,
        now: Instant,
    ) -> Verdict {
        let verdict = Verdict {
            throttled: None,
            log: true,
            suppressed: 0,
            attack_started: false,
        };
        let (Some(source), true) = (source, self.enabled()) else {
            return verdict;
        };
        let pair = client_id.map(|id| self.pair(source_key(source), id));
        // The generation before the full judgment: a failure judged meanwhile bumps it, so
        // the vouch made below is void at once.
        let mut generation = 0;
        if let Some((h, stripe)) = pair {
            if outcome == Outcome::Authenticated {
                generation = stripe.load(Ordering::Acquire);
                if self.vouched().get(&h).is_some_and(|(at, g)| {
                    *g == generation && now.saturating_duration_since(*at) < RECHECK
                }) {
                    return verdict;
                }
            } else {
                stripe.fetch_add(1, Ordering::AcqRel);
            }
        }
        let verdict = self.judge_in_full(source, client_id, outcome, now, verdict);
        if let (Some((h, _)), Outcome::Authenticated, None) = (pair, outcome, verdict.throttled) {
            let cap = (self.config.max_tracked / 4).max(16);
            let mut mine = self.vouched();
            if mine.len() >= cap {
                mine.retain(|_, (at, _)| now.saturating_duration_since(*at) < RECHECK);
            }
            if mine.len() < cap {
                mine.insert(h, (now, generation));
            }
        }
        verdict
    }

    fn judge_in_full(
        &self,
        source: IpAddr,
        client_id: Option<&str>,
        outcome: Outcome,
        now: Instant,
        mut verdict: Verdict,
    ) -> Verdict {
        let c = &self.config;
        let (burst, rate) = (c.burst as f64, c.per_second);
        let (cburst, crate_) = (client_burst(c), c.client_per_second);
        let key = source_key(source);
        let mut guard = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let t = &mut *guard;
        t.purge_if_full(c, now);
        let Tables {
            sources,
            clients,
            overflow_source,
            overflow_client,
            ..
        } = t;
        let mut src = source_slot(sources, overflow_source, key, c, now);
        let mut client = client_id.map(|id| client_slot(clients, overflow_client, id, c, now));
        let known = client.as_mut().and_then(|cl| match cl {
            Slot::Own(e) => e
                .known
                .iter_mut()
                .find(|k| k.source == key && now.saturating_duration_since(k.last) < c.known_for),
            Slot::Overflow(_) => None,
        });
        let throttled = match known {
            Some(k) => {
                if k.guesses.has(burst, rate, now) {
                    if outcome == Outcome::AuthFailed {
                        k.guesses.take();
                    } else if outcome == Outcome::Authenticated {
                        k.last = now;
                    }
                    None
                } else {
                    Some((By::Pair, k.guesses.wait(rate)))
                }
            }
            None => {
                let s = src.get();
                if !s.guesses.has(burst, rate, now) {
                    Some((By::Source, s.guesses.wait(rate)))
                } else if let Some(cl) = client.as_mut().map(Slot::get)
                    && !cl.guesses.has(cburst, crate_, now)
                {
                    Some((By::Client, cl.guesses.wait(crate_)))
                } else {
                    match outcome {
                        Outcome::AuthFailed => {
                            s.guesses.take();
                            if let Some(cl) = client.as_mut().map(Slot::get) {
                                cl.guesses.take();
                                if cl.guesses.tokens < 1.0 && !cl.under_attack {
                                    cl.under_attack = true;
                                    verdict.attack_started = true;
                                }
                            }
                        }
                        Outcome::Authenticated => {
                            if let Some(Slot::Own(cl)) = client.as_mut() {
                                cl.remember(key, burst, c.known_for, now);
                            }
                        }
                        Outcome::Other => {}
                    }
                    None
                }
            }
        };
        if let Some(Slot::Own(cl)) = client.as_mut()
            && cl.under_attack
            && cl.guesses.is_full(cburst, crate_, now)
        {
            cl.under_attack = false;
        }
        verdict.throttled = throttled.map(|(by, wait)| (by, wait.max(Duration::from_secs(1))));
        if throttled.is_some() || outcome != Outcome::Authenticated {
            let s = src.get();
            if s.log.has(c.log_burst as f64, c.log_per_second, now) {
                s.log.take();
                verdict.suppressed = std::mem::take(&mut s.suppressed);
            } else {
                s.suppressed += 1;
                verdict.log = false;
            }
        }
        verdict
    }

    /// Tracked entries (sources, clients), for tests of the memory bound.
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        (t.sources.len(), t.clients.len())
    }
}

fn client_burst(c: &ThrottleConfig) -> f64 {
    c.burst as f64 * 5.0
}

impl ClientEntry {
    fn remember(&mut self, source: IpAddr, burst: f64, known_for: Duration, now: Instant) {
        self.known
            .retain(|k| now.saturating_duration_since(k.last) < known_for);
        if let Some(k) = self.known.iter_mut().find(|k| k.source == source) {
            k.last = now;
            return;
        }
        if self.known.len() >= KNOWN_PER_CLIENT
            && let Some(oldest) = self
                .known
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| k.last)
                .map(|(i, _)| i)
        {
            self.known.swap_remove(oldest);
        }
        self.known.push(Known {
            source,
            last: now,
            guesses: Bucket::full(burst, now),
        });
    }
}

impl Tables {
    /// Drop entries that hold nothing (full buckets, nothing known) when a table is full; at
    /// most once a second, so a full table of busy entries costs one scan a second.
    fn purge_if_full(&mut self, c: &ThrottleConfig, now: Instant) {
        let full = self.sources.len() >= c.max_tracked || self.clients.len() >= c.max_tracked;
        if !full || now.saturating_duration_since(self.last_purge) < Duration::from_secs(1) {
            return;
        }
        self.last_purge = now;
        let (burst, rate) = (c.burst as f64, c.per_second);
        let (lburst, lrate) = (c.log_burst as f64, c.log_per_second);
        self.sources.retain(|_, s| {
            !(s.guesses.is_full(burst, rate, now) && s.log.is_full(lburst, lrate, now))
                || s.suppressed > 0
        });
        let (cburst, crate_) = (client_burst(c), c.client_per_second);
        self.clients.retain(|_, e| {
            e.known
                .retain(|k| now.saturating_duration_since(k.last) < c.known_for);
            !e.known.is_empty() || !e.guesses.is_full(cburst, crate_, now)
        });
    }
}

fn source_slot<'a>(
    sources: &'a mut HashMap<IpAddr, SourceEntry>,
    overflow: &'a mut SourceEntry,
    key: IpAddr,
    c: &ThrottleConfig,
    now: Instant,
) -> Slot<'a, SourceEntry> {
    if !sources.contains_key(&key) && sources.len() >= c.max_tracked {
        return Slot::Overflow(overflow);
    }
    Slot::Own(sources.entry(key).or_insert_with(|| SourceEntry {
        guesses: Bucket::full(c.burst as f64, now),
        log: Bucket::full(c.log_burst as f64, now),
        suppressed: 0,
    }))
}

fn client_slot<'a>(
    clients: &'a mut HashMap<String, ClientEntry>,
    overflow: &'a mut ClientEntry,
    id: &str,
    c: &ThrottleConfig,
    now: Instant,
) -> Slot<'a, ClientEntry> {
    if !clients.contains_key(id) {
        if clients.len() >= c.max_tracked {
            return Slot::Overflow(overflow);
        }
        clients.insert(
            id.to_owned(),
            ClientEntry {
                guesses: Bucket::full(client_burst(c), now),
                known: Vec::new(),
                under_attack: false,
            },
        );
    }
    match clients.get_mut(id) {
        Some(e) => Slot::Own(e),
        None => Slot::Overflow(overflow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    /// Guesses answered with the real result (not 429) in `secs` seconds at `per_sec`.
    fn guesses_answered(
        t: &Throttle,
        src: Option<IpAddr>,
        id: &str,
        start: Instant,
        secs: u64,
        per_sec: u64,
    ) -> usize {
        let mut answered = 0;
        for i in 0..secs * per_sec {
            let now = start + Duration::from_micros(i * 1_000_000 / per_sec);
            if t.judge(src, Some(id), Outcome::AuthFailed, now)
                .throttled
                .is_none()
            {
                answered += 1;
            }
        }
        answered
    }

    #[test]
    fn one_source_gets_its_burst_then_the_rate() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        // 10 s at 1000 guesses/s: burst 20 plus 5/s.
        let answered = guesses_answered(&t, ip(1), "victim", start, 10, 1000);
        assert!((60..=75).contains(&answered), "{answered}");
    }

    #[test]
    fn a_client_that_knows_its_secret_is_not_locked_out() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        let legit = ip(1);
        assert_eq!(
            t.judge(legit, Some("victim"), Outcome::Authenticated, start)
                .throttled,
            None
        );
        // Many sources guess at the victim until its client bucket is empty.
        let mut warned = 0;
        for s in 2..200u8 {
            for i in 0..30u64 {
                let now = start + Duration::from_millis(i);
                let v = t.judge(ip(s), Some("victim"), Outcome::AuthFailed, now);
                warned += usize::from(v.attack_started);
            }
        }
        assert_eq!(warned, 1, "one warning per attack");
        let now = start + Duration::from_millis(40);
        // A new source is turned away, whatever it sends...
        let v = t.judge(ip(250), Some("victim"), Outcome::Authenticated, now);
        assert_eq!(v.throttled.map(|(by, _)| by), Some(By::Client));
        // ...the known one is not.
        assert_eq!(
            t.judge(legit, Some("victim"), Outcome::Authenticated, now)
                .throttled,
            None
        );
        // The attack on one source does not spill onto other clients from other sources.
        assert_eq!(
            t.judge(ip(251), Some("other"), Outcome::Authenticated, now)
                .throttled,
            None
        );
    }

    #[test]
    fn a_known_pair_has_its_own_budget() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        let shared = ip(7);
        t.judge(shared, Some("legit"), Outcome::Authenticated, start);
        // The same address guesses at other clients: the source is throttled...
        for i in 0..100u64 {
            let id = format!("c{i}");
            t.judge(shared, Some(&id), Outcome::AuthFailed, start);
        }
        let v = t.judge(shared, Some("c1"), Outcome::AuthFailed, start);
        assert_eq!(v.throttled.map(|(by, _)| by), Some(By::Source));
        // ...but its known client still gets through, and guessing at it is throttled too.
        assert_eq!(
            t.judge(shared, Some("legit"), Outcome::Authenticated, start)
                .throttled,
            None
        );
        let answered = guesses_answered(&t, shared, "legit", start, 1, 1000);
        assert!(answered <= 26, "{answered}");
    }

    #[test]
    fn a_vouched_pair_whose_budget_is_spent_is_judged_in_full_again() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        // Known and vouched for: successes skip the tables.
        for _ in 0..3 {
            let v = t.judge(ip(9), Some("legit"), Outcome::Authenticated, start);
            assert_eq!(v.throttled, None);
        }
        // Guessing from the same pair spends the pair's own bucket...
        guesses_answered(&t, ip(9), "legit", start, 1, 1000);
        // ...and the next request, right secret or not, is answered 429: the failure ended the
        // vouching, so the success is judged against the empty bucket.
        let v = t.judge(ip(9), Some("legit"), Outcome::Authenticated, start);
        assert_eq!(v.throttled.map(|(by, _)| by), Some(By::Pair));
        // The bucket refills: the pair is back, and vouched for again.
        let later = start + Duration::from_secs(30);
        let v = t.judge(ip(9), Some("legit"), Outcome::Authenticated, later);
        assert_eq!(v.throttled, None);
        let (h, stripe) = t.pair(ip(9).unwrap(), "legit");
        let g = stripe.load(Ordering::Acquire);
        assert_eq!(t.vouched().get(&h).map(|(_, at)| *at), Some(g));
    }

    #[test]
    fn a_failure_on_one_thread_ends_the_vouching_on_every_other() {
        let t = std::sync::Arc::new(Throttle::new(ThrottleConfig {
            burst: 1,
            ..ThrottleConfig::default()
        }));
        let start = Instant::now();
        // Vouched for on this thread.
        for _ in 0..2 {
            let v = t.judge(ip(7), Some("legit"), Outcome::Authenticated, start);
            assert_eq!(v.throttled, None);
        }
        // A guess from the same pair, judged on another serving thread, spends its bucket.
        let other = t.clone();
        std::thread::spawn(move || {
            other.judge(ip(7), Some("legit"), Outcome::AuthFailed, start);
        })
        .join()
        .unwrap();
        // This thread vouches no more: the success meets the empty bucket.
        let v = t.judge(ip(7), Some("legit"), Outcome::Authenticated, start);
        assert_eq!(v.throttled.map(|(by, _)| by), Some(By::Pair));
    }

    #[test]
    fn backoff_not_lockout() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        guesses_answered(&t, ip(3), "x", start, 1, 1000);
        let later = start + Duration::from_secs(30);
        assert_eq!(
            t.judge(ip(3), Some("x"), Outcome::Authenticated, later)
                .throttled,
            None
        );
    }

    #[test]
    fn memory_is_bounded_and_spraying_keys_is_throttled_as_one() {
        let t = Throttle::new(ThrottleConfig {
            max_tracked: 64,
            ..ThrottleConfig::default()
        });
        let start = Instant::now();
        let mut answered = 0;
        for i in 0..10_000u32 {
            let src = Some(IpAddr::from(i.to_be_bytes()));
            let id = format!("id-{i}");
            if t.judge(src, Some(&id), Outcome::AuthFailed, start)
                .throttled
                .is_none()
            {
                answered += 1;
            }
        }
        let (s, c) = t.tracked();
        assert!(s <= 64 && c <= 64, "{s} {c}");
        assert!(answered < 64 + 20 * 5 + 1, "{answered}");
    }

    #[test]
    fn failed_request_lines_are_sampled_with_counts() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        let mut written = 0;
        let mut left_out = 0;
        for i in 0..1000u64 {
            let now = start + Duration::from_millis(i * 10);
            let v = t.judge(ip(9), None, Outcome::Other, now);
            if v.log {
                written += 1;
                left_out += v.suppressed;
            }
        }
        // 10 s: a burst of 10 and about one a second.
        assert!((15..=22).contains(&written), "{written}");
        let v = t.judge(ip(9), None, Outcome::Other, start + Duration::from_secs(20));
        assert!(v.log);
        assert_eq!(written + left_out + v.suppressed, 1000);
        // Successes are always logged.
        assert!(t.judge(ip(9), Some("a"), Outcome::Authenticated, start).log);
    }

    #[test]
    fn off_when_rate_is_zero() {
        let t = Throttle::new(ThrottleConfig {
            per_second: 0.0,
            ..ThrottleConfig::default()
        });
        assert_eq!(
            guesses_answered(&t, ip(1), "x", Instant::now(), 1, 1000),
            1000
        );
    }
}
