//! Bad input files that could lose clients or leak secrets (issue #10, items 7-10 and 13), driven
//! against the real `latchkey standalone` process.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

const ERRORS: &str = r#"latchkey_reloads_total{source="clients",result="error"}"#;
const SUCCESSES: &str = r#"latchkey_reloads_total{source="clients",result="success"}"#;
const LOADED: &str = "latchkey_clients_loaded";

/// One client `id` whose Secret value is written as given (quote it yourself for a string).
fn client_doc(id: &str, raw_secret: &str) -> String {
    format!(
        r#"---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {{ name: {id} }}
spec: {{ clientId: {id}, secretRef: {{ name: {id}-secret }} }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: {id}-secret }}
stringData: {{ clientSecret: {raw_secret} }}
"#
    )
}

fn status_for(server: &Server, id: &str, secret: &str) -> u16 {
    server
        .token(
            &[("Authorization", &basic(id, secret)), FORM],
            "grant_type=client_credentials",
        )
        .status
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// Run `latchkey ARGS` to its exit, killing it if it is still running after `limit`.
fn run_to_exit(args: &[&str], limit: Duration) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("latchkey {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// `latchkey standalone` on ephemeral loopback ports with `extra` flags, to its exit.
fn standalone_to_exit(state: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut args = vec![
        "standalone",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_to_exit(&args, Duration::from_secs(20))
}

fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Item 7: an unquoted number as a Secret value is an error that never shows the value.
#[test]
fn an_unquoted_numeric_secret_is_refused_without_showing_it() {
    const VALUE: &str = "918273645546372819";
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("numeric.yaml");
    std::fs::write(&bad, client_doc("app", VALUE)).unwrap();

    // At start: a one-line error naming file, document and key, without the value.
    let (status, stderr) = standalone_to_exit(
        &dir.path().join("state-a"),
        &["--clients", bad.to_str().unwrap()],
    );
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("numeric.yaml (document 2)") && stderr.contains("clientSecret"),
        "{stderr}"
    );
    assert!(!stderr.contains(VALUE), "the secret leaked: {stderr}");

    // On a reload: the error lines never show it, and the last good clients keep serving.
    let file = dir.path().join("clients.yaml");
    std::fs::write(&file, client_doc("app", "\"good-secret\"")).unwrap();
    let server = Server::start(
        &dir.path().join("state-b"),
        &[
            "--clients",
            file.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "app", "good-secret"), 200);
    let loaded = server.metric(LOADED);
    assert_eq!(loaded, Some(1.0));
    std::fs::write(&file, client_doc("app", VALUE)).unwrap();
    assert!(
        server.wait_for_log("clients not reloaded", Duration::from_secs(10)),
        "no reload error: {:?}",
        server.logs()
    );
    let logs = server.logs();
    let errors: Vec<&String> = logs.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|l| l.contains("clients.yaml")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains(r#""document":2"#)
            && l.contains("stringData.clientSecret must be a string")),
        "{errors:?}"
    );
    assert!(
        logs.iter().all(|l| !l.contains(VALUE)),
        "the secret leaked into the log: {logs:?}"
    );
    assert_eq!(status_for(&server, "app", "good-secret"), 200);
    assert_eq!(status_for(&server, "app", VALUE), 401);
    assert_eq!(server.metric(LOADED), loaded);
    assert_eq!(server.metric(ERRORS), Some(1.0));
}

/// Item 8: in directory mode, entries that are not regular files fail the reload by name, the
/// last good clients keep serving, and removing the entry lets the next change load.
#[test]
fn unreadable_directory_entries_fail_the_reload_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    std::fs::create_dir(&clients).unwrap();
    let good = clients.join("app.yaml");
    std::fs::write(&good, client_doc("app", "\"s0\"")).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            clients.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "app", "s0"), 200);
    let loaded = server.metric(LOADED);
    assert_eq!(loaded, Some(1.0));

    type Make = fn(&Path) -> Vec<std::path::PathBuf>;
    let cases: [(&str, &str, Make); 4] = [
        ("dangling symlink", "dangling.yaml", |d| {
            let p = d.join("dangling.yaml");
            std::os::unix::fs::symlink(d.join("nowhere.yaml.gone"), &p).unwrap();
            vec![p]
        }),
        ("symlink loop", "loop-a.yaml", |d| {
            let (a, b) = (d.join("loop-a.yaml"), d.join("loop-b.yaml"));
            std::os::unix::fs::symlink(&b, &a).unwrap();
            std::os::unix::fs::symlink(&a, &b).unwrap();
            vec![a, b]
        }),
        ("symlink to /dev/zero", "zero.yaml", |d| {
            let p = d.join("zero.yaml");
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            vec![p]
        }),
        ("FIFO", "fifo.yaml", |d| {
            let p = d.join("fifo.yaml");
            mkfifo(&p);
            vec![p]
        }),
    ];
    for (round, (what, name, make)) in cases.into_iter().enumerate() {
        let errors_before = server.metric(ERRORS).unwrap_or(0.0);
        let made = make(&clients);
        let named = |l: &String| l.contains("clients not reloaded") && l.contains(name);
        assert!(
            eventually(Duration::from_secs(10), || server.logs().iter().any(named)),
            "{what}: no reload error naming {name}: {:?}",
            server.logs()
        );
        assert!(
            server.metric(ERRORS).unwrap_or(0.0) > errors_before,
            "{what}: failure not counted"
        );
        assert_eq!(server.metric(LOADED), loaded, "{what}");
        let old = format!("s{round}");
        assert_eq!(status_for(&server, "app", &old), 200, "{what}");

        for p in made {
            std::fs::remove_file(p).unwrap();
        }
        let new = format!("s{}", round + 1);
        std::fs::write(&good, client_doc("app", &format!("\"{new}\""))).unwrap();
        assert!(
            eventually(Duration::from_secs(10), || status_for(&server, "app", &new)
                == 200),
            "{what}: no reload after removing it"
        );
        assert_eq!(status_for(&server, "app", &old), 401, "{what}");
        assert_eq!(server.metric(LOADED), loaded, "{what}");
    }
    assert_eq!(server.metric(SUCCESSES), Some(4.0));
}

/// Item 9, first half: a FIFO as the TLS key is refused at once, not waited on.
#[test]
fn a_fifo_as_the_tls_key_is_a_prompt_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed();
    let cert_path = dir.path().join("tls.pem");
    std::fs::write(&cert_path, cert).unwrap();
    let key_path = dir.path().join("key-fifo.pem");
    mkfifo(&key_path);
    // run_to_exit panics if the process is still waiting on the FIFO after the limit.
    let started = Instant::now();
    let (status, stderr) = standalone_to_exit(
        &dir.path().join("state"),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    println!("exit after {:?}", started.elapsed());
    assert!(!status.success());
    assert!(
        stderr.contains("key-fifo.pem") && stderr.contains("not a regular file"),
        "{stderr}"
    );
}

/// Item 9, second half: a single clients file replaced by a FIFO neither wedges the reloads nor
/// the shutdown.
#[test]
fn a_clients_file_replaced_by_a_fifo_keeps_serving_and_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients.yaml");
    std::fs::write(&file, client_doc("app", "\"kept\"")).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            file.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "app", "kept"), 200);
    std::fs::remove_file(&file).unwrap();
    mkfifo(&file);
    assert!(
        eventually(Duration::from_secs(10), || server
            .logs()
            .iter()
            .any(|l| l.contains("clients not reloaded")
                && l.contains("clients.yaml")
                && l.contains("not a regular file"))),
        "{:?}",
        server.logs()
    );
    assert_eq!(status_for(&server, "app", "kept"), 200);
    assert_eq!(server.metric(LOADED), Some(1.0));
    // terminate() fails the test if the process has not stopped within its drain limit.
    let started = Instant::now();
    let status = server.terminate();
    println!("stopped after {:?}", started.elapsed());
    assert!(status.success(), "{status:?}");
}

/// Item 10 (a): a rewrite that keeps the length and the modification time (`cp -p`) is seen.
#[test]
fn a_same_length_rewrite_with_the_old_mtime_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients.yaml");
    std::fs::write(&file, client_doc("app", "\"secret-aaaa\"")).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            file.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    assert_eq!(status_for(&server, "app", "secret-aaaa"), 200);
    let before = std::fs::metadata(&file).unwrap().len();
    std::fs::write(&file, client_doc("app", "\"secret-bbbb\"")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.len(), meta.modified().unwrap()), (before, mtime));
    assert!(
        eventually(Duration::from_secs(10), || status_for(
            &server,
            "app",
            "secret-bbbb"
        ) == 200),
        "the rewrite was never loaded"
    );
    assert_eq!(status_for(&server, "app", "secret-aaaa"), 401);
}

/// Item 10 (b): a file caught mid-write (its first half is itself valid, with one client of the
/// two) is never loaded. The half-written moment is kept shorter than the settle time (half the
/// 400ms reload interval), and repeated at phases spread over the interval so that, without the
/// settle check, some reload tick lands on it and loads one client.
#[test]
fn a_file_caught_mid_write_is_not_loaded_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clients.yaml");
    let whole = |n: usize| {
        format!(
            "{}{}",
            client_doc("one", &format!("\"one-{n}\"")),
            client_doc("two", &format!("\"two-{n}\""))
        )
    };
    std::fs::write(&file, whole(0)).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            file.to_str().unwrap(),
            "--reload-interval",
            "400ms",
        ],
    );
    assert_eq!(server.metric(LOADED), Some(2.0));
    for n in 1..=16 {
        // Each round starts at a different phase of the reload ticks, so the rounds' half-written
        // moments between them cover the whole interval.
        std::thread::sleep(Duration::from_millis(25 * n as u64));
        let first_half = client_doc("one", &format!("\"one-{n}\""));
        std::fs::write(&file, &first_half).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&file, whole(n)).unwrap();
        assert!(
            eventually(Duration::from_secs(10), || status_for(
                &server,
                "two",
                &format!("two-{n}")
            ) == 200),
            "round {n}: the whole file was never loaded"
        );
        assert_eq!(server.metric(LOADED), Some(2.0), "round {n}");
    }
    let logs = server.logs();
    let reloads: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("clients reloaded"))
        .collect();
    assert!(!reloads.is_empty());
    for line in reloads {
        assert!(line.contains(r#""clients":2"#), "a partial load: {line}");
    }
}

/// Item 10 (c): a certificate file of non-UTF-8 bytes and one of UTF-8 garbage fail alike: a
/// one-line start-up error naming the file. (A broken PEM section is named the same way.)
#[test]
fn a_garbage_certificate_fails_the_same_way_utf8_or_not() {
    let (_, key) = self_signed();
    let mut messages = Vec::new();
    for garbage in [
        vec![0xff, 0xfe, 0x80, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0x0a],
        "this is not a certificate, ünïcödé ✓\n".as_bytes().to_vec(),
        b"-----BEGIN NOTHING\n".to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        std::fs::write(&cert_path, garbage).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let (status, stderr) = standalone_to_exit(
            &dir.path().join("state"),
            &[
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ],
        );
        assert!(!status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(cert_path.to_str().unwrap()), "{stderr}");
        messages.push(stderr.replace(dir.path().to_str().unwrap(), "DIR"));
    }
    println!("{messages:?}");
    assert_eq!(messages[0], messages[1]);
}

/// Item 13: a deleted key ring is replaced with a warning that earlier tokens stop verifying (a
/// first start warns of nothing); an empty one is a start-up error that leaves the file alone.
#[test]
fn a_lost_key_ring_warns_and_an_empty_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keyring.json");
    let server = Server::start(dir.path(), &[]);
    server.seed_token();
    let first = server.logs();
    assert!(
        !first.iter().any(|l| l.contains("no key ring")),
        "a first start is not a lost ring: {first:?}"
    );
    assert!(server.terminate().success());
    assert!(ring.exists());

    std::fs::remove_file(&ring).unwrap();
    let server = Server::start(dir.path(), &[]);
    let logs = server.logs();
    let warning = logs
        .iter()
        .find(|l| l.contains("WARN") && l.contains("no key ring"))
        .unwrap_or_else(|| panic!("no warning: {logs:?}"));
    assert!(
        warning.contains("a new signing key is made")
            && warning.contains("tokens signed before no longer verify")
            && warning.contains("keyring.json"),
        "{warning}"
    );
    server.seed_token();
    assert!(server.terminate().success());

    std::fs::write(&ring, b"").unwrap();
    let (status, stderr) = standalone_to_exit(dir.path(), &[]);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(ring.to_str().unwrap()), "{stderr}");
    assert_eq!(
        std::fs::read(&ring).unwrap(),
        b"",
        "the empty ring was replaced"
    );
}
