//! Users end to end, against a real kube-apiserver and etcd (`make e2e`): the User CRD refuses
//! what `validate_user` refuses, `latchkey run` resolves Users and their password Secrets into
//! the directory and writes their status (Ready, PasswordResolved, UsernameUnique), and
//! disabling a User with kubectl takes it out within seconds.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster::*, *};

fn user_yaml(ns: &str, name: &str, username: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: {name}, namespace: {ns} }}\n\
         spec:\n  username: {username}\n  organizations: [org1]\n  passwordRef: {{ name: {name}-password }}\n"
    )
}

fn user_json(ns: &str, name: &str) -> serde_json::Value {
    object_json("lkuser", ns, name)
}

fn wait_condition(ns: &str, name: &str, type_: &str, want: (&str, &str)) -> serde_json::Value {
    wait_condition_of("lkuser", ns, name, type_, want)
}

#[test]
fn the_user_crd_refuses_what_validate_user_refuses() {
    install_user_crd();
    let ns = Namespace::new("users-crd");
    for (spec, field) in [
        (
            "username: 'a b'\n  passwordRef: { name: pw }",
            "spec.username",
        ),
        ("username: ''\n  passwordRef: { name: pw }", "spec.username"),
        (
            "username: a\n  email: 'not-an-address'\n  passwordRef: { name: pw }",
            "spec.email",
        ),
        (
            "username: a\n  organizations: ['has space']\n  passwordRef: { name: pw }",
            "spec.organizations[0]",
        ),
        ("username: a", "spec.passwordRef"),
        (
            "username: a\n  passwordRef: { name: Bad_Name }",
            "spec.passwordRef.name",
        ),
    ] {
        let yaml = format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: u, namespace: {} }}\nspec:\n  {spec}\n",
            ns.0
        );
        let out = kubectl(&["apply", "-f", "-"], Some(&yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(stderr.contains(field), "{spec}: {stderr}");
        // The same document is refused by the rules standalone applies, at the same field.
        let user: latchkey_api::user::User = serde_norway::from_str(&yaml).unwrap_or_else(|_| {
            // A missing required field does not even deserialize.
            assert_eq!(field, "spec.passwordRef");
            latchkey_api::user::User::new("u", Default::default())
        });
        if field != "spec.passwordRef" {
            let e = latchkey_api::user_rules::validate_user(&user.spec)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{field}:")), "{e}");
        }
    }
    let ok = format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: ok, namespace: {} }}\n\
         spec:\n  username: jörg@example.com\n  displayName: Jörg\n  email: j@example.com\n  passwordRef: {{ name: pw }}\n",
        ns.0
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&ok));
    let v = user_json(&ns.0, "ok");
    assert_eq!(v["spec"]["passwordRef"]["key"], "passwordHash", "{v}");
}

#[test]
fn run_resolves_users_writes_their_status_and_drops_disabled_ones_within_seconds() {
    install_crd();
    install_user_crd();
    let ns = Namespace::new("users-run");
    let state = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "users-a", state.path(), &[]);
    wait_ready(&server);
    // The leader makes the session-cookie keys, in their own Secret.
    let mut keys = None;
    assert!(eventually(Duration::from_secs(20), || {
        keys =
            secret_data(&ns.0, "latchkey-session-keys").and_then(|d| d.get("keys.json").cloned());
        keys.is_some()
    }));
    let keys: latchkey_core::session_keys::SessionKeys =
        serde_json::from_str(&keys.unwrap()).unwrap();
    assert_eq!(keys.keys.len(), 1);

    let hash = hash_password("alice-pw");
    kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "alice-password",
            "-n",
            &ns.0,
            &format!("--from-literal=passwordHash={hash}"),
        ],
        None,
    );
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&user_yaml(&ns.0, "alice", "alice")),
    );
    let v = wait_condition(&ns.0, "alice", "Ready", ("True", "Ready"));
    assert_eq!(v["status"]["userId"], v["metadata"]["uid"], "{v}");
    assert_eq!(
        condition(&v, "PasswordResolved"),
        Some(("True".into(), "Resolved".into()))
    );
    assert!(eventually(Duration::from_secs(10), || server
        .metric("latchkey_users_loaded")
        == Some(1.0)));

    // A newer User claiming the same username is refused, and says who holds it.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&user_yaml(&ns.0, "alice2", "alice")),
    );
    let v = wait_condition(
        &ns.0,
        "alice2",
        "UsernameUnique",
        ("False", "UsernameConflict"),
    );
    let ready = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/alice", ns.0)),
        "{ready}"
    );
    assert_eq!(server.metric("latchkey_users_loaded"), Some(1.0));

    // Disabled with kubectl: out of the directory within 5 s.
    disable_user(&ns.0, "alice");
    let start = std::time::Instant::now();
    assert!(eventually(Duration::from_secs(5), || server
        .metric("latchkey_users_loaded")
        == Some(0.0)));
    println!(
        "figure: a disabled User left the directory after {:?}",
        start.elapsed()
    );
    wait_condition(&ns.0, "alice", "Ready", ("False", "Disabled"));

    // A password Secret that is not a hash is reported, never shown.
    kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "bob-password",
            "-n",
            &ns.0,
            "--from-literal=passwordHash=plain-text-password",
        ],
        None,
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&user_yaml(&ns.0, "bob", "bob")));
    let v = wait_condition(
        &ns.0,
        "bob",
        "PasswordResolved",
        ("False", "PasswordInvalid"),
    );
    assert!(!v["status"].to_string().contains("plain-text-password"));
    // Deleting the Secret: reported as missing.
    kubectl_ok(&["delete", "secret", "bob-password", "-n", &ns.0], None);
    wait_condition(
        &ns.0,
        "bob",
        "PasswordResolved",
        ("False", "SecretNotFound"),
    );
    assert!(
        server
            .logs()
            .iter()
            .all(|l| !l.contains("$argon2id") && !l.contains("plain-text-password"))
    );
    // The printer columns show the username.
    let table = kubectl_ok(&["get", "lkuser", "-n", &ns.0], None);
    assert!(
        table.contains("USERNAME") && table.contains("alice"),
        "{table}"
    );
    server.terminate();
}
