//! What one change costs in a registry of 10,000 clients: apply an edited OAuthClient (or a
//! rotated Secret), resolve what it affects, and take the registry snapshot the token server
//! swaps in. Prints microseconds per change (mean and worst of the runs); `make bench-operator`
//! runs it. No assertion: a figure, not a test.

use std::time::{Duration, Instant};

use k8s_openapi::{ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use latchkey_api::{
    OAuthClient, OAuthClientSpec,
    resolve::{ClientIndex, MANAGED_BY_LABEL, MANAGED_BY_VALUE, creation_rank},
};

const N: usize = 10_000;

fn client(i: usize, scopes: &[&str]) -> OAuthClient {
    let spec: OAuthClientSpec = serde_json::from_value(serde_json::json!({
        "scopes": scopes,
        "audience": ["orders-api"],
        "claims": {"organization": "apps"},
    }))
    .expect("a valid spec");
    let mut c = OAuthClient::new(&format!("client-{i}"), spec);
    c.metadata.namespace = Some("apps".into());
    c.metadata.uid = Some(format!("uid-{i}"));
    c.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + i as i64).expect("a time"),
    ));
    c
}

fn credentials(i: usize, secret: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some("apps".into());
    s.metadata.name = Some(format!("client-{i}-credentials"));
    s.metadata.labels = Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
    s.data = Some(
        [
            (
                "clientId".to_string(),
                ByteString(format!("id-{i}").into_bytes()),
            ),
            (
                "clientSecret".to_string(),
                ByteString(secret.as_bytes().to_vec()),
            ),
        ]
        .into(),
    );
    s
}

fn main() {
    let build = Instant::now();
    let mut index = ClientIndex::default();
    for i in 0..N {
        let c = client(i, &["orders:read", "apk:*"]);
        let rank = creation_rank(&c);
        index.apply_client(c, rank);
    }
    for i in 0..N {
        index.apply_secret(&credentials(i, &format!("secret-{i}")));
    }
    index.mark_secrets_listed();
    let resolved = index.resolve();
    assert_eq!(index.registry().len(), N, "every client registered");
    println!(
        "one_change: {N} clients resolved from scratch in {:.1} ms ({resolved} resolutions)",
        build.elapsed().as_secs_f64() * 1e3
    );

    let runs = 2_000;
    let mut total = Duration::ZERO;
    let mut samples = Vec::with_capacity(runs);
    let mut snapshots = Vec::with_capacity(runs);
    for r in 0..runs {
        let i = (r * 7919) % N;
        let started = Instant::now();
        if r % 2 == 0 {
            // An edit of one client's spec.
            let scope = format!("orders:write-{r}");
            let c = client(i, &["orders:read", "apk:*", &scope]);
            let rank = creation_rank(&c);
            index.apply_client(c, rank);
        } else {
            // A rotated Secret.
            index.apply_secret(&credentials(i, &format!("rotated-{r}")));
        }
        let affected = index.resolve();
        // The snapshot the token server swaps in.
        snapshots.push(index.registry().clone());
        let _changed = index.take_changed();
        let took = started.elapsed();
        assert_eq!(affected, 1, "one change resolves one client");
        total += took;
        samples.push(took);
        if snapshots.len() > 16 {
            snapshots.remove(0);
        }
    }
    samples.sort();
    let at = |q: f64| samples[((runs as f64 * q) as usize).min(runs - 1)].as_secs_f64() * 1e6;
    println!(
        "one_change: one change at {N} clients: mean {:.1} us, p50 {:.1} us, p99 {:.1} us, max {:.1} us over {runs} changes (edits and Secret rotations, resolve + snapshot)",
        total.as_secs_f64() * 1e6 / runs as f64,
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
