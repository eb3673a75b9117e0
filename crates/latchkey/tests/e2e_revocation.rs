//! Issue 13 on the real control plane with two replicas: introspection answers alike on both,
//! a token revoked through one is inactive on both within 5 s, and bulk revocation by client
//! (`latchkey tokens revoke --client`) reaches both.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{cluster::*, *};

fn post(server: &Server, path: &str, auth: &str, body: &str) -> Response {
    server.send(&post_request(path, &[("Authorization", auth), FORM], body))
}

fn token_of(server: &Server, id: &str) -> String {
    let res = server.token(
        &[("Authorization", &basic(id, "pw")), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["access_token"].as_str().unwrap().to_owned()
}

fn active(server: &Server, token: &str) -> bool {
    let res = post(
        server,
        "/oauth2/introspect",
        &basic("rs", "pw"),
        &format!("token={token}"),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["active"] == true
}

#[test]
fn a_revocation_on_one_replica_is_seen_by_both_within_five_seconds() {
    install_crd();
    let ns = Namespace::new("revoke");
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(
        &["apply", "-n", &ns.0, "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Secret
metadata: { name: s }
stringData: { clientSecret: pw }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: gw }
spec: { clientId: gw, secretRef: { name: s } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: rs }
spec: { clientId: rs, secretRef: { name: s }, introspection: true }
"#,
        ),
    );
    let a = start_run(&ns.0, "a", &dir.path().join("a"), &[]);
    let b = start_run(&ns.0, "b", &dir.path().join("b"), &[]);
    wait_ready(&a);
    wait_ready(&b);
    for s in [&a, &b] {
        assert!(eventually(Duration::from_secs(20), || s
            .token(
                &[("Authorization", &basic("rs", "pw")), FORM],
                "grant_type=client_credentials"
            )
            .status
            == 200));
    }
    // Issued by one replica, active on both (one key set, one registry).
    let t1 = token_of(&a, "gw");
    let t2 = token_of(&b, "gw");
    for s in [&a, &b] {
        assert!(active(s, &t1) && active(s, &t2));
    }

    // Revoked through b: inactive on b at once, on a within 5 s.
    let res = post(
        &b,
        "/oauth2/revoke",
        &basic("gw", "pw"),
        &format!("token={t1}"),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(!active(&b, &t1));
    let start = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || !active(&a, &t1)),
        "replica a still reports the revoked token active after 5 s"
    );
    println!(
        "revocation reached the other replica in {:?}",
        start.elapsed()
    );
    assert!(active(&a, &t2) && active(&b, &t2));
    let stored = secret_data(&ns.0, "latchkey-revocations").unwrap();
    assert!(stored["revocations.json"].contains('"'), "{stored:?}");

    // Two replicas revoking at once both land (conditional replace, retried on conflict).
    let (t3, t4) = (token_of(&a, "gw"), token_of(&a, "gw"));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(
                post(
                    &a,
                    "/oauth2/revoke",
                    &basic("gw", "pw"),
                    &format!("token={t3}")
                )
                .status,
                200
            )
        });
        s.spawn(|| {
            assert_eq!(
                post(
                    &b,
                    "/oauth2/revoke",
                    &basic("gw", "pw"),
                    &format!("token={t4}")
                )
                .status,
                200
            )
        });
    });
    for s in [&a, &b] {
        assert!(eventually(Duration::from_secs(5), || !active(s, &t3)
            && !active(s, &t4)));
        assert!(!active(s, &t1), "earlier entries are kept");
    }

    // Bulk by client: the command annotates the OAuthClient; both replicas see it.
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .env("KUBECONFIG", kubeconfig())
        .args(["tokens", "revoke", "--client", "gw", "--namespace", &ns.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || !active(s, &t2)),
            "bulk revocation did not reach a replica within 5 s"
        );
    }
    let rs_token = token_of(&a, "rs");
    assert!(active(&b, &rs_token), "other clients are untouched");
    std::thread::sleep(Duration::from_millis(1_100));
    let t5 = token_of(&b, "gw");
    assert!(active(&a, &t5), "tokens issued after it are active");
}
