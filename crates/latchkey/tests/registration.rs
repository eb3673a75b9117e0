//! Issue 13: dynamic client registration (RFC 7591) and its management (RFC 7592) on the real
//! standalone binary: the policies, refused metadata, a registered client getting tokens at
//! once, update with secret rotation, an edit of the stored manifest winning, deletion, and
//! registrations surviving a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: admin }
spec: { clientId: admin, secretRef: { name: s }, scopes: ["latchkey:register"] }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: plain }
spec: { clientId: plain, secretRef: { name: s } }
---
apiVersion: v1
kind: Secret
metadata: { name: s }
stringData: { clientSecret: pw }
"#;

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

fn register(server: &Server, auth: Option<&str>, metadata: Value) -> Response {
    request(server, "POST", "/oauth2/register", auth, Some(&metadata))
}

/// The path of a registration_client_uri.
fn path_of(registration: &Value) -> String {
    let uri = registration["registration_client_uri"].as_str().unwrap();
    let at = uri.find("/oauth2/register/").unwrap();
    uri[at..].to_owned()
}

fn bearer(registration: &Value) -> String {
    format!(
        "Bearer {}",
        registration["registration_access_token"].as_str().unwrap()
    )
}

fn token(server: &Server, id: &str, secret: &str, scope: Option<&str>) -> Response {
    let body = match scope {
        Some(s) => format!("grant_type=client_credentials&scope={}", form_encode(s)),
        None => "grant_type=client_credentials".to_owned(),
    };
    server.token(&[("Authorization", &basic(id, secret)), FORM], &body)
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    let clients = dir.join("clients.yaml");
    let mut args = vec![
        "--clients",
        clients.to_str().unwrap(),
        "--reload-interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    Server::start(&dir.join("state"), &args)
}

fn metadata_doc(server: &Server) -> Value {
    let res = server.send(
        b"GET /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    res.json()
}

#[test]
fn registration_is_closed_by_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients.yaml"), CLIENTS).unwrap();
    let server = start(dir.path(), &[]);
    let res = register(&server, None, json!({}));
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(res.json()["error"], "access_denied");
    assert!(
        res.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("closed")
    );
    let res = request(&server, "GET", "/dcr/register/x", Some("Bearer x"), None);
    assert_eq!(res.status, 403);
    assert!(metadata_doc(&server).get("registration_endpoint").is_none());
    assert!(!dir.path().join("state/registrations").exists());
}

#[test]
fn open_registration_lifecycle_survives_restarts_and_the_stored_manifest_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients.yaml"), CLIENTS).unwrap();
    let flags = [
        "--registration",
        "open",
        "--registration-allowed-scope",
        "orders:*",
        "--registration-rate",
        "100",
    ];
    let server = start(dir.path(), &flags);
    let meta = metadata_doc(&server);
    assert!(
        meta["registration_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/register"),
        "{meta}"
    );

    // Refused metadata, with RFC 7591 codes and a description naming the field.
    for (body, code, field) in [
        (
            json!({"grant_types": ["authorization_code"]}),
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            json!({"scope": "admin"}),
            "invalid_client_metadata",
            "scope",
        ),
        (
            json!({"token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
            "token_endpoint_auth_method",
        ),
        (
            json!({"jwks_uri": "https://example.com/jwks"}),
            "invalid_client_metadata",
            "jwks_uri",
        ),
        (
            json!({"redirect_uris": ["http://app.example.com/cb"]}),
            "invalid_redirect_uri",
            "redirect_uris[0]",
        ),
        (
            json!({"redirect_uris": ["https://app.example.com/cb#x"]}),
            "invalid_redirect_uri",
            "fragment",
        ),
        (json!([1]), "invalid_client_metadata", "JSON object"),
    ] {
        let res = register(&server, None, body.clone());
        assert_eq!(res.status, 400, "{body}: {}", res.text());
        assert_eq!(res.json()["error"], code, "{body}");
        let d = res.json()["error_description"].as_str().unwrap().to_owned();
        assert!(d.contains(field), "{body}: {d}");
    }
    let res = server.send(
        b"POST /oauth2/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\n\r\na=",
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_client_metadata");
    assert_eq!(
        std::fs::read_dir(dir.path().join("state/registrations"))
            .unwrap()
            .count(),
        0
    );

    // A registration: the answer carries everything RFC 7591 §3.2.1 asks, and the client gets
    // a token at once.
    let res = register(
        &server,
        None,
        json!({"client_name": "Orders", "scope": "orders:read", "token_endpoint_auth_method": "client_secret_post", "logo_uri": "https://x.example/l.png"}),
    );
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let reg = res.json();
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    assert!(reg["client_id_issued_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert_eq!(reg["client_name"], "Orders");
    assert_eq!(reg["scope"], "default orders:read");
    assert_eq!(reg["grant_types"], json!(["client_credentials"]));
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_post");
    assert!(reg.get("logo_uri").is_none(), "not kept, so not answered");
    let path = path_of(&reg);
    assert_eq!(path, format!("/oauth2/register/{id}"));
    let res = token(&server, &id, &secret, Some("orders:read"));
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["scope"], "orders:read");

    // Stored as a manifest with only the token's digest.
    let file = dir
        .path()
        .join(format!("state/registrations/dcr-{id}.yaml"));
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("latchkey.dev/registered"));
    let access = reg["registration_access_token"].as_str().unwrap();
    assert!(!stored.contains(access));

    // Read, with the registration access token only.
    let res = request(&server, "GET", &path, Some(&bearer(&reg)), None);
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["client_secret"], secret.as_str());
    assert_eq!(res.json()["scope"], "default orders:read");
    assert!(res.json().get("registration_access_token").is_none());
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(basic(&id, &secret).as_str()),
    ] {
        let res = request(&server, "GET", &path, auth, None);
        assert_eq!(res.status, 401, "{auth:?}");
        assert_eq!(res.json()["error"], "invalid_token");
        assert!(
            res.header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // The same token does not reach another registration.
    let other = register(&server, None, json!({})).json();
    let res = request(&server, "GET", &path_of(&other), Some(&bearer(&reg)), None);
    assert_eq!(res.status, 401);
    // APK's path serves the same registrations.
    let res = request(
        &server,
        "GET",
        &format!("/dcr/register/{id}"),
        Some(&bearer(&reg)),
        None,
    );
    assert_eq!(res.status, 200);

    // Update: repeating the secret keeps it; omitting it rotates it.
    let res = request(
        &server,
        "PUT",
        &path,
        Some(&bearer(&reg)),
        Some(
            &json!({"client_id": id, "client_secret": secret, "scope": "orders:read orders:write", "client_name": "Orders 2"}),
        ),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["client_secret"], secret.as_str());
    assert_eq!(res.json()["scope"], "default orders:read orders:write");
    assert_eq!(
        token(&server, &id, &secret, Some("orders:write")).status,
        200
    );
    let res = request(
        &server,
        "PUT",
        &path,
        Some(&bearer(&reg)),
        Some(&json!({"client_id": id, "scope": "orders:read"})),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let rotated = res.json()["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, secret);
    assert!(
        res.json().get("client_name").is_none(),
        "PUT replaces the metadata"
    );
    assert_eq!(token(&server, &id, &secret, None).status, 401);
    assert_eq!(token(&server, &id, &rotated, None).status, 200);
    assert_eq!(
        token(&server, &id, &rotated, Some("orders:write")).status,
        400
    );
    let res = request(
        &server,
        "PUT",
        &path,
        Some(&bearer(&reg)),
        Some(&json!({"client_id": id, "grant_types": ["refresh_token"]})),
    );
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"], "invalid_client_metadata");

    // A restart keeps the registration.
    server.terminate();
    let server = start(dir.path(), &flags);
    assert_eq!(
        token(&server, &id, &rotated, Some("orders:read")).status,
        200
    );
    let res = request(&server, "GET", &path, Some(&bearer(&reg)), None);
    assert_eq!(res.status, 200);

    // An admin edits the manifest: the management API and the token endpoint follow it.
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("- orders:read", "- orders:admin");
    assert!(edited.contains("orders:admin"));
    std::fs::write(&file, edited).unwrap();
    let res = request(&server, "GET", &path, Some(&bearer(&reg)), None);
    assert_eq!(res.json()["scope"], "default orders:admin");
    assert!(
        eventually(Duration::from_secs(10), || token(
            &server,
            &id,
            &rotated,
            Some("orders:admin")
        )
        .status
            == 200),
        "the edit never reached the registry"
    );

    // Delete: gone from the registry at once, and from the disk.
    let res = request(&server, "DELETE", &path, Some(&bearer(&reg)), None);
    assert_eq!(res.status, 204);
    assert_eq!(token(&server, &id, &rotated, None).status, 401);
    assert!(!file.exists());
    assert_eq!(
        request(&server, "GET", &path, Some(&bearer(&reg)), None).status,
        401
    );
    assert_eq!(
        request(&server, "DELETE", &path, Some(&bearer(&reg)), None).status,
        401
    );
    // The other registration is untouched.
    let other_secret = other["client_secret"].as_str().unwrap();
    assert_eq!(
        token(
            &server,
            other["client_id"].as_str().unwrap(),
            other_secret,
            None
        )
        .status,
        200
    );
    assert_eq!(
        request(
            &server,
            "GET",
            &path_of(&other),
            Some(&bearer(&other)),
            None
        )
        .status,
        200
    );

    // Closed again after a restart: registered clients keep working, management stops.
    server.terminate();
    let server = start(dir.path(), &[]);
    assert_eq!(
        token(
            &server,
            other["client_id"].as_str().unwrap(),
            other_secret,
            None
        )
        .status,
        200
    );
    assert_eq!(
        request(
            &server,
            "GET",
            &path_of(&other),
            Some(&bearer(&other)),
            None
        )
        .status,
        403
    );
}

#[test]
fn initial_access_tokens_need_the_registration_scope_and_sources_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clients.yaml"), CLIENTS).unwrap();
    let server = start(
        dir.path(),
        &[
            "--registration",
            "initial-token",
            "--registration-rate",
            "4",
        ],
    );
    let res = register(&server, None, json!({}));
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(res.json()["error"], "invalid_token");
    assert!(
        res.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );

    let plain = token(&server, "plain", "pw", None).json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = register(&server, Some(&format!("Bearer {plain}")), json!({}));
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(res.json()["error"], "insufficient_scope");

    let admin = token(&server, "admin", "pw", Some("latchkey:register")).json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = register(
        &server,
        Some(&format!("Bearer {admin}")),
        json!({"client_name": "by admin"}),
    );
    assert_eq!(res.status, 201, "{}", res.text());
    let reg = res.json();
    let res = token(
        &server,
        reg["client_id"].as_str().unwrap(),
        reg["client_secret"].as_str().unwrap(),
        None,
    );
    assert_eq!(res.status, 200, "{}", res.text());

    // Four requests this minute from this address: the fifth waits.
    let res = register(&server, Some(&format!("Bearer {admin}")), json!({}));
    assert_eq!(res.status, 201);
    let res = register(&server, Some(&format!("Bearer {admin}")), json!({}));
    assert_eq!(res.status, 429, "{}", res.text());
    let wait: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
}
