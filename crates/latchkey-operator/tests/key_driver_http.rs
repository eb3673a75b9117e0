//! The key driver over the keys Secret, against a stand-in API server: conditional writes,
//! conflicts, externally managed keys, revocation and first creation.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, runtime::events::Reporter};
use latchkey_core::{
    Issuer, KeySet, Registry, SigningAlgorithm,
    key_driver::{self, DriverError, KeyRequests},
    keyring::{KeyEvent, KeyRing, KidStrategy, RotationPolicy},
    store::StoreError,
    token::TokenSettings,
};
use latchkey_operator::{
    Observer,
    key_driver::KeyDriver,
    key_secret::{
        self, EXTERNAL_ANNOTATION, REVOKE_ANNOTATION, ROTATE_ANNOTATION, SecretKeyStore, Seen,
    },
};
use serde_json::{Value, json};
use support::{ApiServer, Call};
use tokio::sync::watch;

const NAMESPACE: &str = "latchkey";
const NAME: &str = "latchkey-signing-keys";
const SECRET_PATH: &str = "/api/v1/namespaces/latchkey/secrets/latchkey-signing-keys";

fn policy() -> RotationPolicy {
    RotationPolicy {
        alg: SigningAlgorithm::EdDSA,
        rsa_bits: 2048,
        kid: KidStrategy::Thumbprint,
        rotation_period: Duration::from_secs(3600),
        verifier_cache: Duration::from_secs(120),
        clock_skew: Duration::from_secs(5),
        max_token_lifetime: Duration::from_secs(600),
    }
}

/// A fixed start of the key ring's life.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

/// A ring made at `t0` and brought up to date at `now`.
fn ring_at(now: SystemTime) -> KeyRing {
    let mut ring = KeyRing::bootstrap(&policy(), t0()).unwrap();
    ring.advance(&policy(), now).unwrap();
    ring
}

/// The keys Secret as the watch last saw it, at resourceVersion `rv`.
fn present(ring: &KeyRing, annotations: &[(&str, &str)], rv: &str) -> Seen {
    let annotations = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    let secret = key_secret::secret(NAME, NAMESPACE, ring, annotations, Some(rv.into()));
    Seen::Present(Arc::new(secret))
}

fn store(seen: Seen) -> (SecretKeyStore, ApiServer, watch::Sender<Seen>) {
    let (client, api) = support::pair();
    let (tx, rx) = watch::channel(seen);
    let reporter = Reporter {
        controller: "latchkey".into(),
        instance: Some("latchkey-0".into()),
    };
    let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
    let store = SecretKeyStore::new(secrets, NAME, KidStrategy::Thumbprint, reporter, rx);
    (store, api, tx)
}

/// The key ring in a Secret body.
fn ring_in(body: &Value) -> KeyRing {
    let text = body["data"][key_secret::KEYRING_KEY]
        .as_str()
        .expect("a keyring.json entry");
    KeyRing::from_json(&STANDARD.decode(text).expect("base64")).expect("a key ring")
}

/// Answer a write with the Secret as stored at `rv`.
fn stored(call: Call, status: StatusCode, rv: &str) {
    let mut body = call.body.clone();
    body["metadata"]["resourceVersion"] = json!(rv);
    call.respond(status, &body);
}

struct Quiet;

impl Observer for Quiet {
    fn registry_swapped(&self, _: &Registry) {}
    fn keys_swapped(&self, _: &KeySet, _: &KeyRing, _: &RotationPolicy) {}
    fn key_events(&self, _: &[KeyEvent]) {}
    fn api_contact(&self) {}
    fn leading(&self, _: bool) {}
}

fn driver(store: SecretKeyStore) -> KeyDriver<SecretKeyStore> {
    KeyDriver {
        store,
        policy: policy(),
        issuer: Arc::new(Issuer::new(
            TokenSettings::default(),
            Registry::default(),
            None,
        )),
        observer: Arc::new(Quiet),
    }
}

#[tokio::test(start_paused = true)]
async fn a_pass_replaces_the_secret_at_the_version_it_read() {
    let policy = policy();
    let ring = ring_at(t0());
    let (store, mut api, _seen) = store(present(&ring, &[], "5"));
    // Past the point where the next key must be published.
    let now = at(3600);
    let (pass, ()) = tokio::join!(
        key_driver::pass(&store, &policy, KeyRequests::default(), now),
        async {
            let call = api.next().await;
            assert_eq!(call.method, Method::PUT);
            assert_eq!(call.path, SECRET_PATH);
            assert_eq!(call.body["metadata"]["name"], NAME);
            assert_eq!(call.body["metadata"]["resourceVersion"], "5");
            let written = ring_in(&call.body);
            assert!(written.next().is_some(), "a next key is published");
            assert_eq!(written.active().unwrap().kid, ring.active().unwrap().kid);
            stored(call, StatusCode::OK, "6");
        }
    );
    let pass = pass.unwrap();
    assert!(pass.written);
    assert!(pass.ring.next().is_some());
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_stale_version_is_a_conflict_and_one_write_per_turn() {
    let policy = policy();
    let ring = ring_at(t0());
    let (store, mut api, _seen) = store(present(&ring, &[], "5"));
    let answer_conflict = |mut api: ApiServer| async move {
        let call = api.next().await;
        assert_eq!(call.method, Method::PUT);
        assert_eq!(call.body["metadata"]["resourceVersion"], "5");
        call.fail(StatusCode::CONFLICT, "Conflict");
        api
    };

    let (pass, returned) = tokio::join!(
        key_driver::pass(&store, &policy, KeyRequests::default(), at(3600)),
        answer_conflict(api)
    );
    api = returned;
    assert_eq!(pass.unwrap_err(), DriverError::Store(StoreError::Conflict));
    api.expect_silence().await;

    // The operator's turn (rotation is long due by the wall clock): one write, the conflict
    // taken calmly, and the stored keys served meanwhile.
    let driver = driver(store);
    let (served, returned) = tokio::join!(driver.turn(true, None), answer_conflict(api));
    api = returned;
    assert_eq!(served, Some(ring.clone()));
    assert_eq!(
        driver
            .issuer
            .keys()
            .expect("keys are served")
            .active()
            .kid(),
        ring.active().unwrap().kid
    );
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn an_externally_managed_secret_is_never_written() {
    let policy = policy();
    let ring = ring_at(t0());
    let (store, mut api, _seen) = store(present(
        &ring,
        &[(EXTERNAL_ANNOTATION, "true"), (ROTATE_ANNOTATION, "now")],
        "5",
    ));
    // Rotation is long due, and asked for: still nothing is written.
    let pass = tokio::time::timeout(
        support::WAIT,
        key_driver::pass(&store, &policy, KeyRequests::default(), at(10 * 3600)),
    )
    .await
    .expect("a pass that sends nothing")
    .unwrap();
    assert!(!pass.written);
    assert_eq!(pass.ring, ring);
    api.expect_silence().await;

    let driver = driver(store);
    let served = tokio::time::timeout(support::WAIT, driver.turn(true, None))
        .await
        .expect("a turn that sends nothing");
    assert_eq!(served, Some(ring));
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_revoke_promotes_the_next_key_in_one_write() {
    let policy = policy();
    // A ring with a next key published.
    let now = at(3600 - 120);
    let ring = ring_at(now);
    let active = ring.active().unwrap().kid.clone();
    let next = ring.next().expect("a next key").kid.clone();
    let (store, mut api, _seen) = store(present(
        &ring,
        &[(REVOKE_ANNOTATION, &active), ("example.com/keep", "yes")],
        "5",
    ));
    let (pass, ()) = tokio::join!(
        key_driver::pass(&store, &policy, KeyRequests::default(), now),
        async {
            let call = api.next().await;
            assert_eq!(call.method, Method::PUT);
            assert_eq!(call.path, SECRET_PATH);
            assert_eq!(call.body["metadata"]["resourceVersion"], "5");
            assert_eq!(
                call.body["metadata"]["annotations"],
                json!({"example.com/keep": "yes"}),
                "the request carried out is removed, other annotations kept"
            );
            let written = ring_in(&call.body);
            assert_eq!(
                written.active().unwrap().kid,
                next,
                "the next key signs at once"
            );
            assert!(
                written.keys.iter().all(|k| k.kid != active),
                "the revoked key is gone"
            );
            stored(call, StatusCode::OK, "6");
        }
    );
    let pass = pass.unwrap();
    assert!(pass.written);
    assert!(pass.events.contains(&KeyEvent::Revoked { kid: active }));
    assert!(pass.events.contains(&KeyEvent::Activated { kid: next }));
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_secret_is_created() {
    let policy = policy();
    let (store, mut api, _seen) = store(Seen::Absent);
    let (pass, ()) = tokio::join!(
        key_driver::pass(&store, &policy, KeyRequests::default(), t0()),
        async {
            let call = api.next().await;
            assert_eq!(call.method, Method::POST);
            assert_eq!(call.path, "/api/v1/namespaces/latchkey/secrets");
            let meta = &call.body["metadata"];
            assert_eq!(meta["name"], NAME);
            assert_eq!(meta["namespace"], NAMESPACE);
            assert!(
                meta.get("resourceVersion").is_none(),
                "a create has no precondition"
            );
            assert_eq!(
                meta["labels"][latchkey_api::resolve::MANAGED_BY_LABEL],
                "latchkey"
            );
            let written = ring_in(&call.body);
            assert_eq!(written.keys.len(), 1);
            assert!(written.active().is_some());
            stored(call, StatusCode::CREATED, "1");
        }
    );
    let pass = pass.unwrap();
    assert!(pass.written);
    assert!(matches!(pass.events[0], KeyEvent::Created { .. }));
    api.expect_silence().await;
}

#[tokio::test(start_paused = true)]
async fn a_turn_that_changes_the_keys_reports_them_on_the_secret() {
    // Made long ago by the wall clock: a rotation is due.
    let ring = ring_at(t0());
    let (store, mut api, _seen) = store(present(&ring, &[], "5"));
    let driver = driver(store);
    let (served, ()) = tokio::join!(driver.turn(true, None), async {
        let put = api.next().await;
        assert_eq!(put.method, Method::PUT);
        let next = ring_in(&put.body).next().expect("a next key").kid.clone();
        stored(put, StatusCode::OK, "6");

        let event = api.next().await;
        assert_eq!(event.method, Method::POST);
        assert_eq!(
            event.path,
            "/apis/events.k8s.io/v1/namespaces/latchkey/events"
        );
        assert_eq!(event.body["type"], "Normal");
        assert_eq!(event.body["reason"], "KeyCreated");
        assert_eq!(event.body["regarding"]["kind"], "Secret");
        assert_eq!(event.body["regarding"]["name"], NAME);
        assert!(event.body["note"].as_str().unwrap().contains(&next));
        let body = event.body.clone();
        event.respond(StatusCode::CREATED, &body);
    });
    let served = served.expect("keys are served");
    assert!(served.next().is_some());
    assert_eq!(served.active().unwrap().kid, ring.active().unwrap().kid);
    api.expect_silence().await;
}
