//! Issue 11: Kubernetes ServiceAccount tokens as client assertions, on the real test control
//! plane. Tokens are minted by the API server's TokenRequest (`kubectl create token`); the
//! expired one is signed with the test cluster's own service-account key (TokenRequest will
//! not mint one shorter than 10 minutes), so it differs from a real expired token only in
//! when it was made.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{cluster::*, *};
use latchkey_core::{KeyMaterial, SigningAlgorithm, SigningKey};
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_URL: &str = "https://latchkey.test/oauth2/token";

fn create_token(ns: &str, sa: &str, audience: &str, bound: Option<(&str, &str)>) -> String {
    let mut args = vec!["create", "token", sa, "-n", ns, "--audience", audience];
    if let Some((kind, name)) = bound {
        args.extend(["--bound-object-kind", kind, "--bound-object-name", name]);
    }
    kubectl_ok(&args, None).trim().to_owned()
}

fn request(server: &Server, client_id: &str, token: &str) -> Response {
    server.token(
        &[FORM],
        &format!(
            "grant_type=client_credentials&client_id={}&client_assertion_type={}&client_assertion={}",
            form_encode(client_id),
            form_encode(ASSERTION_TYPE),
            form_encode(token)
        ),
    )
}

fn granted(server: &Server, client_id: &str, token: &str) {
    let res = request(server, client_id, token);
    assert_eq!(res.status, 200, "{}", res.text());
    let (_, claims) = jwt_parts(res.json()["access_token"].as_str().unwrap());
    assert_eq!(
        claims["sub"],
        json!(client_id),
        "the token contract stays exact"
    );
    assert_eq!(claims["clientId"], json!(client_id));
}

fn refused(server: &Server, client_id: &str, token: &str, reason: &str) {
    let count = || server.logs().iter().filter(|l| l.contains(reason)).count();
    let before = count();
    let res = request(server, client_id, token);
    assert_eq!(res.status, 400, "{reason}: {}", res.text());
    assert_eq!(res.json()["error"], json!("invalid_client"));
    assert!(
        eventually(Duration::from_secs(5), || count() > before),
        "the log says why: {reason:?}"
    );
}

/// `token`'s claims and kid, re-signed by `key` after `edit`.
fn resign(token: &str, key: &SigningKey, edit: impl FnOnce(&mut Value)) -> String {
    let (_, claims) = jwt_parts(token);
    let mut claims = Value::Object(claims);
    edit(&mut claims);
    key.sign_compact(claims.to_string().as_bytes()).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn service_account_tokens_authenticate_the_clients_that_list_them() {
    install_crd();
    let ns = Namespace::new("sa");
    let other_ns = Namespace::new("sa-other");
    let n = ns.0.as_str();
    for (namespace, sa) in [
        (n, "gateway"),
        (n, "stranger"),
        (other_ns.0.as_str(), "gateway"),
    ] {
        kubectl_ok(&["create", "serviceaccount", sa, "-n", namespace], None);
    }
    let client_id = format!("gw-{n}");
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &json!({
                "apiVersion": "latchkey.dev/v1alpha1",
                "kind": "OAuthClient",
                "metadata": { "name": "gateway", "namespace": n },
                "spec": {
                    "clientId": client_id,
                    "serviceAccounts": [{ "namespace": n, "name": "gateway" }],
                },
            })
            .to_string(),
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let server = start_run(
        n,
        "sa-0",
        state.path(),
        &["--token-url", TOKEN_URL, "--auth-failure-rate", "0"],
    );
    wait_ready(&server);
    assert!(
        server.wait_for_log(
            "ServiceAccount tokens accepted as client assertions",
            Duration::from_secs(30)
        ),
        "the service-account issuer is discovered"
    );
    // The client registers without any Secret.
    assert!(eventually(Duration::from_secs(20), || {
        kubectl_ok(
            &[
                "get",
                "oac",
                "gateway",
                "-n",
                n,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            None,
        ) == "True"
    }));

    let oac: Value = serde_json::from_str(&kubectl_ok(
        &["get", "oac", "gateway", "-n", n, "-o", "json"],
        None,
    ))
    .unwrap();
    assert!(oac["status"]["secretName"].is_null(), "{}", oac["status"]);
    assert!(
        oac["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "SecretResolved" && c["reason"] == "NotNeeded"),
        "{}",
        oac["status"]
    );

    // A listed ServiceAccount's token, audience Latchkey's token URL: a token for the client.
    let good = create_token(n, "gateway", TOKEN_URL, None);
    granted(&server, &client_id, &good);
    granted(&server, &client_id, &good); // reused, as the kubelet does

    // Refused: wrong audience, unlisted account, same name in another namespace.
    let wrong_aud = create_token(n, "gateway", "https://elsewhere.example", None);
    refused(&server, &client_id, &wrong_aud, "does not name this server");
    let stranger = create_token(n, "stranger", TOKEN_URL, None);
    refused(&server, &client_id, &stranger, "not listed by this client");
    let elsewhere = create_token(&other_ns.0, "gateway", TOKEN_URL, None);
    refused(&server, &client_id, &elsewhere, "not listed by this client");

    // Expired: the same claims with exp in the past, signed with the cluster's own key.
    let pem = std::fs::read_to_string(root().join("target/testenv/pki/sa.key")).unwrap();
    let material = KeyMaterial::from_pem(SigningAlgorithm::RS256, &pem).unwrap();
    let (header, _) = jwt_parts(&good);
    let cluster_key = SigningKey::new(header["kid"].as_str().unwrap(), &material).unwrap();
    let fresh = resign(&good, &cluster_key, |_| {});
    granted(&server, &client_id, &fresh); // the re-signing itself is sound
    let expired = resign(&good, &cluster_key, |c| {
        c["iat"] = json!(now() - 1200);
        c["nbf"] = json!(now() - 1200);
        c["exp"] = json!(now() - 600);
    });
    refused(&server, &client_id, &expired, "has expired");

    // Another issuer: a key the cluster never had, under the cluster's kid and iss, or under
    // another iss.
    let foreign = SigningKey::new(
        header["kid"].as_str().unwrap(),
        &KeyMaterial::generate(SigningAlgorithm::RS256, 2048).unwrap(),
    )
    .unwrap();
    refused(
        &server,
        &client_id,
        &resign(&good, &foreign, |_| {}),
        "signature is invalid",
    );
    let other_iss = resign(&good, &foreign, |c| {
        c["iss"] = json!("https://other-cluster.example")
    });
    refused(&server, &client_id, &other_iss, "trusts neither");

    // Bound objects: deleting the Secret or Pod a token is bound to revokes it within 5 s.
    for (kind, create) in [
        (
            "Secret",
            vec!["create", "secret", "generic", "bound", "-n", n],
        ),
        (
            "Pod",
            vec![
                "run",
                "bound",
                "-n",
                n,
                "--image=registry.invalid/none",
                "--restart=Never",
                "--overrides",
                r#"{"spec":{"serviceAccountName":"gateway"}}"#,
            ],
        ),
    ] {
        kubectl_ok(&create, None);
        let bound = create_token(n, "gateway", TOKEN_URL, Some((kind, "bound")));
        granted(&server, &client_id, &bound);
        let deleted = Instant::now();
        kubectl_ok(
            &[
                "delete",
                &kind.to_lowercase(),
                "bound",
                "-n",
                n,
                "--grace-period=0",
                "--force",
                "--wait=true",
            ],
            None,
        );
        let gone = eventually(Duration::from_secs(5), || {
            request(&server, &client_id, &bound).status == 400
        });
        let took = deleted.elapsed();
        println!("figure: token bound to a deleted {kind} refused after {took:?}");
        assert!(
            gone,
            "a token bound to a deleted {kind} is still accepted after 5 s"
        );
        refused(&server, &client_id, &bound, "bound object no longer exists");
    }

    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(
            r#"latchkey_token_requests_by_auth_total{auth="service_account",result="success"}"#
        ),
        "{metrics}"
    );
}

/// A private_key_jwt assertion for `id` signed by `key`, each with its own jti.
fn pk_assertion(id: &str, key: &SigningKey) -> String {
    let t = now();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).unwrap();
    let claims = json!({ "iss": id, "sub": id, "aud": TOKEN_URL, "iat": t, "exp": t + 60,
                         "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>() });
    key.sign_compact(claims.to_string().as_bytes()).unwrap()
}

fn signer(alg: SigningAlgorithm, kid: &str) -> (SigningKey, String) {
    let key = SigningKey::new(kid, &KeyMaterial::generate(alg, 2048).unwrap()).unwrap();
    let jwks = json!({ "keys": [serde_json::to_value(key.jwk()).unwrap()] }).to_string();
    (key, jwks)
}

#[test]
fn private_key_jwt_keys_from_a_secret_and_a_configmap() {
    install_crd();
    let ns = Namespace::new("pkjwt");
    let n = ns.0.as_str();
    let (rs, rs_jwks) = signer(SigningAlgorithm::RS256, "rs-1");
    let (es, es_jwks) = signer(SigningAlgorithm::ES256, "es-1");
    let (ed, ed_jwks) = signer(SigningAlgorithm::EdDSA, "ed-2");
    kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "keys",
            "-n",
            n,
            &format!("--from-literal=jwks={rs_jwks}"),
        ],
        None,
    );
    kubectl_ok(
        &[
            "create",
            "configmap",
            "keys",
            "-n",
            n,
            &format!("--from-literal=jwks={es_jwks}"),
        ],
        None,
    );
    let (from_secret, from_cm) = (format!("pk-secret-{n}"), format!("pk-cm-{n}"));
    for (name, id, from) in [
        (
            "from-secret",
            &from_secret,
            json!({"secretKeyRef": {"name": "keys", "key": "jwks"}}),
        ),
        (
            "from-cm",
            &from_cm,
            json!({"configMapKeyRef": {"name": "keys", "key": "jwks"}}),
        ),
    ] {
        kubectl_ok(
            &["apply", "-f", "-"],
            Some(
                &json!({
                    "apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
                    "metadata": { "name": name, "namespace": n },
                    "spec": { "clientId": id, "jwksFrom": from },
                })
                .to_string(),
            ),
        );
    }
    let state = tempfile::tempdir().unwrap();
    let server = start_run(
        n,
        "pk-0",
        state.path(),
        &[
            "--token-url",
            TOKEN_URL,
            "--auth-failure-rate",
            "0",
            "--assertion-refetch-floor",
            "1s",
            // private_key_jwt audiences: the issuer and {--public-url}/oauth2/token.
            "--public-url",
            "https://latchkey.test",
        ],
    );
    wait_ready(&server);
    let granted_pk = |token: &str| {
        server
            .token(
                &[FORM],
                &format!(
                    "grant_type=client_credentials&client_assertion_type={}&client_assertion={}",
                    form_encode(ASSERTION_TYPE),
                    form_encode(token)
                ),
            )
            .status
            == 200
    };
    assert!(
        eventually(Duration::from_secs(20), || granted_pk(&pk_assertion(
            &from_secret,
            &rs
        ))),
        "a key in a Secret authenticates"
    );
    assert!(
        granted_pk(&pk_assertion(&from_cm, &es)),
        "a key in a ConfigMap authenticates"
    );
    let once = pk_assertion(&from_cm, &es);
    assert!(granted_pk(&once));
    refused(&server, &from_cm, &once, "jti was already used");
    refused(
        &server,
        &from_cm,
        &pk_assertion(&from_cm, &ed),
        "no trusted key fits",
    );
    // The client rotates: the ConfigMap gets its new key, which works on first sight.
    let yaml = kubectl_ok(
        &[
            "create",
            "configmap",
            "keys",
            "-n",
            n,
            &format!("--from-literal=jwks={ed_jwks}"),
            "--dry-run=client",
            "-o",
            "json",
        ],
        None,
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
    assert!(
        eventually(Duration::from_secs(10), || granted_pk(&pk_assertion(
            &from_cm, &ed
        ))),
        "the rotated key (new kid) is read again"
    );
}

/// The message of condition `type_`, if present.
fn condition_message(oac: &Value, type_: &str) -> Option<String> {
    oac["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
}

fn apply_client(ns: &str, name: &str, spec: Value) {
    let doc = json!({
        "apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": { "name": name, "namespace": ns }, "spec": spec,
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&doc.to_string()));
}

/// Issue 11: a listed ServiceAccount or federated issuer that cannot be resolved shows in the
/// client's status (ServiceAccountsResolved, IssuersResolved), naming the entry; a
/// ServiceAccount created turns it True within seconds; Ready is not affected, nothing is
/// rewritten while nothing changes; and `assertionIdentityClaim` names the ServiceAccount.
#[test]
fn unresolvable_service_accounts_and_issuers_show_in_status() {
    install_crd();
    let ns = Namespace::new("sa-cond");
    let n = ns.0.as_str();
    let dir = tempfile::tempdir().unwrap();
    let publisher = common::publisher::Publisher::start(dir.path());
    let issuer = publisher.url("/ci");
    publisher.publish(
        "/ci/.well-known/openid-configuration",
        &json!({ "issuer": issuer, "jwks_uri": publisher.url("/ci/jwks") }),
    );
    let (_, ci_jwks) = signer(SigningAlgorithm::EdDSA, "ci-1");
    publisher.publish("/ci/jwks", &serde_json::from_str(&ci_jwks).unwrap());
    let unreachable = format!("https://127.0.0.1:{}", closed_port());
    let late_id = format!("late-{n}");
    apply_client(
        n,
        "late",
        json!({ "clientId": late_id, "assertionIdentityClaim": "caller",
                "serviceAccounts": [{ "namespace": n, "name": "late" }] }),
    );
    apply_client(
        n,
        "fed-ok",
        json!({ "clientId": format!("fed-ok-{n}"),
                "federatedIdentities": [{ "issuer": issuer, "subject": "job:a" }] }),
    );
    apply_client(
        n,
        "fed-down",
        json!({ "clientId": format!("fed-down-{n}"),
                "federatedIdentities": [{ "issuer": unreachable, "subject": "job:b" }] }),
    );
    let ca = dir.path().join("publisher-ca.pem");
    let server = start_run(
        n,
        "cond-0",
        dir.path(),
        &[
            "--token-url",
            TOKEN_URL,
            "--auth-failure-rate",
            "0",
            "--assertion-ca-file",
            ca.to_str().unwrap(),
        ],
    );
    wait_ready(&server);

    let late = wait_condition(
        n,
        "late",
        "ServiceAccountsResolved",
        ("False", "ServiceAccountNotFound"),
    );
    let message = condition_message(&late, "ServiceAccountsResolved").unwrap();
    assert!(
        message.contains(&format!("ServiceAccount {n}/late")),
        "{message}"
    );
    assert_eq!(
        condition(&late, "Ready"),
        Some(("True".into(), "Registered".into())),
        "Ready is not affected"
    );
    for absent in ["IssuersResolved", "KeysResolved"] {
        assert!(condition(&late, absent).is_none(), "{}", late["status"]);
    }

    let ok = wait_condition(n, "fed-ok", "IssuersResolved", ("True", "Resolved"));
    assert!(condition(&ok, "ServiceAccountsResolved").is_none());
    let down = wait_condition(
        n,
        "fed-down",
        "IssuersResolved",
        ("False", "DiscoveryFailed"),
    );
    let message = condition_message(&down, "IssuersResolved").unwrap();
    assert!(message.contains(&unreachable), "{message}");
    assert!(message.contains("could not be reached"), "{message}");
    // A failing source is checked again at every resync (5 s); finding the same writes
    // nothing.
    let version = |v: &Value| v["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        version(&oac_json(n, "fed-down")),
        version(&down),
        "no status rewrite while nothing changes"
    );

    // The ServiceAccount appears: True within seconds.
    kubectl_ok(&["create", "serviceaccount", "late", "-n", n], None);
    let created = Instant::now();
    wait_condition(n, "late", "ServiceAccountsResolved", ("True", "Resolved"));
    println!(
        "figure: ServiceAccountsResolved True {:?} after the ServiceAccount was created",
        created.elapsed()
    );
    assert!(created.elapsed() < Duration::from_secs(15));

    // assertionIdentityClaim: the token names the ServiceAccount, the contract stays.
    let token = create_token(n, "late", TOKEN_URL, None);
    let res = request(&server, &late_id, &token);
    assert_eq!(res.status, 200, "{}", res.text());
    let (_, claims) = jwt_parts(res.json()["access_token"].as_str().unwrap());
    assert_eq!(
        claims["caller"],
        json!(format!("system:serviceaccount:{n}:late"))
    );
    assert_eq!(claims["sub"], json!(late_id));

    // The API server refuses an identity claim Latchkey sets (the CRD's CEL rule); one that
    // is also a static claim is refused when the client loads.
    let doc = json!({
        "apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": { "name": "bad", "namespace": n },
        "spec": { "clientId": "x", "assertionIdentityClaim": "client_id" },
    });
    let out = kubectl(&["apply", "-f", "-"], Some(&doc.to_string()));
    assert!(!out.status.success(), "client_id was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot name the caller"), "{err}");
    apply_client(
        n,
        "bad",
        json!({ "clientId": format!("bad-{n}"), "assertionIdentityClaim": "tier",
                "claims": { "tier": "gold" } }),
    );
    let bad = wait_condition(n, "bad", "SpecValid", ("False", "InvalidSpec"));
    let message = condition_message(&bad, "SpecValid").unwrap();
    assert!(
        message.contains("must not also be one of the static claims"),
        "{message}"
    );
}
