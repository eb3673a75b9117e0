//! Issue 13: `POST /oauth2/revoke` (RFC 7009) and bulk revocation by client
//! (`latchkey tokens revoke --client`) on the real standalone binary, across a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::{process::Command, time::Duration};

use common::*;

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: gw }
spec: { clientId: gw, secretRef: { name: s } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: other }
spec: { clientId: other, secretRef: { name: s } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: rs }
spec: { clientId: rs, secretRef: { name: s }, introspection: true }
---
apiVersion: v1
kind: Secret
metadata: { name: s }
stringData: { clientSecret: pw }
"#;

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

fn revoke(server: &Server, id: &str, token: &str) -> Response {
    post(
        server,
        "/oauth2/revoke",
        &basic(id, "pw"),
        &format!("token={token}&token_type_hint=access_token"),
    )
}

fn start(dir: &std::path::Path) -> Server {
    Server::start(
        &dir.join("state"),
        &[
            "--clients",
            dir.join("clients.yaml").to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    )
}

#[test]
fn revoked_tokens_are_inactive_across_restarts_and_bulk_revocation_covers_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let server = start(dir.path());
    let (t1, t2, theirs) = (
        token_of(&server, "gw"),
        token_of(&server, "gw"),
        token_of(&server, "other"),
    );
    assert!(active(&server, &t1) && active(&server, &t2));

    let res = revoke(&server, "gw", &t1);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(!active(&server, &t1), "revoked");
    assert!(active(&server, &t2), "only that token");
    assert_eq!(revoke(&server, "gw", &t1).status, 200, "again: still 200");

    // Someone else's token is refused; what is not a Latchkey token is 200 with nothing done.
    let res = revoke(&server, "gw", &theirs);
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "unauthorized_client");
    assert!(active(&server, &theirs));
    assert_eq!(revoke(&server, "gw", "some-refresh-token").status, 200);
    assert_eq!(revoke(&server, "gw", "").json()["error"], "invalid_request");
    assert_eq!(revoke(&server, "gw", "").status, 400);
    let res = post(
        &server,
        "/oauth2/revoke",
        &basic("gw", "wrong"),
        &format!("token={t2}"),
    );
    assert_eq!(res.status, 401);
    assert!(active(&server, &t2));

    // The list lives in the state directory: a restart keeps it.
    server.terminate();
    assert!(dir.path().join("state/revocations.json").exists());
    let server = start(dir.path());
    assert!(!active(&server, &t1));
    assert!(active(&server, &t2));

    // Bulk: every token gw holds now, by the command; new ones work again.
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["tokens", "revoke", "--client", "gw", "--clients"])
        .arg(&clients)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(Duration::from_secs(10), || !active(&server, &t2)),
        "bulk revocation never took effect"
    );
    assert!(active(&server, &theirs), "other clients are untouched");
    std::thread::sleep(Duration::from_millis(1_100));
    let t3 = token_of(&server, "gw");
    assert!(active(&server, &t3), "tokens issued after it are active");
    let text = std::fs::read_to_string(&clients).unwrap();
    assert!(text.contains("latchkey.dev/revoke-tokens-before"), "{text}");

    let meta = server
        .send(b"GET /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: x\r\n\r\n")
        .json();
    assert!(
        meta["revocation_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/revoke")
    );
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        // Issue 12: a public client revokes with its client_id alone.
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
}
