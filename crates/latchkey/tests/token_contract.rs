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

fn get(server: &Server, path: &str, headers: &str) -> Response {
    server.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n").as_bytes())
}

#[test]
fn metadata_is_found_from_the_issuer_identifier_and_tells_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let port = server.addr.port();
    // RFC 8414 §3.1 for the issuer https://idp.am.wso2.com/token, and the root path.
    for path in [
        "/.well-known/oauth-authorization-server/token",
        "/.well-known/oauth-authorization-server",
        "/token/.well-known/oauth-authorization-server",
    ] {
        let res = server
            .send(format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes());
        assert_eq!(res.status, 200, "{path}");
        let doc = res.json();
        let base = format!("https://localhost:{port}");
        assert_eq!(doc["issuer"], "https://idp.am.wso2.com/token");
        assert_eq!(doc["token_endpoint"], format!("{base}/oauth2/token"));
        assert_eq!(doc["jwks_uri"], format!("{base}/oauth2/jwks"));
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials", "authorization_code", "refresh_token"])
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            // Issue 11: private_key_jwt. Issue 12: none (public clients).
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none"
            ])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        // Standard RFC 8414 members only.
        let standard = [
            "issuer",
            "token_endpoint",
            "jwks_uri",
            "grant_types_supported",
            "token_endpoint_auth_methods_supported",
            "response_types_supported",
            "scopes_supported",
            // Issue 11: client authentication by assertion.
            "token_endpoint_auth_signing_alg_values_supported",
            // Issue 13
            "introspection_endpoint",
            "introspection_endpoint_auth_methods_supported",
            "revocation_endpoint",
            "revocation_endpoint_auth_methods_supported",
            // Issue 12: registered for RFC 8414 metadata by OpenID Connect Discovery and
            // RFC 9207.
            "authorization_endpoint",
            "userinfo_endpoint",
            "end_session_endpoint",
            "response_modes_supported",
            "code_challenge_methods_supported",
            "authorization_response_iss_parameter_supported",
            "subject_types_supported",
            "claims_supported",
            "id_token_signing_alg_values_supported",
        ];
        for member in doc.as_object().unwrap().keys() {
            assert!(standard.contains(&member.as_str()), "{member}");
        }
        // The endpoints follow Host: kept out of shared caches.
        assert_eq!(res.header("vary"), Some("Host"));
        assert_eq!(res.header("cache-control"), Some("private, max-age=300"));
        assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    }
    // Issue 12: the same document is the OpenID configuration.
    for path in [
        "/.well-known/openid-configuration",
        "/token/.well-known/openid-configuration",
    ] {
        let res = get(&server, path, "");
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.json()["issuer"], "https://idp.am.wso2.com/token");
        assert_eq!(
            res.json()["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
    }

    // With --public-url: the issuer stays --issuer, endpoints move, shared caching follows
    // --jwks-max-age.
    let server2 = Server::start(
        &dir.path().join("b"),
        &[
            "--public-url",
            "https://idp.example.com/",
            "--issuer",
            "https://issuer.example/tenants/a",
            "--jwks-max-age",
            "90s",
        ],
    );
    let res = server2.send(
        b"GET /.well-known/oauth-authorization-server/tenants/a HTTP/1.1\r\nHost: evil\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert_eq!(doc["issuer"], "https://issuer.example/tenants/a");
    assert_eq!(
        doc["token_endpoint"],
        "https://idp.example.com/oauth2/token"
    );
    assert_eq!(res.header("cache-control"), Some("public, max-age=90"));
    assert_eq!(res.header("vary"), None);
    assert_eq!(
        get(
            &server2,
            "/.well-known/oauth-authorization-server/token",
            ""
        )
        .status,
        404
    );
}

#[test]
fn jwks_is_cacheable_and_revalidates_by_etag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--jwks-max-age", "120s"]);
    let res = get(&server, "/oauth2/jwks", "");
    assert_eq!(res.header("cache-control"), Some("public, max-age=120"));
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let etag = res.header("etag").unwrap().to_owned();
    // RFC 9110 §13.1.2: weak comparison, "*", lists, several header lines.
    for condition in [
        format!("If-None-Match: {etag}\r\n"),
        format!("If-None-Match: W/{etag}\r\n"),
        "If-None-Match: *\r\n".to_owned(),
        format!("If-None-Match: \"other\", W/{etag}\r\n"),
        format!("If-None-Match: \"other\"\r\nIf-None-Match: {etag}\r\n"),
    ] {
        let again = get(&server, "/oauth2/jwks", &condition);
        assert_eq!(again.status, 304, "{condition}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    assert_eq!(
        get(&server, "/oauth2/jwks", "If-None-Match: \"other\"\r\n").status,
        200
    );
}

#[test]
fn cors_public_documents_for_all_and_the_token_endpoint_for_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--cors-origin", "https://app.example"]);
    let preflight = |path: &str, origin: &str, method: &str| {
        server.send(
            format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: {method}\r\n\
                 Access-Control-Request-Headers: authorization, content-type\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    for path in [
        "/oauth2/jwks",
        "/.well-known/oauth-authorization-server/token",
        "/oauth2/certificate",
    ] {
        let res = preflight(path, "https://anyone.example", "GET");
        assert_eq!(res.status, 204, "{path}");
        assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    }
    let res = preflight("/oauth2/token", "https://app.example", "POST");
    assert_eq!(res.status, 204);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        res.header("access-control-allow-headers")
            .unwrap()
            .contains("Authorization")
    );
    let res = preflight("/oauth2/token", "https://evil.example", "POST");
    assert_eq!(res.header("access-control-allow-origin"), None);
    let res = server.token(
        &[
            ("Authorization", SEED_AUTH),
            FORM,
            ("Origin", "https://app.example"),
        ],
        "grant_type=client_credentials",
    );
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // Without --cors-origin the token endpoint grants no origin.
    let plain = Server::start(&dir.path().join("b"), &[]);
    let res = plain.token(
        &[
            ("Authorization", SEED_AUTH),
            FORM,
            ("Origin", "https://app.example"),
        ],
        "grant_type=client_credentials",
    );
    assert_eq!(res.header("access-control-allow-origin"), None);
}

#[test]
fn vschar_client_ids_work_over_basic_and_post() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(
        &clients,
        r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: url }
spec: { clientId: "https://app.example.com/client.json", secretRef: { name: creds, key: url } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: spaced }
spec: { clientId: "my client: #1 ~!", secretRef: { name: creds, key: spaced } }
---
apiVersion: v1
kind: Secret
metadata: { name: creds }
stringData: { url: "s3cr:t %+&=", spaced: "x y" }
"#,
    )
    .unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &["--clients", clients.to_str().unwrap()],
    );
    for (id, secret) in [
        ("https://app.example.com/client.json", "s3cr:t %+&="),
        ("my client: #1 ~!", "x y"),
    ] {
        let res = server.token(
            &[("Authorization", &basic(id, secret)), FORM],
            "grant_type=client_credentials",
        );
        assert_eq!(res.status, 200, "{id}: {}", res.text());
        let (_, claims) = jwt_parts(res.json()["access_token"].as_str().unwrap());
        assert_eq!(claims["clientId"], id);
        let res = server.token(
            &[FORM],
            &format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                form_encode(id),
                form_encode(secret)
            ),
        );
        assert_eq!(res.status, 200, "{id}: {}", res.text());
    }
    let logs = server.logs().join("\n");
    assert!(logs.contains("my client: #1 ~!"), "{logs}");
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
        // First class: a certificate, as x5c and x5t#S256 and at /oauth2/certificate.
        let jwk = &jwks["keys"][0];
        assert!(jwk["x5c"][0].is_string(), "{alg}: {jwk}");
        assert!(jwk["x5t#S256"].is_string(), "{alg}: {jwk}");
        let cert = server.send(b"GET /oauth2/certificate HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(cert.status, 200, "{alg}");
        let x5c = jwk["x5c"][0].as_str().unwrap();
        assert!(cert.text().replace('\n', "").contains(&x5c[..60]), "{alg}");
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
