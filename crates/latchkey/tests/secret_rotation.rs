//! Issue 13: a client secret rotates under continuous load with no failed token request, and
//! the old secret is refused once its grace period ends (standalone, the real binary and the
//! real `latchkey clients rotate-secret`).
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::Path,
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: gw }
spec: { clientId: gw-id }
---
apiVersion: v1
kind: Secret
metadata: { name: gw-credentials }
stringData: { clientId: gw-id, clientSecret: first-secret }
"#;

fn status_for(server: &Server, secret: &str) -> u16 {
    server
        .token(
            &[("Authorization", &basic("gw-id", secret)), FORM],
            "grant_type=client_credentials",
        )
        .status
}

/// The secret a caller would read from the manifests now.
fn current_secret(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap();
        if v["kind"] == "Secret" {
            return v["stringData"]["clientSecret"].as_str().unwrap().to_owned();
        }
    }
    panic!("no Secret in {}", file.display())
}

#[test]
fn a_secret_rotates_under_load_with_no_failed_request_and_the_old_one_stops_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    std::fs::create_dir(&clients).unwrap();
    let file = clients.join("gw.yaml");
    std::fs::write(&file, CLIENTS).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            clients.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "first-secret"), 200);

    let secret = Mutex::new("first-secret".to_owned());
    let stop = AtomicBool::new(false);
    let (ok, failed, ok_old_after_rotation) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let rotated = AtomicBool::new(false);
    let grace = Duration::from_secs(8);
    let rotation_done = std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let using = secret.lock().unwrap().clone();
                    let was_rotated = rotated.load(Ordering::Relaxed);
                    match status_for(&server, &using) {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if was_rotated && using == "first-secret" {
                                ok_old_after_rotation.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            eprintln!("token request with the {using:?} secret answered {other}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["clients", "rotate-secret", "gw", "--grace", "8s"])
            .args(["--settle", "1s", "--clients"])
            .arg(&clients)
            .output()
            .unwrap();
        let done = Instant::now();
        assert!(
            out.status.success(),
            "rotate-secret failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(said.contains("accepted until"), "{said}");
        rotated.store(true, Ordering::Relaxed);
        // The callers keep the old secret a while after the rotation, then switch midway.
        std::thread::sleep(Duration::from_secs(2));
        let new = current_secret(&file);
        assert_ne!(new, "first-secret");
        assert!(!said.contains(&new), "the new secret is never printed");
        *secret.lock().unwrap() = new;
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        done
    });
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "rotation under load: {ok} token requests succeeded ({} with the old secret after the \
         rotation), {failed} failed",
        ok_old_after_rotation.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0, "no token request may fail during a rotation");
    assert!(ok_old_after_rotation.load(Ordering::Relaxed) > 0);

    let new = current_secret(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("previousSecret") && text.contains("expiresAt"),
        "{text}"
    );
    // The old secret still works within the grace period, and stops once it ends.
    if rotation_done.elapsed() < grace - Duration::from_secs(1) {
        assert_eq!(status_for(&server, "first-secret"), 200);
    }
    let ends = rotation_done + grace + Duration::from_secs(1);
    std::thread::sleep(ends.saturating_duration_since(Instant::now()));
    assert_eq!(
        status_for(&server, "first-secret"),
        401,
        "the old secret is refused once its grace period ends"
    );
    assert_eq!(status_for(&server, &new), 200);
    // A restart reads the same manifests: the rotated state survives it.
    server.terminate();
    let server = Server::start(
        &dir.path().join("state"),
        &["--clients", clients.to_str().unwrap()],
    );
    assert_eq!(status_for(&server, &new), 200);
    assert_eq!(status_for(&server, "first-secret"), 401);
}

#[test]
fn rotate_secret_names_what_it_cannot_find() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, CLIENTS).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["clients", "rotate-secret", "nope", "--clients"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no OAuthClient default/nope"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        CLIENTS,
        "nothing written"
    );
}

#[test]
fn a_secret_changed_by_someone_else_during_the_rotation_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, CLIENTS).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "clients",
            "rotate-secret",
            "gw",
            "--settle",
            "3s",
            "--clients",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the grace period is written, another writer replaces the secret.
    assert!(
        common::eventually(Duration::from_secs(10), || std::fs::read_to_string(&file)
            .unwrap()
            .contains("previousSecret")),
        "the first steps never happened"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let theirs = text.replace("clientSecret: first-secret", "clientSecret: theirs");
    assert_ne!(text, theirs, "{text}");
    std::fs::write(&file, &theirs).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed during the rotation"), "{err}");
    assert_eq!(current_secret(&file), "theirs", "their secret is kept");
}
