//! Users standalone, through the real binary: `latchkey hash-password`, APK's sample users
//! without `--users`, User manifests loaded and reloaded from files, a broken file keeping the
//! last good users, and a bad file refused at start with its file and document named.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Server, eventually};

fn hash_password(password: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password).unwrap();
    child.wait_with_output().unwrap()
}

fn user_doc(name: &str, username: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: {name}, namespace: people }}\n\
         spec:\n  username: {username}\n  organizations: [org1]\n  passwordRef: {{ name: {name}-password }}\n"
    )
}

fn secret_doc(name: &str, hash: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}-password, namespace: people }}\n\
         stringData:\n  passwordHash: '{hash}'\n"
    )
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn hash_password_prints_an_owasp_argon2id_hash_and_refuses_no_password() {
    let out = hash_password(b"correct horse battery staple\n");
    assert!(out.status.success(), "{out:?}");
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let parsed = latchkey_core::password::PasswordHash::parse(&phc).unwrap();
    assert!(parsed.verify(b"correct horse battery staple"));
    assert!(!parsed.verify(b"correct horse battery staple\n"));
    let empty = hash_password(b"");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no password on stdin"));
}

#[test]
fn without_users_the_apk_samples_are_served_with_a_warning() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path(), &[]);
    assert_eq!(server.metric("latchkey_users_loaded"), Some(2.0));
    assert!(server.wait_for_log(
        "serving APK's sample non-production users",
        Duration::from_secs(5)
    ));
    server.terminate();
}

#[test]
fn user_files_load_reload_and_a_broken_change_keeps_the_last_good_users() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.yaml");
    let alice = String::from_utf8(hash_password(b"alice-pw").stdout).unwrap();
    write_atomically(
        &file,
        &format!(
            "{}---\n{}",
            user_doc("alice", "alice"),
            secret_doc("alice", alice.trim())
        ),
    );
    let users = file.to_str().unwrap();
    let server = Server::start(
        state.path(),
        &["--users", users, "--reload-interval", "200ms"],
    );
    assert_eq!(server.metric("latchkey_users_loaded"), Some(1.0));

    // A second user appears.
    let bob = String::from_utf8(hash_password(b"bob-pw").stdout).unwrap();
    write_atomically(
        &file,
        &format!(
            "{}---\n{}---\n{}---\n{}",
            user_doc("alice", "alice"),
            secret_doc("alice", alice.trim()),
            user_doc("bob", "bob"),
            secret_doc("bob", bob.trim())
        ),
    );
    assert!(eventually(Duration::from_secs(10), || server
        .metric("latchkey_users_loaded")
        == Some(2.0)));

    // A username claimed twice: refused whole, the two users keep serving.
    write_atomically(
        &file,
        &format!(
            "{}---\n{}---\n{}---\n{}",
            user_doc("alice", "alice"),
            secret_doc("alice", alice.trim()),
            user_doc("bob", "alice"),
            secret_doc("bob", bob.trim())
        ),
    );
    assert!(server.wait_for_log("users not reloaded", Duration::from_secs(10)));
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("username \\\"alice\\\" is already used by")),
        "{:?}",
        server.logs()
    );
    assert_eq!(server.metric("latchkey_users_loaded"), Some(2.0));
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains(r#"latchkey_reloads_total{source="users",result="error"} 1"#),
        "{metrics}"
    );

    // Disabling bob takes him out.
    write_atomically(
        &file,
        &format!(
            "{}---\n{}---\n{}  disabled: true\n---\n{}",
            user_doc("alice", "alice"),
            secret_doc("alice", alice.trim()),
            user_doc("bob", "bob"),
            secret_doc("bob", bob.trim())
        ),
    );
    assert!(eventually(Duration::from_secs(10), || server
        .metric("latchkey_users_loaded")
        == Some(1.0)));
    // No hash ever reaches the logs.
    assert!(server.logs().iter().all(|l| !l.contains("$argon2id")));
    server.terminate();
}

#[test]
fn a_bad_users_file_is_refused_at_start_naming_file_and_document() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.yaml");
    std::fs::write(
        &file,
        format!(
            "{}---\n{}",
            user_doc("carol", "carol"),
            secret_doc("carol", "a-plain-password")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .arg("--users")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("users.yaml (document 1): User people/carol: Secret people/carol-password key \"passwordHash\": not an Argon2id PHC string"), "{stderr}");
    assert!(!stderr.contains("a-plain-password"), "{stderr}");
}
