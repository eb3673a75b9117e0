//! The operator at scale, on the test control plane: 10,000 OAuthClients with generated
//! credentials in one namespace. Prints figures (`make bench-operator` runs it); it asserts the
//! behaviour (every client registered and Ready, issuing tokens), never a timing.
//!
//! Figures: created in (the last create acknowledged), all issuing (the registry holds every
//! client) and all Ready after the last create, peak RSS, and the API server's writes per
//! client, counted from its own `apiserver_request_total` (Secret creates, status patches,
//! Events) before and after.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{cluster::*, *};
use futures::StreamExt;
use kube::runtime::watcher;

fn scale() -> usize {
    std::env::var("SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The API server's request counters for what Latchkey writes: (Secret creates, status patches,
/// Event writes).
fn api_writes() -> (f64, f64, f64) {
    let text = kubectl_ok(&["get", "--raw", "/metrics"], None);
    let (mut secrets, mut statuses, mut events) = (0.0, 0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let has = |kv: &str| line.contains(kv);
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if has(r#"resource="secrets""#) && has(r#"verb="POST""#) {
            secrets += value;
        }
        if has(r#"resource="oauthclients""#)
            && has(r#"subresource="status""#)
            && (has(r#"verb="PATCH""#) || has(r#"verb="APPLY""#))
        {
            statuses += value;
        }
        if has(r#"resource="events""#)
            && (has(r#"verb="POST""#) || has(r#"verb="PATCH""#) || has(r#"verb="CREATE""#))
        {
            events += value;
        }
    }
    (secrets, statuses, events)
}

#[test]
#[ignore = "a benchmark: make bench-operator"]
fn ten_thousand_clients() {
    let n = scale();
    install_crd();
    let ns = Namespace::new("scale");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "scale", dir.path(), &[]);
    wait_ready(&server);
    let before = api_writes();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(client());

    // Count Ready clients from a watch (listing 10,000 objects every poll would load the API
    // server more than Latchkey does).
    let ready_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let watcher_task = {
        let api: kube::Api<latchkey_api::OAuthClient> =
            kube::Api::namespaced(client.clone(), &ns.0);
        let ready_at = ready_at.clone();
        rt.spawn(async move {
            let mut ready: HashMap<String, bool> = HashMap::new();
            let mut count = 0usize;
            let mut events = std::pin::pin!(watcher::watcher(api, Default::default()));
            while let Some(Ok(ev)) = events.next().await {
                let objs = match ev {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                    _ => vec![],
                };
                for o in objs {
                    let is_ready = latchkey_operator::status::ready(o.status.as_ref())
                        .is_some_and(|r| r.status == "True");
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let was = ready.insert(name, is_ready).unwrap_or(false);
                    match (was, is_ready) {
                        (false, true) => count += 1,
                        (true, false) => count -= 1,
                        _ => {}
                    }
                }
                if count == n {
                    *ready_at.lock().unwrap() = Some(Instant::now());
                    return;
                }
            }
        })
    };

    let start = Instant::now();
    rt.block_on(async {
        let api: kube::Api<latchkey_api::OAuthClient> =
            kube::Api::namespaced(client.clone(), &ns.0);
        futures::stream::iter(0..n)
            .for_each_concurrent(48, |i| {
                let api = api.clone();
                async move {
                    let spec: latchkey_api::OAuthClientSpec =
                        serde_json::from_value(serde_json::json!({})).unwrap();
                    let oac = latchkey_api::OAuthClient::new(&format!("scale-{i}"), spec);
                    api.create(&Default::default(), &oac).await.unwrap();
                }
            })
            .await;
    });
    let created = start.elapsed();
    let last_create = Instant::now();

    let all_issuing = eventually(Duration::from_secs(900), || {
        server.metric("latchkey_clients_loaded") == Some(n as f64)
    });
    let issuing = last_create.elapsed();
    assert!(
        all_issuing,
        "only {:?} of {n} clients registered",
        server.metric("latchkey_clients_loaded")
    );
    let all_ready = eventually(Duration::from_secs(900), || {
        ready_at.lock().unwrap().is_some()
    });
    assert!(all_ready, "not every client became Ready");
    let ready = ready_at
        .lock()
        .unwrap()
        .unwrap()
        .saturating_duration_since(last_create);
    rt.block_on(async { watcher_task.await.unwrap() });
    // Let the last writes land before counting them.
    std::thread::sleep(Duration::from_secs(2));
    let after = api_writes();
    let rss = peak_rss_kib(server.pid()) as f64 / 1024.0;

    // Every client issues a token with its generated credentials (a sample of 500, spread).
    let credentials = generated_credentials(&ns.0);
    assert_eq!(credentials.len(), n);
    let mut conn = server.connect();
    for (id, secret) in credentials.iter().step_by((n / 500).max(1)) {
        let res = conn.send(&post_token(
            &[("Authorization", &basic(id, secret)), FORM],
            "grant_type=client_credentials",
        ));
        assert_eq!(res.status, 200, "{id}");
    }
    let per = |a: f64, b: f64| (a - b) / n as f64;
    let (secrets_w, status_w, events_w) = (
        per(after.0, before.0),
        per(after.1, before.1),
        per(after.2, before.2),
    );
    println!(
        "figure: operator scale: {n} OAuthClients created in {:.1} s; all issuing {:.1} s and all Ready {:.1} s after the last create; peak RSS {rss:.1} MiB; API writes per client {:.2} (Secret creates {secrets_w:.2}, status patches {status_w:.2}, Events {events_w:.3})",
        created.as_secs_f64(),
        issuing.as_secs_f64(),
        ready.as_secs_f64(),
        secrets_w + status_w + events_w,
    );
}
