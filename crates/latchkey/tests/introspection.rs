//! Issue 13: `POST /oauth2/introspect` (RFC 7662) on the real standalone binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

pub const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: gw }
spec: { clientId: gw, secretRef: { name: gw }, scopes: ["orders:*"], audience: [orders-api] }
---
apiVersion: v1
kind: Secret
metadata: { name: gw }
stringData: { clientSecret: gw-secret }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: short }
spec: { clientId: short, secretRef: { name: gw }, accessTokenLifetime: 1s }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: rs }
spec: { clientId: rs, secretRef: { name: rs }, introspection: true }
---
apiVersion: v1
kind: Secret
metadata: { name: rs }
stringData: { clientSecret: rs-secret }
"#;

/// A POST of a form to `path`.
fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    server.send(&post_request(path, headers, body))
}

fn token_of(server: &Server, id: &str, secret: &str, scope: &str) -> String {
    let res = server.token(
        &[("Authorization", &basic(id, secret)), FORM],
        &format!("grant_type=client_credentials&scope={}", form_encode(scope)),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["access_token"].as_str().unwrap().to_owned()
}

fn introspect(server: &Server, auth: &str, token: &str) -> Response {
    post(
        server,
        "/oauth2/introspect",
        &[("Authorization", auth), FORM],
        &format!("token={}", form_encode(token)),
    )
}

#[test]
fn introspection_answers_claims_for_active_tokens_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients.yaml"), CLIENTS).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            dir.path().join("clients.yaml").to_str().unwrap(),
        ],
    );
    let rs = basic("rs", "rs-secret");
    let token = token_of(&server, "gw", "gw-secret", "orders:read");

    let res = introspect(&server, &rs, &token);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let v = res.json();
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "gw");
    assert_eq!(v["scope"], "orders:read");
    assert_eq!(v["aud"], "orders-api");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["exp"].as_u64().unwrap() > v["iat"].as_u64().unwrap());
    assert_eq!(v["iss"], "https://idp.am.wso2.com/token");

    // Client credentials in the form work too.
    let res = post(
        &server,
        "/oauth2/introspect",
        &[FORM],
        &format!("client_id=rs&client_secret=rs-secret&token={token}"),
    );
    assert_eq!(res.json()["active"], true);

    // Not Latchkey's, tampered, expired: {"active":false} and nothing more.
    let inactive = serde_json::json!({ "active": false });
    for other in [
        "garbage".to_owned(),
        format!("{token}x"),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(),
    ] {
        let res = introspect(&server, &rs, &other);
        assert_eq!((res.status, res.json()), (200, inactive.clone()), "{other}");
    }
    let short = token_of(&server, "short", "gw-secret", "default");
    assert_eq!(introspect(&server, &rs, &short).json()["active"], true);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(introspect(&server, &rs, &short).json(), inactive);

    // Callers: authenticated, and allowed by spec.introspection.
    let res = introspect(&server, &basic("gw", "gw-secret"), &token);
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(res.json()["error"], "unauthorized_client");
    let res = introspect(&server, &basic("rs", "wrong"), &token);
    assert_eq!(res.status, 401);
    assert_eq!(res.json()["error"], "invalid_client");
    let res = post(
        &server,
        "/oauth2/introspect",
        &[FORM],
        &format!("token={token}"),
    );
    assert_eq!(res.json()["error"], "invalid_client");
    let res = post(
        &server,
        "/oauth2/introspect",
        &[("Authorization", &rs), FORM],
        "",
    );
    assert_eq!(
        (res.status, res.json()["error"].clone()),
        (400, "invalid_request".into())
    );
    let res = server.send(b"GET /oauth2/introspect HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(res.status, 405);

    // The metadata names the endpoint and its authentication methods.
    let meta = server
        .send(b"GET /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: x\r\n\r\n")
        .json();
    assert!(
        meta["introspection_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/introspect")
    );
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
}
