//! Authorization grants in a cluster, against a real kube-apiserver and etcd (`make e2e`):
//! two stores with their own API clients stand for two replicas behind one Service. A code
//! redeemed through one is refused through the other; refresh rotation and reuse detection hold
//! whichever replica each request reaches; two replicas racing on one code or one refresh token
//! never both win; expired grants are swept; the ConfigMaps hold no usable secret.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use latchkey_core::authorization_grant::{
    self as grants, CollectionStore, GrantPhase, GrantRecord, NewGrant, Refusal,
};
use latchkey_operator::collection_configmaps::CollectionConfigMaps;

const DAY: Duration = Duration::from_secs(86_400);
const REDIRECT: &str = "https://app.example/cb";

fn new_grant(challenge: Option<String>) -> NewGrant {
    NewGrant {
        client_id: "web".into(),
        user_id: "u-1".into(),
        scope: "openid".into(),
        auth_time: 1_000,
        nonce: Some("n-1".into()),
        organization: Some("org1".into()),
        redirect_uri: REDIRECT.into(),
        code_challenge: challenge,
    }
}

async fn replicas(
    ns: &str,
) -> (
    CollectionConfigMaps<GrantRecord>,
    CollectionConfigMaps<GrantRecord>,
) {
    (
        CollectionConfigMaps::grants(client().await, ns),
        CollectionConfigMaps::grants(client().await, ns),
    )
}

async fn issue_on(store: &CollectionConfigMaps<GrantRecord>, now: u64) -> (String, String) {
    let verifier = "v".repeat(43);
    let (id, code, record) =
        grants::issue(new_grant(Some(grants::s256_challenge(&verifier))), now).unwrap();
    store.create(&id, &record).await.unwrap();
    (id, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_redeemed_on_one_replica_is_refused_on_the_other_and_refresh_holds_across_them() {
    let ns = Namespace::new("grants");
    let (a, b) = replicas(&ns.0).await;
    let verifier = "v".repeat(43);
    let (id, code) = issue_on(&a, 1_000).await;

    // No usable secret in the object.
    let cms: Api<ConfigMap> = Api::namespaced(client().await, &ns.0);
    let cm = cms.get(&format!("lkgrant-{id}")).await.unwrap();
    let stored = serde_json::to_string(&cm.data).unwrap();
    assert!(
        !stored.contains(code.split_once('.').unwrap().1),
        "{stored}"
    );

    let first = grants::redeem(&a, &code, "web", REDIRECT, Some(&verifier), 1_010, DAY)
        .await
        .unwrap();
    assert_eq!(
        grants::redeem(&b, &code, "web", REDIRECT, Some(&verifier), 1_011, DAY)
            .await
            .unwrap_err(),
        Refusal::Replayed,
        "the code was redeemed on the other replica"
    );
    // That replay revoked the family: the refresh token from the first redemption is dead.
    assert_eq!(
        grants::refresh(&a, &first.refresh_token, "web", 1_012)
            .await
            .unwrap_err(),
        Refusal::Revoked
    );

    // A fresh sign-in: rotation alternates between the replicas.
    let (id, code) = issue_on(&b, 2_000).await;
    let r1 = grants::redeem(&b, &code, "web", REDIRECT, Some(&verifier), 2_001, DAY)
        .await
        .unwrap();
    let r2 = grants::refresh(&a, &r1.refresh_token, "web", 2_002)
        .await
        .unwrap();
    let r3 = grants::refresh(&b, &r2.refresh_token, "web", 2_003)
        .await
        .unwrap();
    assert!(r3.refresh_token.starts_with(&format!("{id}.3.")));
    // The rotated r1 comes back on the other replica: the whole family ends.
    assert_eq!(
        grants::refresh(&a, &r1.refresh_token, "web", 2_004)
            .await
            .unwrap_err(),
        Refusal::Replayed
    );
    assert_eq!(
        grants::refresh(&b, &r3.refresh_token, "web", 2_005)
            .await
            .unwrap_err(),
        Refusal::Revoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_never_both_win() {
    let ns = Namespace::new("grants-race");
    let (a, b) = replicas(&ns.0).await;
    let verifier = "v".repeat(43);
    for round in 0..5u64 {
        let now = 10_000 + round * 10;
        let (id, code) = issue_on(&a, now).await;
        let (ra, rb) = tokio::join!(
            grants::redeem(&a, &code, "web", REDIRECT, Some(&verifier), now + 1, DAY),
            grants::redeem(&b, &code, "web", REDIRECT, Some(&verifier), now + 1, DAY),
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert!(wins <= 1, "round {round}: both redeemed one code");
        if wins == 1 {
            // The loser saw a replay and revoked the grant.
            let stored = a.load(&id).await.unwrap().unwrap().value;
            assert!(
                matches!(stored.phase, GrantPhase::Revoked { .. }),
                "{stored:?}"
            );
        }

        let (_, code) = issue_on(&b, now).await;
        let first = grants::redeem(&b, &code, "web", REDIRECT, Some(&verifier), now + 2, DAY)
            .await
            .unwrap();
        let (fa, fb) = tokio::join!(
            grants::refresh(&a, &first.refresh_token, "web", now + 3),
            grants::refresh(&b, &first.refresh_token, "web", now + 3),
        );
        let wins = [&fa, &fb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {fa:?} {fb:?}");
        for got in [fa, fb].into_iter().flatten() {
            assert_eq!(
                grants::refresh(&a, &got.refresh_token, "web", now + 4)
                    .await
                    .unwrap_err(),
                Refusal::Revoked,
                "the racing reuse ended the family"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_grants_are_swept_and_live_ones_stay() {
    let ns = Namespace::new("grants-sweep");
    let (a, b) = replicas(&ns.0).await;
    let verifier = "v".repeat(43);
    let (stale, _) = issue_on(&a, 1_000).await;
    let (live, code) = issue_on(&a, 1_000).await;
    grants::redeem(&a, &code, "web", REDIRECT, Some(&verifier), 1_001, DAY)
        .await
        .unwrap();
    // At 1_060 the unredeemed code expired; the redeemed grant lives a day.
    assert_eq!(b.sweep(1_060).await.unwrap(), 1);
    assert!(a.load(&stale).await.unwrap().is_none());
    assert!(a.load(&live).await.unwrap().is_some());
    assert_eq!(b.sweep(1_001 + DAY.as_secs()).await.unwrap(), 1);
    assert!(a.load(&live).await.unwrap().is_none());
    grants::revoke(&a, &live, "gone already").await.unwrap();
}
