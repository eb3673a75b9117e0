//! Issue 13 on the real control plane: a registration is an `OAuthClient` (labelled
//! `latchkey.dev/registered`) that `kubectl get oac` shows Ready, its credentials get a token
//! from either replica, update and delete through the management API reflect in the resource,
//! and a `kubectl` edit reflects in the management API; the initial-token policy holds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster::*, *};
use serde_json::{Value, json};

fn request(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    server.send(req.as_bytes())
}

fn token(server: &Server, id: &str, secret: &str, scope: Option<&str>) -> Response {
    let body = match scope {
        Some(s) => format!("grant_type=client_credentials&scope={}", form_encode(s)),
        None => "grant_type=client_credentials".to_owned(),
    };
    server.token(&[("Authorization", &basic(id, secret)), FORM], &body)
}

fn path_of(registration: &Value) -> String {
    let uri = registration["registration_client_uri"].as_str().unwrap();
    uri[uri.find("/oauth2/register/").unwrap()..].to_owned()
}

fn jsonpath(ns: &str, name: &str, path: &str) -> String {
    kubectl_ok(
        &[
            "get",
            "oac",
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={path}"),
        ],
        None,
    )
}

#[test]
fn a_registration_is_an_oauthclient_on_every_replica_and_the_resource_wins() {
    install_crd();
    let ns = Namespace::new("dcr");
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--registration",
        "initial-token",
        "--registration-allowed-scope",
        "orders:*",
        "--registration-rate",
        "100",
    ];
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
metadata: { name: admin }
spec: { clientId: admin, secretRef: { name: s }, scopes: ["latchkey:register"] }
"#,
        ),
    );
    let a = start_run(&ns.0, "a", &dir.path().join("a"), &flags);
    let b = start_run(&ns.0, "b", &dir.path().join("b"), &flags);
    wait_ready(&a);
    wait_ready(&b);
    let mut admin = String::new();
    assert!(eventually(Duration::from_secs(20), || {
        let res = token(&a, "admin", "pw", Some("latchkey:register"));
        if res.status == 200 {
            admin = format!("Bearer {}", res.json()["access_token"].as_str().unwrap());
        }
        res.status == 200
    }));

    // The policy: no token, 401; with the admin's token, 201.
    let res = request(&a, "POST", "/oauth2/register", None, Some(&json!({})));
    assert_eq!(res.status, 401, "{}", res.text());
    let res = request(
        &a,
        "POST",
        "/oauth2/register",
        Some(&admin),
        Some(&json!({"redirect_uris": ["http://evil.example/cb"]})),
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_redirect_uri");
    let res = request(
        &a,
        "POST",
        "/dcr/register",
        Some(&admin),
        Some(&json!({"client_name": "Orders", "scope": "orders:read"})),
    );
    assert_eq!(res.status, 201, "{}", res.text());
    let reg = res.json();
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    let bearer = format!(
        "Bearer {}",
        reg["registration_access_token"].as_str().unwrap()
    );
    let path = path_of(&reg);
    let name = format!("dcr-{id}");

    // Served by the replica that answered at once, by the other within seconds; the
    // resource is labelled, annotated with the token's digest only, and becomes Ready.
    assert_eq!(token(&a, &id, &secret, Some("orders:read")).status, 200);
    assert!(eventually(Duration::from_secs(10), || token(
        &b,
        &id,
        &secret,
        Some("orders:read")
    )
    .status
        == 200));
    let listed = kubectl_ok(
        &["get", "oac", "-n", &ns.0, "-l", "latchkey.dev/registered"],
        None,
    );
    assert!(listed.contains(&name), "{listed}");
    assert!(
        eventually(Duration::from_secs(20), || jsonpath(
            &ns.0,
            &name,
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ) == "True"),
        "the registered OAuthClient never became Ready"
    );
    assert_eq!(jsonpath(&ns.0, &name, "{.spec.clientId}"), id);
    let digest = jsonpath(
        &ns.0,
        &name,
        "{.metadata.annotations.latchkey\\.dev/registration-token-sha256}",
    );
    assert_eq!(digest.len(), 64);
    assert!(!bearer.contains(&digest));

    // Update through b (rotating the secret): the resource and the Secret follow.
    let res = request(
        &b,
        "PUT",
        &path,
        Some(&bearer),
        Some(&json!({"client_id": id, "scope": "orders:read orders:write"})),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let rotated = res.json()["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, secret);
    assert_eq!(
        jsonpath(&ns.0, &name, "{.spec.scopes}"),
        r#"["orders:read","orders:write"]"#
    );
    assert_eq!(token(&b, &id, &rotated, Some("orders:write")).status, 200);
    assert!(eventually(Duration::from_secs(10), || token(
        &a,
        &id,
        &rotated,
        Some("orders:write")
    )
    .status
        == 200));
    assert_eq!(token(&a, &id, &secret, None).status, 401);

    // kubectl edits win: the management API shows them and tokens follow.
    kubectl_ok(
        &[
            "patch",
            "oac",
            &name,
            "-n",
            &ns.0,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"scopes":["orders:admin"]},"metadata":{"annotations":{"latchkey.dev/client-name":"Edited"}}}"#,
        ],
        None,
    );
    let res = request(&a, "GET", &path, Some(&bearer), None);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["scope"], "default orders:admin");
    assert_eq!(res.json()["client_name"], "Edited");
    assert_eq!(res.json()["client_secret"], rotated.as_str());
    assert!(eventually(Duration::from_secs(10), || token(
        &a,
        &id,
        &rotated,
        Some("orders:admin")
    )
    .status
        == 200));
    assert_eq!(
        request(&a, "GET", &path, Some("Bearer wrong"), None).status,
        401
    );

    // Delete through a: the resource is gone and neither replica serves the client.
    let res = request(&a, "DELETE", &path, Some(&bearer), None);
    assert_eq!(res.status, 204, "{}", res.text());
    assert_eq!(token(&a, &id, &rotated, None).status, 401);
    let gone = kubectl(&["get", "oac", &name, "-n", &ns.0], None);
    assert!(!gone.status.success());
    assert!(eventually(Duration::from_secs(10), || token(
        &b, &id, &rotated, None
    )
    .status
        == 401));
    assert_eq!(request(&b, "GET", &path, Some(&bearer), None).status, 401);
}

#[test]
fn closed_by_default_and_open_when_asked() {
    install_crd();
    let ns = Namespace::new("dcr-open");
    let dir = tempfile::tempdir().unwrap();
    let closed = start_run(&ns.0, "closed", &dir.path().join("c"), &[]);
    wait_ready(&closed);
    let res = request(&closed, "POST", "/oauth2/register", None, Some(&json!({})));
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(res.json()["error"], "access_denied");
    closed.terminate();

    let open = start_run(
        &ns.0,
        "open",
        &dir.path().join("o"),
        &["--registration", "open"],
    );
    wait_ready(&open);
    let res = request(&open, "POST", "/oauth2/register", None, Some(&json!({})));
    assert_eq!(res.status, 201, "{}", res.text());
    let reg = res.json();
    let (id, secret) = (
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
    );
    let res = token(&open, id, secret, None);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["scope"], "default");
    assert!(
        eventually(Duration::from_secs(20), || jsonpath(
            &ns.0,
            &format!("dcr-{id}"),
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ) == "True"),
        "the registered OAuthClient never became Ready"
    );
    // A registration outside the cap is refused with a description naming it.
    let res = request(
        &open,
        "POST",
        "/oauth2/register",
        None,
        Some(&json!({"scope": "orders:read"})),
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_client_metadata");
    assert!(
        res.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("orders:read")
    );
}
