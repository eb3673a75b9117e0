//! Leader election against a stand-in API server: a free Lease is taken, a lost race (409)
//! means not leading, and a replica that does not lead writes nothing.
#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use latchkey_api::{
    OAuthClient,
    resolve::{ClientState, Outcome},
};
use latchkey_operator::{
    OperatorError,
    client_watch::Changes,
    leader::{self, LeaderConfig},
    writer::Writer,
};
use serde_json::{Value, json};
use support::{ApiServer, Call};
use tokio::{sync::mpsc, sync::watch, task::JoinHandle};

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/latchkey/leases/latchkey";
const ME: &str = "latchkey-0";

fn lease(rv: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "latchkey", "namespace": "latchkey", "resourceVersion": rv},
        "spec": spec,
    })
}

/// Held by another replica that keeps renewing.
fn held_by_other(rv: &str) -> Value {
    lease(
        rv,
        json!({
            "holderIdentity": "latchkey-1",
            "leaseDurationSeconds": 15,
            "renewTime": "2026-01-01T00:00:00.000000Z",
        }),
    )
}

struct Election {
    api: ApiServer,
    leading: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), OperatorError>>,
}

fn elect() -> Election {
    let (client, api) = support::pair();
    let leases: Api<Lease> = Api::namespaced(client, "latchkey");
    let cfg = LeaderConfig {
        name: "latchkey".into(),
        identity: ME.into(),
        lease_duration: Duration::from_secs(15),
        retry_period: Duration::from_secs(2),
    };
    let (leading_tx, leading) = watch::channel(false);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(leader::run(leases, cfg, leading_tx, shutdown_rx, || {}));
    Election {
        api,
        leading,
        shutdown,
        task,
    }
}

fn expect_get(call: &Call) {
    assert_eq!(call.method, Method::GET);
    assert_eq!(call.path, LEASE_PATH);
}

/// Checks a PUT of the Lease: conditional on `rv`, and what it claims.
fn expect_put(call: &Call, rv: &str, holder: Option<&str>) {
    assert_eq!(call.method, Method::PUT);
    assert_eq!(call.path, LEASE_PATH);
    assert_eq!(call.body["metadata"]["resourceVersion"], rv);
    assert_eq!(call.body["spec"]["holderIdentity"].as_str(), holder);
}

async fn became(leading: &mut watch::Receiver<bool>, want: bool) {
    tokio::time::timeout(support::WAIT, leading.wait_for(|l| *l == want))
        .await
        .expect("leadership settles within the wait")
        .expect("the election is running");
}

#[tokio::test(start_paused = true)]
async fn a_free_lease_is_taken_and_released_on_shutdown() {
    let mut e = elect();
    let get = e.api.next().await;
    expect_get(&get);
    // Released by the previous holder: free at once.
    get.respond(
        StatusCode::OK,
        &lease(
            "3",
            json!({"leaseDurationSeconds": 1, "leaseTransitions": 2}),
        ),
    );
    let put = e.api.next().await;
    expect_put(&put, "3", Some(ME));
    assert_eq!(put.body["spec"]["leaseTransitions"], 3);
    assert_eq!(put.body["spec"]["leaseDurationSeconds"], 15);
    let mut taken = put.body.clone();
    taken["metadata"]["resourceVersion"] = json!("4");
    put.respond(StatusCode::OK, &taken);
    became(&mut e.leading, true).await;

    // On shutdown the holder gives the Lease up so another replica takes it at once.
    e.shutdown.send_replace(true);
    let get = e.api.next().await;
    expect_get(&get);
    get.respond(StatusCode::OK, &taken);
    let put = e.api.next().await;
    expect_put(&put, "4", None);
    assert_eq!(put.body["spec"]["leaseDurationSeconds"], 1);
    let body = put.body.clone();
    put.respond(StatusCode::OK, &body);
    e.task.await.unwrap().unwrap();
    assert!(!*e.leading.borrow());
}

#[tokio::test(start_paused = true)]
async fn a_missing_lease_is_created() {
    let mut e = elect();
    let get = e.api.next().await;
    expect_get(&get);
    get.fail(StatusCode::NOT_FOUND, "NotFound");
    let post = e.api.next().await;
    assert_eq!(post.method, Method::POST);
    assert_eq!(
        post.path,
        "/apis/coordination.k8s.io/v1/namespaces/latchkey/leases"
    );
    assert_eq!(post.body["spec"]["holderIdentity"], ME);
    let mut created = post.body.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    post.respond(StatusCode::CREATED, &created);
    became(&mut e.leading, true).await;
}

fn changes(state: ClientState) -> Changes {
    let mut c = OAuthClient::new("gw", Default::default());
    c.metadata.namespace = Some("apps".into());
    Changes {
        outcomes: vec![(
            ("apps".into(), "gw".into()),
            Some(Outcome {
                client: Arc::new(c),
                client_id: Some("gw-id".into()),
                secret_name: "gw-credentials".into(),
                state,
                previous_secret: Default::default(),
            }),
        )],
        to_create: Vec::new(),
    }
}

/// A writer following `leading`.
struct Writing {
    api: ApiServer,
    changes: mpsc::UnboundedSender<Changes>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn writer(leading: watch::Receiver<bool>) -> Writing {
    let (client, api) = support::pair();
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let w = Writer::new(client, ME, "https://latchkey.example/oauth2/token");
    let task = tokio::spawn(w.run(changes_rx, leading, |_| {}, shutdown_rx));
    Writing {
        api,
        changes,
        shutdown,
        task,
    }
}

impl Writing {
    async fn stop(self) {
        self.shutdown.send_replace(true);
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_race_is_not_leading_and_writes_nothing() {
    let mut e = elect();
    let mut w = writer(e.leading.clone());
    w.changes.send(changes(ClientState::Registered)).unwrap();

    let get = e.api.next().await;
    expect_get(&get);
    get.respond(StatusCode::OK, &lease("3", json!({"leaseTransitions": 2})));
    let put = e.api.next().await;
    expect_put(&put, "3", Some(ME));
    // Another replica wrote first.
    put.fail(StatusCode::CONFLICT, "Conflict");

    // The next try finds the winner holding it: no write to the Lease, still not leading.
    let get = e.api.next().await;
    expect_get(&get);
    get.respond(StatusCode::OK, &held_by_other("4"));
    e.shutdown.send_replace(true);
    // Not leading: nothing to release.
    e.api.expect_silence().await;
    e.task.await.unwrap().unwrap();
    assert!(!e.leading.has_changed().unwrap_or(false), "never leading");
    assert!(!*e.leading.borrow());

    w.api.expect_silence().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_loses_the_renewal_steps_down_and_stops_writing() {
    let mut e = elect();
    let mut w = writer(e.leading.clone());
    let get = e.api.next().await;
    get.respond(StatusCode::OK, &lease("3", json!({})));
    let put = e.api.next().await;
    expect_put(&put, "3", Some(ME));
    let mut ours = put.body.clone();
    ours["metadata"]["resourceVersion"] = json!("4");
    put.respond(StatusCode::OK, &ours);
    became(&mut e.leading, true).await;

    // Leading: the writer writes.
    w.changes.send(changes(ClientState::Registered)).unwrap();
    let patch = w.api.next().await;
    assert_eq!(patch.method, Method::PATCH);
    let mut applied = serde_json::to_value(OAuthClient::new("gw", Default::default())).unwrap();
    applied["status"] = patch.body["status"].clone();
    patch.respond(StatusCode::OK, &applied);

    // The renewal loses a race.
    let get = e.api.next().await;
    expect_get(&get);
    get.respond(StatusCode::OK, &ours);
    let put = e.api.next().await;
    expect_put(&put, "4", Some(ME));
    put.fail(StatusCode::CONFLICT, "Conflict");
    became(&mut e.leading, false).await;

    // From here the Lease is someone else's: reads only, and the writer, given new work,
    // writes nothing.
    let mut lease_api = e.api;
    let answering = tokio::spawn(async move {
        while let Some(call) = lease_api.try_next().await {
            expect_get(&call);
            call.respond(StatusCode::OK, &held_by_other("5"));
        }
    });
    w.changes.send(changes(ClientState::Disabled)).unwrap();
    w.api.expect_silence().await;
    assert!(!*e.leading.borrow());

    e.shutdown.send_replace(true);
    e.task.await.unwrap().unwrap();
    answering.await.unwrap();
    w.stop().await;
}
