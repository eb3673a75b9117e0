//! Issue 13 on the real control plane: `latchkey clients rotate-secret` under continuous load
//! against two replicas, with no failed token request; status shows the grace period, and the
//! old secret is refused everywhere once it ends.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{cluster::*, *};

fn token_status(server: &Server, id: &str, secret: &str) -> u16 {
    server
        .token(
            &[("Authorization", &basic(id, secret)), FORM],
            "grant_type=client_credentials",
        )
        .status
}

fn oac(ns: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&kubectl_ok(
        &["get", "oac", name, "-n", ns, "-o", "json"],
        None,
    ))
    .unwrap()
}

fn previous_condition(v: &serde_json::Value) -> Option<(String, String)> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PreviousSecretAccepted")
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
}

#[test]
fn the_crd_refuses_a_previous_secret_under_the_current_key() {
    install_crd();
    let ns = Namespace::new("rot-crd");
    let out = kubectl(
        &["apply", "-n", &ns.0, "-f", "-"],
        Some(
            r#"{"apiVersion":"latchkey.dev/v1alpha1","kind":"OAuthClient","metadata":{"name":"x"},
                "spec":{"previousSecret":{"key":"clientSecret","expiresAt":"2030-01-01T00:00:00Z"}}}"#,
        ),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("previousSecret.key must differ from the current secret's key"),
        "{err}"
    );
    let out = kubectl(
        &["apply", "-n", &ns.0, "-f", "-"],
        Some(
            r#"{"apiVersion":"latchkey.dev/v1alpha1","kind":"OAuthClient","metadata":{"name":"x"},
                "spec":{"previousSecret":{"expiresAt":"next week"}}}"#,
        ),
    );
    assert!(!out.status.success(), "a bad expiresAt is refused");
}

#[test]
fn rotate_secret_under_load_on_two_replicas_fails_no_request() {
    install_crd();
    let ns = Namespace::new("rot");
    let dir = tempfile::tempdir().unwrap();
    kubectl_ok(
        &["apply", "-n", &ns.0, "-f", "-"],
        Some(
            r#"{"apiVersion":"latchkey.dev/v1alpha1","kind":"OAuthClient","metadata":{"name":"gw"},
                "spec":{"clientId":"gw-id"}}"#,
        ),
    );
    let a = start_run(&ns.0, "a", &dir.path().join("a"), &[]);
    let b = start_run(&ns.0, "b", &dir.path().join("b"), &[]);
    wait_ready(&a);
    wait_ready(&b);
    let old = {
        let mut found = None;
        assert!(eventually(Duration::from_secs(30), || {
            found =
                secret_data(&ns.0, "gw-credentials").and_then(|d| d.get("clientSecret").cloned());
            found.is_some()
        }));
        found.unwrap()
    };
    for s in [&a, &b] {
        assert!(eventually(Duration::from_secs(20), || token_status(
            s, "gw-id", &old
        ) == 200));
    }

    let secret = Mutex::new(old.clone());
    let stop = AtomicBool::new(false);
    let (ok, failed, old_after) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let rotated = AtomicBool::new(false);
    let grace = Duration::from_secs(15);
    let kubeconfig = kubeconfig();
    let done = std::thread::scope(|s| {
        for server in [&a, &b, &a, &b] {
            let (secret, stop, ok, failed, old_after, rotated, old) =
                (&secret, &stop, &ok, &failed, &old_after, &rotated, &old);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let using = secret.lock().unwrap().clone();
                    let was_rotated = rotated.load(Ordering::Relaxed);
                    match token_status(server, "gw-id", &using) {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if was_rotated && using == *old {
                                old_after.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            eprintln!("token request answered {other}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .env("KUBECONFIG", &kubeconfig)
            .args(["clients", "rotate-secret", "gw", "--namespace", &ns.0])
            .args(["--grace", "15s", "--settle", "2s"])
            .output()
            .unwrap();
        let done = Instant::now();
        assert!(
            out.status.success(),
            "rotate-secret failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        rotated.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(2));
        let data = secret_data(&ns.0, "gw-credentials").unwrap();
        let new = data["clientSecret"].clone();
        assert_ne!(new, old);
        assert_eq!(data["previousClientSecret"], old);
        assert_eq!(data["clientId"], "gw-id", "the rest of the Secret is kept");
        *secret.lock().unwrap() = new;
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        done
    });
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "rotation under load on two replicas: {ok} token requests succeeded ({} with the old \
         secret after the rotation), {failed} failed",
        old_after.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0);
    assert!(old_after.load(Ordering::Relaxed) > 0);
    let new = secret_data(&ns.0, "gw-credentials").unwrap()["clientSecret"].clone();

    // Status: both secrets and when the old one stops.
    let mut v = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            v = oac(&ns.0, "gw");
            previous_condition(&v) == Some(("True".into(), "InGracePeriod".into()))
        }),
        "status: {}",
        v["status"]
    );
    assert!(
        v["status"]["previousSecretExpiresAt"].is_string(),
        "{}",
        v["status"]
    );
    assert_eq!(v["spec"]["previousSecret"]["key"], "previousClientSecret");

    // Once the grace ends: the old secret is refused on both replicas, status says Expired.
    std::thread::sleep(
        (done + grace + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    for s in [&a, &b] {
        assert_eq!(token_status(s, "gw-id", &old), 401);
        assert_eq!(token_status(s, "gw-id", &new), 200);
    }
    assert!(
        eventually(Duration::from_secs(20), || {
            v = oac(&ns.0, "gw");
            previous_condition(&v) == Some(("False".into(), "Expired".into()))
        }),
        "status: {}",
        v["status"]
    );
    let ready = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True");
}
