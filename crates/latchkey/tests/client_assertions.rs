//! Issue 11: clients that authenticate with a signed assertion instead of a secret (RFC 7523
//! §2.2), against the real binary in standalone mode: private_key_jwt with inline keys and a
//! `jwksUri`, each algorithm; a federated issuer served by this test over TLS (its own
//! discovery document and JWKS) that rotates its key mid-test; an air-gapped issuer with
//! inline keys; and every way an assertion must be refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use common::{FORM, Server, form_encode, jwt_parts, publisher::Publisher};
use latchkey_core::{KeyMaterial, SigningAlgorithm, SigningKey};
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The default issuer, which assertions may name as their audience.
const AUD: &str = "https://idp.am.wso2.com/token";
const PUBLIC_URL: &str = "https://latchkey.test";
const SUBJECT: &str = "repo:acme/orders:ref:refs/heads/main";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A key that signs assertions, and its public JWK.
struct Signer {
    key: SigningKey,
}

impl Signer {
    fn new(alg: SigningAlgorithm, kid: &str) -> Signer {
        let material = KeyMaterial::generate(alg, 2048).unwrap();
        Signer {
            key: SigningKey::new(kid, &material).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        serde_json::to_value(self.key.jwk()).unwrap()
    }

    fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    fn sign(&self, claims: &Value) -> String {
        self.key
            .sign_compact(claims.to_string().as_bytes())
            .unwrap()
    }
}

fn claims(iss: &str, sub: &str, aud: &str) -> Value {
    let t = now();
    json!({ "iss": iss, "sub": sub, "aud": aud, "iat": t, "exp": t + 60,
            "jti": uuid() })
}

fn uuid() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    B64.encode(b)
}

/// A token request authenticated by `assertion`, with `client_id` if given.
fn request(server: &Server, client_id: Option<&str>, assertion: &str) -> common::Response {
    let mut body = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={}",
        form_encode(ASSERTION_TYPE),
        form_encode(assertion)
    );
    if let Some(id) = client_id {
        body.push_str(&format!("&client_id={}", form_encode(id)));
    }
    server.token(&[FORM], &body)
}

fn granted(server: &Server, client_id: Option<&str>, assertion: &str, expect: &str) {
    let res = request(server, client_id, assertion);
    assert_eq!(res.status, 200, "{expect}: {}", res.text());
    let token = res.json()["access_token"].as_str().unwrap().to_owned();
    let (_, c) = jwt_parts(&token);
    assert_eq!(c["sub"], json!(expect), "the token contract stays exact");
    assert_eq!(c["clientId"], json!(expect));
}

fn refused(server: &Server, client_id: Option<&str>, assertion: &str, reason: &str) {
    let count = || server.logs().iter().filter(|l| l.contains(reason)).count();
    let before = count();
    let res = request(server, client_id, assertion);
    // invalid_client without an Authorization header is a 400 (RFC 6749 §5.2).
    assert_eq!(res.status, 400, "{reason}: {}", res.text());
    assert_eq!(res.json()["error"], json!("invalid_client"), "{reason}");
    assert!(
        common::eventually(Duration::from_secs(5), || count() > before),
        "the log says why: {reason:?}"
    );
}

/// `latchkey standalone` serving `manifests`, trusting the publisher's CA, with `extra` flags.
fn start_with(dir: &std::path::Path, manifests: &str, extra: &[&str]) -> Server {
    let clients = dir.join("clients.yaml");
    std::fs::write(&clients, manifests).unwrap();
    let ca = dir.join("publisher-ca.pem");
    let mut args = vec![
        "--clients",
        clients.to_str().unwrap(),
        "--assertion-ca-file",
        ca.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&dir.join("state"), &args)
}

fn client_doc(name: &str, spec: Value) -> String {
    let doc = json!({
        "apiVersion": "latchkey.dev/v1alpha1",
        "kind": "OAuthClient",
        "metadata": { "name": name, "namespace": "apps" },
        "spec": spec,
    });
    format!("---\n{}\n", serde_json::to_string(&doc).unwrap())
}

#[test]
fn private_key_jwt_and_federated_issuers() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(dir.path());
    let rs = Signer::new(SigningAlgorithm::RS256, "rs-1");
    let es = Signer::new(SigningAlgorithm::ES256, "es-1");
    let ed = Signer::new(SigningAlgorithm::EdDSA, "ed-1");
    let remote = Signer::new(SigningAlgorithm::ES256, "remote-1");
    let ci_v1 = Signer::new(SigningAlgorithm::RS256, "ci-1");
    let ci_v2 = Signer::new(SigningAlgorithm::EdDSA, "ci-2");
    let airgap = Signer::new(SigningAlgorithm::EdDSA, "air-1");
    let stranger = Signer::new(SigningAlgorithm::EdDSA, "ed-1");

    publisher.publish("/client/jwks", &remote.jwks());
    let issuer = publisher.url("/ci");
    publisher.publish(
        "/ci/.well-known/openid-configuration",
        &json!({ "issuer": issuer, "jwks_uri": publisher.url("/ci/jwks") }),
    );
    publisher.publish("/ci/jwks", &ci_v1.jwks());

    let mut manifests = String::new();
    for (id, signer) in [("pk-rs", &rs), ("pk-es", &es), ("pk-ed", &ed)] {
        manifests.push_str(&client_doc(
            id,
            json!({ "clientId": id, "jwks": signer.jwks() }),
        ));
    }
    manifests.push_str(&client_doc(
        "pk-uri",
        json!({ "clientId": "pk-uri", "jwksUri": publisher.url("/client/jwks") }),
    ));
    manifests.push_str(&client_doc(
        "ci",
        json!({ "clientId": "ci", "federatedIdentities": [
            { "issuer": issuer, "subject": SUBJECT, "audience": "latchkey" }
        ]}),
    ));
    manifests.push_str(&client_doc(
        "airgap",
        json!({ "clientId": "airgap", "federatedIdentities": [
            { "issuer": "https://issuer.airgap.example", "subject": "job:nightly",
              "jwks": airgap.jwks() }
        ]}),
    ));
    let server = start_with(
        dir.path(),
        &manifests,
        &[
            "--assertion-refetch-floor",
            "1s",
            "--public-url",
            PUBLIC_URL,
            // Many refusals from one source on purpose: no throttling.
            "--auth-failure-rate",
            "0",
        ],
    );

    // private_key_jwt, inline keys, each algorithm; client_id optional but checked.
    for (id, signer) in [("pk-rs", &rs), ("pk-es", &es), ("pk-ed", &ed)] {
        granted(&server, None, &signer.sign(&claims(id, id, AUD)), id);
        granted(&server, Some(id), &signer.sign(&claims(id, id, AUD)), id);
    }
    // The token endpoint URL is an audience as well as the issuer.
    let token_url = format!("{PUBLIC_URL}/oauth2/token");
    granted(
        &server,
        None,
        &ed.sign(&claims("pk-ed", "pk-ed", &token_url)),
        "pk-ed",
    );

    // A replay is refused, on every algorithm.
    for (id, signer) in [("pk-rs", &rs), ("pk-es", &es), ("pk-ed", &ed)] {
        let once = signer.sign(&claims(id, id, AUD));
        granted(&server, None, &once, id);
        refused(&server, None, &once, "jti was already used");
    }

    // jwksUri: fetched once, then served from the cache.
    granted(
        &server,
        None,
        &remote.sign(&claims("pk-uri", "pk-uri", AUD)),
        "pk-uri",
    );
    granted(
        &server,
        None,
        &remote.sign(&claims("pk-uri", "pk-uri", AUD)),
        "pk-uri",
    );
    assert_eq!(
        publisher.hits("/client/jwks"),
        1,
        "a fresh cache is not refetched"
    );

    // What each private_key_jwt assertion must not be.
    let t = now();
    let with = |patch: Value| {
        let mut c = claims("pk-ed", "pk-ed", AUD);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    refused(
        &server,
        None,
        &ed.sign(&with(json!({"exp": t - 120}))),
        "has expired",
    );
    refused(
        &server,
        None,
        &ed.sign(&with(json!({"aud": "https://elsewhere"}))),
        "does not name this server",
    );
    refused(
        &server,
        None,
        &ed.sign(&with(json!({"exp": t + 3600}))),
        "lifetime is longer than allowed",
    );
    refused(
        &server,
        None,
        &stranger.sign(&claims("pk-ed", "pk-ed", AUD)),
        "signature is invalid",
    );
    refused(
        &server,
        Some("pk-rs"),
        &ed.sign(&claims("pk-ed", "pk-ed", AUD)),
        "trusts neither",
    );
    let unsigned = |alg: &str| {
        let h = B64.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        let p = B64.encode(claims("pk-ed", "pk-ed", AUD).to_string());
        format!("{h}.{p}.c2ln")
    };
    refused(&server, None, &unsigned("none"), "alg none is refused");
    refused(
        &server,
        None,
        &unsigned("HS256"),
        "HMAC algorithms are refused",
    );
    let big = with(json!({"pad": "x".repeat(9000)}));
    refused(&server, None, &ed.sign(&big), "larger than 8 KiB");

    // Mixing an assertion with a secret is refused outright.
    let res = server.token(
        &[FORM],
        &format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={}&client_secret=x&client_id=pk-ed",
            form_encode(ASSERTION_TYPE),
            ed.sign(&claims("pk-ed", "pk-ed", AUD))
        ),
    );
    assert_eq!(res.status, 400, "{}", res.text());

    // A federated issuer: discovery, then its JWKS, over TLS; client_id names the client.
    let ci = |signer: &Signer, patch: Value| {
        let mut c = claims(&issuer, SUBJECT, "latchkey");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        signer.sign(&c)
    };
    granted(&server, Some("ci"), &ci(&ci_v1, json!({})), "ci");
    refused(
        &server,
        None,
        &ci(&ci_v1, json!({})),
        "client_id is required",
    );
    refused(
        &server,
        Some("ci"),
        &ci(
            &ci_v1,
            json!({"sub": "repo:acme/orders:ref:refs/heads/dev"}),
        ),
        "sub is not the expected subject",
    );
    refused(
        &server,
        Some("ci"),
        &ci(&ci_v1, json!({"aud": AUD})),
        "does not name this server",
    );
    refused(
        &server,
        Some("ci"),
        &ci(&ci_v1, json!({"iss": "https://evil.example"})),
        "trusts neither",
    );
    refused(
        &server,
        Some("ci"),
        &ci(&ci_v1, json!({"exp": t - 120})),
        "has expired",
    );
    let replayed = ci(&ci_v1, json!({}));
    granted(&server, Some("ci"), &replayed, "ci");
    refused(&server, Some("ci"), &replayed, "jti was already used");
    let h = B64.encode(json!({"alg": "HS256", "kid": "ci-1"}).to_string());
    let p = B64.encode(claims(&issuer, SUBJECT, "latchkey").to_string());
    refused(
        &server,
        Some("ci"),
        &format!("{h}.{p}.c2ln"),
        "HMAC algorithms are refused",
    );

    // The issuer rotates: its new key (new kid) is fetched on first sight, the old one
    // (removed from the JWKS) then no longer verifies once the cache is refreshed.
    let jwks_hits = publisher.hits("/ci/jwks");
    publisher.publish("/ci/jwks", &ci_v2.jwks());
    std::thread::sleep(Duration::from_millis(1100)); // the refetch floor
    granted(&server, Some("ci"), &ci(&ci_v2, json!({})), "ci");
    assert_eq!(
        publisher.hits("/ci/jwks"),
        jwks_hits + 1,
        "one refetch for the new kid"
    );
    std::thread::sleep(Duration::from_millis(1100));
    refused(
        &server,
        Some("ci"),
        &ci(&ci_v1, json!({})),
        "no trusted key fits",
    );

    // An air-gapped issuer with inline keys: no fetch at all.
    let air = |patch: Value| {
        let mut c = claims("https://issuer.airgap.example", "job:nightly", AUD);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        airgap.sign(&c)
    };
    granted(&server, Some("airgap"), &air(json!({})), "airgap");
    refused(
        &server,
        Some("airgap"),
        &air(json!({"sub": "job:other"})),
        "sub is not the expected subject",
    );

    // Metadata and metrics.
    let meta = server
        .send(b"GET /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .json();
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt")),
        "{meta}"
    );
    assert_eq!(
        meta["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256", "ES256", "EdDSA"])
    );
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(
            r#"latchkey_token_requests_by_auth_total{auth="private_key_jwt",result="success"} "#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"latchkey_token_requests_by_auth_total{auth="federated_jwt",result="success"} "#
    ));
    assert!(!metrics.contains(
        r#"latchkey_token_requests_by_auth_total{auth="private_key_jwt",result="success"} 0"#
    ));
    // No assertion ever reaches the log.
    for line in server.logs() {
        assert!(!line.contains("eyJ"), "a JWT in the log: {line}");
    }
}

/// Issue 11: `assertionIdentityClaim` names the federated caller (`{issuer}#{subject}`) in
/// the token, and only when set: without it the claims are the contract's, byte for byte.
/// Standalone says an unreachable issuer in one warning line.
#[test]
fn the_caller_identity_claim_is_opt_in_and_unreachable_issuers_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(dir.path());
    let ci_key = Signer::new(SigningAlgorithm::EdDSA, "ci-1");
    let issuer = publisher.url("/ci");
    publisher.publish(
        "/ci/.well-known/openid-configuration",
        &json!({ "issuer": issuer, "jwks_uri": publisher.url("/ci/jwks") }),
    );
    publisher.publish("/ci/jwks", &ci_key.jwks());
    let unreachable = format!("https://127.0.0.1:{}/nobody", common::closed_port());
    let federated = json!([{ "issuer": issuer, "subject": SUBJECT, "audience": "latchkey" }]);
    let mut manifests = client_doc(
        "named",
        json!({ "clientId": "named", "federatedIdentities": federated,
                "assertionIdentityClaim": "caller", "claims": { "tier": "gold" } }),
    );
    manifests.push_str(&client_doc(
        "plain",
        json!({ "clientId": "plain", "federatedIdentities": federated }),
    ));
    manifests.push_str(&client_doc(
        "lost",
        json!({ "clientId": "lost", "federatedIdentities": [
            { "issuer": unreachable, "subject": "job:x" }
        ]}),
    ));
    let server = start_with(dir.path(), &manifests, &["--auth-failure-rate", "0"]);
    let token_for = |id: &str| {
        let res = request(
            &server,
            Some(id),
            &ci_key.sign(&claims(&issuer, SUBJECT, "latchkey")),
        );
        assert_eq!(res.status, 200, "{id}: {}", res.text());
        let token = res.json()["access_token"].as_str().unwrap().to_owned();
        let payload = token.split('.').nth(1).unwrap().to_owned();
        String::from_utf8(B64.decode(payload).unwrap()).unwrap()
    };
    let named: Value = serde_json::from_str(&token_for("named")).unwrap();
    assert_eq!(named["caller"], json!(format!("{issuer}#{SUBJECT}")));
    assert_eq!(named["sub"], json!("named"), "the contract stays exact");
    assert_eq!(named["tier"], json!("gold"));
    let raw = token_for("plain");
    let c: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        raw,
        format!(
            r#"{{"iss":"{AUD}","sub":"plain","exp":{},"nbf":{},"iat":{},"jti":"{}","clientId":"plain","scope":"default"}}"#,
            c["exp"],
            c["nbf"],
            c["iat"],
            c["jti"].as_str().unwrap()
        ),
        "without the field, the contract's claims and nothing else"
    );

    let warning = "a client's assertion source cannot be resolved";
    assert!(
        server.wait_for_log(warning, Duration::from_secs(15)),
        "the unreachable issuer is said"
    );
    let lines: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|l| l.contains(warning))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line, for the one broken issuer: {lines:?}"
    );
    assert!(
        lines[0].contains("lost") && lines[0].contains(&unreachable),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("DiscoveryFailed"), "{}", lines[0]);
}
