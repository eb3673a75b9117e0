//! Reloads, restarts and shutdown of the standalone process.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn client_yaml(secret: &str) -> String {
    format!(
        r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {{ name: app }}
spec: {{ clientId: app, secretRef: {{ name: app-secret }} }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: app-secret }}
stringData: {{ clientSecret: "{secret}" }}
"#
    )
}

fn status_for(server: &Server, secret: &str) -> u16 {
    server
        .token(
            &[("Authorization", &basic("app", secret)), FORM],
            "grant_type=client_credentials",
        )
        .status
}

#[test]
fn a_changed_clients_file_is_reloaded_and_a_broken_one_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let clients_dir = dir.path().join("clients");
    std::fs::create_dir(&clients_dir).unwrap();
    let file = clients_dir.join("app.yaml");
    std::fs::write(&file, client_yaml("first")).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            clients_dir.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "first"), 200);

    std::fs::write(&file, client_yaml("second")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status_for(&server, "second")
            == 200),
        "new secret never accepted"
    );
    assert_eq!(status_for(&server, "first"), 401);

    // A broken document: reported with file, document and reason; the last good state serves.
    std::fs::write(
        &file,
        client_yaml("third").replace("secretRef", "accessTokenLifetime: soon, secretRef"),
    )
    .unwrap();
    assert!(
        server.wait_for_log("clients not reloaded", Duration::from_secs(10)),
        "no reload error logged"
    );
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("app.yaml")
            && logs.contains(r#""document":1"#)
            && logs.contains("accessTokenLifetime"),
        "{logs}"
    );
    assert_eq!(status_for(&server, "second"), 200);
    assert_eq!(status_for(&server, "third"), 401);

    // A new file in the directory is picked up too.
    std::fs::write(&file, client_yaml("fourth")).unwrap();
    assert!(eventually(Duration::from_secs(10), || status_for(
        &server, "fourth"
    ) == 200));
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(r#"latchkey_reloads_total{source="clients",result="error"} 1"#),
        "{metrics}"
    );
}

#[test]
fn an_invalid_clients_file_at_start_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: { name: x }\nspec: { clientId: x }\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--clients",
        ])
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.yaml (document 1)") && stderr.contains("x-credentials"),
        "{stderr}"
    );
}

#[test]
fn a_restart_keeps_the_key_so_earlier_tokens_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let token = server.seed_token();
    let cert_before = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let status = server.terminate();
    assert!(
        status.success(),
        "SIGTERM should end the process cleanly: {status:?}"
    );

    let server = Server::start(dir.path(), &[]);
    let jwks = server
        .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .json();
    verify_with_jwks(&token, &jwks);
    assert_eq!(
        std::fs::read(dir.path().join("tls.crt")).unwrap(),
        cert_before,
        "self-signed certificate not kept"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("keyring.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn shutdown_finishes_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut conn = server.connect();
    // Send the head only: the request is in flight, waiting for its body.
    let body = "grant_type=client_credentials";
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nAuthorization: {SEED_AUTH}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        conn.write_raw(head.as_bytes());
        rx.recv().unwrap();
        conn.send(body.as_bytes())
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid_exit = std::thread::spawn(move || server.terminate());
    std::thread::sleep(Duration::from_millis(500));
    tx.send(()).unwrap();
    let res = handle.join().unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(pid_exit.join().unwrap().success());
}

#[test]
fn given_tls_files_are_served_and_reloaded_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert_a, key_a) = make("a");
    let (cert_b, key_b) = make("b");
    let (cert_path, key_path) = (dir.path().join("tls.pem"), dir.path().join("tls-key.pem"));
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let (ca_a, ca_b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    std::fs::write(&ca_a, &cert_a).unwrap();
    std::fs::write(&ca_b, &cert_b).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert!(Conn::try_open(server.addr, Some(ca_a.clone())).is_ok());
    assert!(Conn::try_open(server.addr, Some(ca_b.clone())).is_err());
    // Key first, then certificate, as a careless rotation would: the mismatched moment is refused.
    std::fs::write(&key_path, &key_b).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cert_path, &cert_b).unwrap();
    assert!(eventually(Duration::from_secs(10), || Conn::try_open(
        server.addr,
        Some(ca_b.clone())
    )
    .is_ok()));
    assert!(Conn::try_open(server.addr, Some(ca_a)).is_err());
}

fn jwks_kids(server: &Server) -> Vec<String> {
    let doc = server
        .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .json();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn keys_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("keys")
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .args([
            "--kid-strategy",
            "thumbprint",
            "--key-alg",
            "ES256",
            "--jwks-max-age",
            "1s",
            "--token-lifetime",
            "3s",
        ])
        .args(["--rotation-period", "1h", "--clock-skew", "1s"])
        .output()
        .unwrap()
}

#[test]
fn standalone_rotation_keeps_every_key_and_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--kid-strategy",
        "thumbprint",
        "--key-alg",
        "ES256",
        "--jwks-max-age",
        "1s",
        "--token-lifetime",
        "3s",
        "--rotation-period",
        "1h",
        "--clock-skew",
        "1s",
    ];
    let server = Server::start(dir.path(), &flags);
    let first = jwks_kids(&server);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].len(), 43, "thumbprint kid");
    let token = server.seed_token();

    // `keys rotate`: a next key is published at once, signs two cache periods later.
    let out = keys_cli(dir.path(), &["rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.contains("next") && listing.contains("active"),
        "{listing}"
    );
    assert!(
        eventually(Duration::from_secs(5), || jwks_kids(&server).len() == 2),
        "next key not published"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            let t = server.seed_token();
            jwt_parts(&t).0["kid"] != first[0].as_str()
        }),
        "the new key never signed"
    );
    // The old key stays published while its tokens live, so the earlier token verifies.
    let jwks = server
        .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .json();
    verify_with_jwks(&token, &jwks);
    let listing = String::from_utf8(keys_cli(dir.path(), &["list"]).stdout).unwrap();
    assert!(listing.contains("retired"), "{listing}");

    // A restart keeps every key and its state.
    let before = std::fs::read(dir.path().join("keyring.json")).unwrap();
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &flags);
    let ring_after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keyring.json")).unwrap()).unwrap();
    let ring_before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    let states = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["kid"].as_str().unwrap().to_owned(),
                    k["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (b, a) = (states(&ring_before), states(&ring_after));
    assert!(a.iter().filter(|(_, s)| s == "active").count() == 1);
    assert!(
        b.iter().all(|k| a.contains(k) || k.1 == "retired"),
        "before {b:?} after {a:?}"
    );

    // `keys revoke` of the active key: another signs at once, the old one is gone.
    let active = a.iter().find(|(_, s)| s == "active").unwrap().0.clone();
    let out = keys_cli(dir.path(), &["revoke", &active]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(eventually(Duration::from_secs(5), || !jwks_kids(&server)
        .contains(&active)));
    let t = server.seed_token();
    let kid = jwt_parts(&t).0["kid"].as_str().unwrap().to_owned();
    assert_ne!(kid, active);
    assert!(
        !keys_cli(dir.path(), &["revoke", "no-such-kid"])
            .status
            .success()
    );
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains("latchkey_signing_key_age_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_signing_key_next_rotation_timestamp_seconds"),
        "{metrics}"
    );
}

#[test]
fn the_active_keys_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let res = server.send(b"GET /oauth2/certificate HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/x-pem-file"));
    assert!(res.text().starts_with("-----BEGIN CERTIFICATE-----"));
    let jwks = server
        .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .json();
    let x5c = jwks["keys"][0]["x5c"][0].as_str().unwrap();
    assert!(
        res.text().replace('\n', "").contains(&x5c[..60]),
        "x5c is the served certificate"
    );
}
