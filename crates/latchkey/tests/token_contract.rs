//! The APK token contract, end to end against the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::HashSet, process::Command};

use common::*;

/// The seed request exactly as curl sends it over HTTP/1.1 (curl adds Host, User-Agent,
/// Accept and Content-Length to the command's headers and body).
fn seed_request_bytes(port: u16) -> Vec<u8> {
    format!(
        "POST /oauth2/token HTTP/1.1\r\n\
         Host: localhost:{port}\r\n\
         User-Agent: curl/7.88.1\r\n\
         Accept: */*\r\n\
         Authorization: {SEED_AUTH}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 29\r\n\
         \r\n\
         grant_type=client_credentials"
    )
    .into_bytes()
}

#[test]
fn seed_request_returns_an_apk_token_that_verifies_with_the_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let res = server.send(&seed_request_bytes(server.addr.port()));
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    let members: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(members.len(), 4, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "default");
    // Members in APK's order.
    let text = res.text();
    let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(
        pos("access_token") < pos("token_type")
            && pos("token_type") < pos("expires_in")
            && pos("expires_in") < pos("scope")
    );

    let token = body["access_token"].as_str().unwrap();
    let (header, claims) = jwt_parts(token);
    assert_eq!(
        serde_json::Value::Object(header),
        serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "gateway_certificate_alias"})
    );
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "clientId", "exp", "iat", "iss", "jti", "nbf", "scope", "sub"
        ]
    );
    assert_eq!(claims["iss"], "https://idp.am.wso2.com/token");
    assert_eq!(claims["sub"], APK_ID);
    assert_eq!(claims["clientId"], APK_ID);
    assert_eq!(claims["scope"], "default");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 3600);
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);

    for path in ["/oauth2/jwks", "/.well-known/jwks.json", "/oauth2/keys"] {
        let jwks =
            server.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        assert_eq!(jwks.status, 200, "{path}");
        let doc = jwks.json();
        let key = &doc["keys"][0];
        assert_eq!(
            (
                key["kid"].as_str(),
                key["alg"].as_str(),
                key["use"].as_str()
            ),
            (
                Some("gateway_certificate_alias"),
                Some("RS256"),
                Some("sig")
            )
        );
        assert_eq!(key["kty"], "RSA");
        assert!(key.get("d").is_none(), "private member published");
        let verified = verify_with_jwks(token, &doc);
        assert_eq!(verified["clientId"], APK_ID);
    }
}

#[test]
fn the_seed_curl_command_works_unchanged_but_for_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            &format!("https://localhost:{}/oauth2/token", server.addr.port()),
        ])
        .args(["--header", &format!("Authorization: {SEED_AUTH}")])
        .args([
            "--header",
            "Content-Type: application/x-www-form-urlencoded",
        ])
        .args(["--data-urlencode", "grant_type=client_credentials"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .output()
        .expect("curl is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert!(status.starts_with("200 "), "{text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["token_type"], "Bearer");
    // curl offers h2 by ALPN over TLS; Latchkey serves it.
    assert_eq!(status, "200 2", "curl should have used HTTP/2");
    // And HTTP/1.1 when asked.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg(format!(
            "https://localhost:{}/oauth2/token",
            server.addr.port()
        ))
        .args(["--header", &format!("Authorization: {SEED_AUTH}")])
        .args(["--data-urlencode", "grant_type=client_credentials"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "200 1.1");
}

#[test]
fn jti_is_unique_over_a_thousand_tokens_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--key-alg", "EdDSA"]);
    let mut conn = server.connect();
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let res = conn.send(&post_token(
            &[("Authorization", SEED_AUTH), FORM],
            "grant_type=client_credentials",
        ));
        assert_eq!(res.status, 200);
        let (_, claims) = jwt_parts(res.json()["access_token"].as_str().unwrap());
        assert!(
            seen.insert(claims["jti"].as_str().unwrap().to_owned()),
            "jti repeated"
        );
    }
    assert_eq!(seen.len(), 1000);
}

#[test]
fn client_secret_post_scopes_and_encoded_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(
        &clients,
        r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: orders, namespace: apps }
spec:
  clientId: orders-gateway
  secretRef: { name: orders-secret }
  scopes: ["orders:read", "apk:*"]
  defaultScopes: ["orders:read"]
  audience: [orders-api]
  accessTokenLifetime: 15m
  claims: { organization: apps }
---
apiVersion: v1
kind: Secret
metadata: { name: orders-secret, namespace: apps }
stringData:
  clientSecret: "p@ss:w%rd+with spaces"
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let server = Server::start(&state, &["--clients", clients.to_str().unwrap()]);
    let secret = "p@ss:w%rd+with spaces";

    // client_secret_basic with each part form-urlencoded.
    let res = server.token(
        &[("Authorization", &basic("orders-gateway", secret)), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["expires_in"], 900);
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "orders-api");
    assert_eq!(claims["organization"], "apps");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );

    // client_secret_post.
    let form = format!(
        "grant_type=client_credentials&client_id=orders-gateway&client_secret={}&scope=apk%3Aapi_create+default",
        form_encode(secret)
    );
    let res = server.token(&[FORM], &form);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["scope"], "apk:api_create default");

    // The secret sent unencoded in Basic is a different secret.
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let raw = format!(
        "Basic {}",
        STANDARD.encode(format!("orders-gateway:{secret}"))
    );
    let res = server.token(
        &[("Authorization", &raw), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(res.status, 401);

    // A scope outside the client's list.
    let res = server.token(
        &[("Authorization", &basic("orders-gateway", secret)), FORM],
        "grant_type=client_credentials&scope=orders%3Awrite",
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_scope");

    // Neither the secret nor any token reaches the logs.
    let logs = server.logs().join("\n");
    assert!(
        !logs.contains(secret) && !logs.contains("p@ss"),
        "secret in logs"
    );
    assert!(!logs.contains("eyJ"), "token in logs");
    assert!(
        logs.contains(r#""client_id":"orders-gateway""#),
        "access log line missing:\n{logs}"
    );
}

#[test]
fn discovery_documents_describe_the_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let res = server.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
                server.addr.port()
            )
            .as_bytes(),
        );
        assert_eq!(res.status, 200);
        let doc = res.json();
        let base = format!("https://localhost:{}", server.addr.port());
        assert_eq!(doc["issuer"], "https://idp.am.wso2.com/token");
        assert_eq!(doc["token_endpoint"], format!("{base}/oauth2/token"));
        assert_eq!(doc["jwks_uri"], format!("{base}/oauth2/jwks"));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
    }
    let server2 = Server::start(
        &dir.path().join("b"),
        &["--public-url", "https://idp.example.com/"],
    );
    let doc = server2
        .send(b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: evil\r\n\r\n")
        .json();
    assert_eq!(
        doc["token_endpoint"],
        "https://idp.example.com/oauth2/token"
    );
}

#[test]
fn jwks_is_cacheable_and_revalidates_by_etag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--jwks-max-age", "120s"]);
    let res = server.send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(res.header("cache-control"), Some("public, max-age=120"));
    let etag = res.header("etag").unwrap().to_owned();
    let again = server.send(
        format!("GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {etag}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
}

#[test]
fn other_algorithms_sign_and_verify() {
    for alg in ["ES256", "EdDSA"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &["--key-alg", alg]);
        let token = server.seed_token();
        assert_eq!(jwt_parts(&token).0["alg"], alg);
        let jwks = server
            .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .json();
        verify_with_jwks(&token, &jwks);
    }
}

#[test]
fn plaintext_mode_and_admin_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--plaintext"]);
    let res = server.token(
        &[("Authorization", SEED_AUTH), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(res.status, 200);
    assert_eq!(server.admin_get("/healthz").status, 200);
    assert_eq!(server.admin_get("/readyz").status, 200);
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(
            r#"latchkey_token_requests_total{result="success",grant_type="client_credentials"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("latchkey_clients_loaded 1"), "{metrics}");
    assert!(metrics.contains(r#"latchkey_signing_key_info{kid="gateway_certificate_alias",alg="RS256",state="active"} 1"#), "{metrics}");
    assert!(
        metrics.contains("latchkey_token_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(!metrics.contains(APK_SECRET));
}
