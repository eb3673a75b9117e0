//! End-to-end harness: the test control plane of `tests/testenv` (a real kube-apiserver and
//! etcd), `latchkey run` processes against it, and kubectl.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
    time::Duration,
};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::Server;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The admin kubeconfig of the running test control plane.
pub fn kubeconfig() -> PathBuf {
    let path = std::env::var_os("LATCHKEY_E2E_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/testenv/kubeconfig"));
    assert!(
        path.exists(),
        "no test control plane: {} is missing (run `make testenv-up`, or `make e2e`)",
        path.display()
    );
    path
}

/// Run kubectl against the test control plane.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    kubectl_as(&kubeconfig(), args, stdin)
}

/// Run kubectl with another kubeconfig (e.g. a ServiceAccount's token).
pub fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(root().join("target/testenv/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// kubectl that must succeed; its stdout.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A kube client for the test control plane.
pub async fn client() -> Client {
    let kc = Kubeconfig::read_from(kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Apply a CRD file and wait until the API server serves it.
pub fn apply_crd(path: &Path, name: &str) {
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path.to_str().unwrap(),
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{name}"),
        ],
        None,
    );
}

/// Install the OAuthClient CRD from `manifests/crds` once per test process.
pub fn install_crd() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        apply_crd(
            &root().join("manifests/crds/oauthclients.latchkey.dev.yaml"),
            "oauthclients.latchkey.dev",
        );
    });
}

/// Install the User CRD from `manifests/crds` once per test process.
pub fn install_user_crd() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        apply_crd(
            &root().join("manifests/crds/users.latchkey.dev.yaml"),
            "users.latchkey.dev",
        );
    });
}

/// Disable a User as an administrator would, with `kubectl patch`.
pub fn disable_user(ns: &str, name: &str) {
    kubectl_ok(
        &[
            "patch",
            "lkuser",
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ],
        None,
    );
}

/// `password`'s Argon2id PHC string, made by `latchkey hash-password` as a user would.
pub fn hash_password(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run latchkey hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(password.as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("latchkey hash-password");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// A Secret's data, decoded, if the Secret exists.
pub fn secret_data(ns: &str, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    use base64::Engine as _;
    let out = kubectl(&["get", "secret", name, "-n", ns, "-o", "json"], None);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = v["data"].as_object()?;
    Some(
        data.iter()
            .map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap();
                (k.clone(), String::from_utf8(bytes).unwrap())
            })
            .collect(),
    )
}

/// Every generated credential in `ns`: `(clientId, clientSecret)` of each Secret Latchkey made.
pub fn generated_credentials(ns: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let secrets: serde_json::Value = serde_json::from_str(&kubectl_ok(
        &[
            "get",
            "secrets",
            "-n",
            ns,
            "-l",
            "latchkey.dev/oauthclient",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let decode = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                decode(&item["data"]["clientId"]),
                decode(&item["data"]["clientSecret"]),
            )
        })
        .collect()
}

/// The peak resident memory of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// A namespace of one test, deleted when dropped.
pub struct Namespace(pub String);

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        let name = format!("{prefix}-{}", &uuid_like()[..8]);
        kubectl_ok(&["create", "namespace", &name], None);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Start `latchkey run` for namespace `ns` (watching it and keeping its Lease and keys there),
/// plain HTTP, short lease for quick take-over.
pub fn start_run(ns: &str, identity: &str, state_dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--plaintext",
        "--namespaces",
        ns,
        "--namespace",
        ns,
        "--identity",
        identity,
        "--lease-duration",
        "4s",
        "--lease-retry",
        "1s",
        "--key-alg",
        "ES256",
    ];
    args.extend_from_slice(extra);
    let kubeconfig = kubeconfig();
    Server::spawn(
        "run",
        state_dir,
        &args,
        &[("KUBECONFIG", kubeconfig.as_path())],
    )
}

/// Wait until `/readyz` answers 200.
pub fn wait_ready(server: &Server) {
    let ok = super::eventually(Duration::from_secs(60), || {
        server.admin_get("/readyz").status == 200
    });
    assert!(
        ok,
        "latchkey never became ready; logs:\n{}",
        server.logs().join("\n")
    );
}

/// The test control plane's kube-apiserver, stopped by `stop_apiserver` and started again on
/// the same port with the same flags.
pub struct StoppedApiServer {
    cmdline: Vec<String>,
}

fn apiserver_pid_file() -> PathBuf {
    root().join("target/testenv/pids/kube-apiserver.pid")
}

/// Stop kube-apiserver (SIGKILL) and wait until it is gone.
pub fn stop_apiserver() -> StoppedApiServer {
    let pid = std::fs::read_to_string(apiserver_pid_file()).expect("kube-apiserver pid file");
    let pid = pid.trim().to_owned();
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("kube-apiserver is running");
    let cmdline: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    // A crash, not a drain: a graceful stop waits for long-running watches to end.
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let gone = super::eventually(Duration::from_secs(30), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(gone, "kube-apiserver did not stop");
    StoppedApiServer { cmdline }
}

impl StoppedApiServer {
    /// Start it again and wait until it is ready.
    // The process must outlive the test: `down.sh` stops it through the pid file.
    #[allow(clippy::zombie_processes)]
    pub fn start(self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root().join("target/testenv/logs/kube-apiserver.log"))
            .unwrap();
        let child = Command::new(&self.cmdline[0])
            .args(&self.cmdline[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
        std::fs::write(apiserver_pid_file(), format!("{}\n", child.id())).unwrap();
        let ready = super::eventually(Duration::from_secs(90), || {
            kubectl(&["get", "--raw=/readyz", "--request-timeout=3s"], None)
                .status
                .success()
        });
        assert!(ready, "kube-apiserver did not come back");
    }
}

/// An OAuthClient as JSON.
pub fn oac_json(ns: &str, name: &str) -> serde_json::Value {
    object_json("oac", ns, name)
}

/// An object of `kind` (a kubectl resource name), as JSON.
pub fn object_json(kind: &str, ns: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&kubectl_ok(
        &["get", kind, name, "-n", ns, "-o", "json"],
        None,
    ))
    .unwrap()
}

/// The (status, reason) of an object's condition `type_`.
pub fn condition(v: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
}

/// Wait (30 s at most) until OAuthClient `ns/name` shows condition `type_` with `want`
/// (status, reason); its JSON then.
pub fn wait_condition(ns: &str, name: &str, type_: &str, want: (&str, &str)) -> serde_json::Value {
    wait_condition_of("oac", ns, name, type_, want)
}

/// Wait (30 s at most) until the `kind` object `ns/name` has condition `type_` = `want`.
pub fn wait_condition_of(
    kind: &str,
    ns: &str,
    name: &str,
    type_: &str,
    want: (&str, &str),
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = super::eventually(Duration::from_secs(30), || {
        last = object_json(kind, ns, name);
        condition(&last, type_).is_some_and(|(s, r)| s == want.0 && r == want.1)
    });
    assert!(
        ok,
        "{ns}/{name} never got {type_}={want:?}; status: {}",
        last["status"]
    );
    last
}
