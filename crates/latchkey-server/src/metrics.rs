//! Prometheus metrics. Label values are bounded sets (results, grant types, kids), never
//! client input, secrets or tokens. Counters on the token path are resolved once at start, so
//! a request only touches atomics.

use std::time::Duration;

use crate::{
    client_auth::AuthMethod,
    striped::{StripedCounter, StripedHistogram},
    throttle::By,
};
use latchkey_core::{
    ErrorCode, Registry,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::exponential_buckets},
    registry::Registry as PromRegistry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    result: &'static str,
    grant_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    kid: String,
    alg: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    by: &'static str,
}

// Issue 11: client authentication by assertion.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    auth: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    source: &'static str,
    result: &'static str,
}

/// Results a token request can end with: success or one of the OAuth error codes.
const RESULTS: usize = 1 + ErrorCode::ALL.len();
/// Grant type label values: the one we implement, and everything else.
const GRANTS: [&str; 2] = ["client_credentials", "other"];

/// Every metric Latchkey exports, and the registry that encodes them.
pub struct Metrics {
    registry: PromRegistry,
    token_requests: Vec<StripedCounter>,
    token_latency: StripedHistogram,
    clients_loaded: Gauge,
    signing_keys: Family<KeyLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    last_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    leader: Gauge,
    key_age: Gauge,
    /// Unix seconds the active key started signing (0: unknown); its age is computed when
    /// metrics are read.
    active_since: std::sync::atomic::AtomicU64,
    next_rotation: Gauge,
    next_activation: Gauge,
    rotations: Counter,
    revocations: Counter,
    throttled: Family<ThrottleLabels, Counter>,
    attacks: Counter,
    log_dropped: Counter,
    /// Where the count of dropped log lines is read (the log writer's own counter).
    log_dropped_source: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    // Issue 12: people who sign in.
    users_loaded: Gauge,
    // Issue 11: client authentication by assertion.
    /// Token requests by client authentication method and outcome, indexed by
    /// `AuthMethod::ALL` position * 2 + failed.
    by_auth: Vec<StripedCounter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn result_label(result: Option<ErrorCode>) -> &'static str {
    result.map_or("success", ErrorCode::as_str)
}

fn result_index(result: Option<ErrorCode>) -> usize {
    result.map_or(0, |code| {
        1 + ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0)
    })
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = PromRegistry::with_prefix("latchkey");
        let requests = Family::<RequestLabels, StripedCounter>::default();
        let mut token_requests = Vec::with_capacity(RESULTS * GRANTS.len());
        for result in std::iter::once(None).chain(ErrorCode::ALL.map(Some)) {
            for grant_type in GRANTS {
                let labels = RequestLabels {
                    result: result_label(result),
                    grant_type,
                };
                token_requests.push(requests.get_or_create(&labels).clone());
            }
        }
        registry.register(
            "token_requests",
            "Token requests by result and grant type",
            requests.clone(),
        );
        let token_latency = StripedHistogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "token_request_duration_seconds",
            "Time from request received to response ready, token endpoint",
            token_latency.clone(),
        );
        let clients_loaded = Gauge::default();
        registry.register(
            "clients_loaded",
            "Clients in the live registry",
            clients_loaded.clone(),
        );
        let signing_keys = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "signing_key_info",
            "Published signing keys (1 each), by kid, algorithm and state",
            signing_keys.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of clients, keys and TLS material by result",
            reloads.clone(),
        );
        let last_sync = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time clients were last read successfully (files loaded, or an answer from the Kubernetes API)",
            last_sync.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and writes",
            leader.clone(),
        );
        let key_age = Gauge::default();
        registry.register(
            "signing_key_age_seconds",
            "How long the active signing key has been signing",
            key_age.clone(),
        );
        let next_rotation = Gauge::default();
        registry.register(
            "signing_key_next_rotation_timestamp_seconds",
            "Unix time the active key is due to be replaced (0: rotation off)",
            next_rotation.clone(),
        );
        let next_activation = Gauge::default();
        registry.register(
            "signing_key_next_activation_timestamp_seconds",
            "Unix time the published next key starts signing (0: none); minus its publication, the lead verifiers get",
            next_activation.clone(),
        );
        let rotations = Counter::default();
        registry.register(
            "key_rotations",
            "Key rotations carried out by this replica as leader",
            rotations.clone(),
        );
        let revocations = Counter::default();
        registry.register(
            "key_revocations",
            "Key revocations carried out by this replica as leader",
            revocations.clone(),
        );
        let throttled = Family::<ThrottleLabels, Counter>::default();
        for by in [By::Source, By::Client, By::Pair] {
            let _ = throttled.get_or_create(&ThrottleLabels { by: by.as_str() });
        }
        registry.register(
            "auth_throttled",
            "Token requests answered 429 because the failed-authentication budget they draw on (source, client, or source_client pair) was spent",
            throttled.clone(),
        );
        let attacks = Counter::default();
        registry.register(
            "client_attacks",
            "Times a client id came under a guessing attack (its budget for failed authentications from unknown sources ran out)",
            attacks.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log reader was too slow (serving never waits for it)",
            log_dropped.clone(),
        );
        // Issue 12: people who sign in.
        let users_loaded = Gauge::default();
        registry.register(
            "users_loaded",
            "Users who may sign in (ready and not disabled)",
            users_loaded.clone(),
        );
        // Issue 11: client authentication by assertion.
        let by_auth_family = Family::<AuthLabels, StripedCounter>::default();
        let by_auth = AuthMethod::ALL
            .iter()
            .flat_map(|m| {
                ["success", "failure"].map(|result| {
                    by_auth_family
                        .get_or_create(&AuthLabels {
                            auth: m.as_str(),
                            result,
                        })
                        .clone()
                })
            })
            .collect();
        registry.register(
            "token_requests_by_auth",
            "Token requests by client authentication method (none: not authenticated yet) and outcome",
            by_auth_family,
        );
        Metrics {
            users_loaded,
            by_auth,
            registry,
            throttled,
            attacks,
            log_dropped,
            log_dropped_source: std::sync::OnceLock::new(),
            token_requests,
            token_latency,
            clients_loaded,
            signing_keys,
            reloads,
            last_sync,
            leader,
            key_age,
            active_since: std::sync::atomic::AtomicU64::new(0),
            next_rotation,
            next_activation,
            rotations,
            revocations,
        }
    }

    /// Count one token request and its latency.
    pub fn observe_token_request(
        &self,
        grant_type: Option<&str>,
        result: Option<ErrorCode>,
        elapsed: Duration,
    ) {
        let grant = usize::from(grant_type != Some(GRANTS[0]));
        self.token_requests[result_index(result) * GRANTS.len() + grant].inc();
        self.token_latency.observe(elapsed);
    }

    // Issue 11: client authentication by assertion.
    /// Count a token request under the authentication method it used.
    pub fn observe_auth_method(&self, method: AuthMethod, success: bool) {
        let i = AuthMethod::ALL
            .iter()
            .position(|m| *m == method)
            .unwrap_or(0);
        if let Some(c) = self.by_auth.get(i * 2 + usize::from(!success)) {
            c.inc();
        }
    }

    /// Record a new registry snapshot.
    pub fn observe_registry(&self, registry: &Registry) {
        self.clients_loaded.set(registry.len() as i64);
    }

    /// Record a successful read of the clients' source at `unix_now`.
    pub fn observe_sync(&self, unix_now: f64) {
        self.last_sync.set(unix_now);
    }

    /// Record whether this replica leads.
    pub fn observe_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Record the key ring now serving under `policy`: its keys, when the active one is due
    /// and when a published next key starts signing.
    pub fn observe_key_ring(&self, ring: &KeyRing, policy: &RotationPolicy) {
        self.signing_keys.clear();
        for key in &ring.keys {
            let labels = KeyLabels {
                kid: key.kid.clone(),
                alg: key.alg.as_str(),
                state: key.state.as_str(),
            };
            self.signing_keys.get_or_create(&labels).set(1);
        }
        let since = ring
            .active()
            .map_or(0, |k| k.activated_at.unwrap_or(k.created_at));
        self.active_since
            .store(since, std::sync::atomic::Ordering::Relaxed);
        let at = |t: Option<u64>| t.map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
        self.next_rotation.set(at(ring.next_rotation_at(policy)));
        self.next_activation
            .set(at(ring.next_activation_at(policy)));
    }

    /// Count what the leader did to the keys.
    pub fn observe_key_events(&self, events: &[KeyEvent]) {
        for ev in events {
            match ev {
                KeyEvent::Retired { .. } => {
                    self.rotations.inc();
                }
                KeyEvent::Revoked { .. } => {
                    self.revocations.inc();
                }
                _ => {}
            }
        }
    }

    /// Count a reload of `source` (clients, keys, tls).
    pub fn observe_reload(&self, source: &'static str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reloads
            .get_or_create(&ReloadLabels { source, result })
            .inc();
    }

    /// Count a request turned away by the guess throttle.
    pub fn observe_throttled(&self, by: By) {
        self.throttled
            .get_or_create(&ThrottleLabels { by: by.as_str() })
            .inc();
    }

    /// Count a client coming under attack.
    pub fn observe_attack(&self) {
        self.attacks.inc();
    }

    /// Where to read the number of log lines dropped so far (set once at start).
    pub fn count_log_drops_from(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let _ = self.log_dropped_source.set(Box::new(source));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        if let Some(source) = self.log_dropped_source.get() {
            let seen = self.log_dropped.get();
            self.log_dropped.inc_by(source().saturating_sub(seen));
        }
        let since = self.active_since.load(std::sync::atomic::Ordering::Relaxed);
        if since > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.key_age.set(now.saturating_sub(since) as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

// Issue 12: people who sign in.
impl Metrics {
    /// Record a new user directory: how many users may sign in.
    pub fn observe_users(&self, count: usize) {
        self.users_loaded.set(count as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_result_and_grant() {
        let m = Metrics::new();
        m.observe_token_request(Some("client_credentials"), None, Duration::from_millis(1));
        m.observe_token_request(
            Some("password"),
            Some(ErrorCode::UnsupportedGrantType),
            Duration::from_millis(1),
        );
        m.observe_token_request(
            None,
            Some(ErrorCode::InvalidRequest),
            Duration::from_millis(1),
        );
        let text = m.encode();
        assert!(text.contains(r#"latchkey_token_requests_total{result="success",grant_type="client_credentials"} 1"#), "{text}");
        assert!(text.contains(
            r#"latchkey_token_requests_total{result="unsupported_grant_type",grant_type="other"} 1"#
        ));
        assert!(text.contains(
            r#"latchkey_token_requests_total{result="invalid_request",grant_type="other"} 1"#
        ));
        assert!(text.contains("latchkey_token_request_duration_seconds_count 3"));
    }

    #[test]
    fn the_next_keys_activation_is_a_gauge() {
        use latchkey_core::{SigningAlgorithm, keyring::KidStrategy};
        let policy = RotationPolicy {
            alg: SigningAlgorithm::EdDSA,
            rsa_bits: 2048,
            kid: KidStrategy::Thumbprint,
            rotation_period: Duration::from_secs(86_400),
            verifier_cache: Duration::from_secs(7800),
            clock_skew: Duration::from_secs(60),
            max_token_lifetime: Duration::from_secs(3600),
        };
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let m = Metrics::new();
        let mut ring = KeyRing::bootstrap(&policy, t0).unwrap();
        m.observe_key_ring(&ring, &policy);
        let text = m.encode();
        assert!(
            text.contains("latchkey_signing_key_next_activation_timestamp_seconds 0\n"),
            "{text}"
        );
        assert!(text.contains("latchkey_signing_key_next_rotation_timestamp_seconds 1800086400\n"));
        ring.request_rotation(&policy, t0).unwrap();
        ring.advance(&policy, t0).unwrap();
        m.observe_key_ring(&ring, &policy);
        let text = m.encode();
        assert!(
            text.contains("latchkey_signing_key_next_activation_timestamp_seconds 1800007800\n"),
            "{text}"
        );
    }
}
