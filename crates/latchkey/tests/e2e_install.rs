//! Installation end to end, against a real kube-apiserver and etcd (`make e2e`): the Helm chart
//! linted, rendered with several value sets and installed (so the API server validates every
//! object); its RBAC proven by running `latchkey run` with a token of the chart's own
//! ServiceAccount and the Deployment's own flags; APK's TokenIssuer checked against a CRD
//! written from APK's documented fields; generated manifests checked against their sources.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use base64::Engine as _;
use common::{cluster::*, *};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// helm, kubectl as a ServiceAccount, rendered documents

fn chart() -> String {
    root().join("charts/latchkey").to_str().unwrap().to_owned()
}

fn helm(args: &[&str]) -> Output {
    Command::new(root().join("target/testenv/bin/helm"))
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .output()
        .expect("run helm")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every YAML document of `text`, as JSON.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `helm template` of the chart as release "latchkey" in `ns` with `--set` values; the
/// rendered documents, or helm's error.
fn template(ns: &str, sets: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart();
    let mut args = vec!["template", "latchkey", chart.as_str(), "--namespace", ns];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(documents(&String::from_utf8(out.stdout).unwrap()))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(docs)))
}

fn find_all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(deploy: &Value) -> Vec<String> {
    container(deploy)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// A kubeconfig that authenticates as ServiceAccount `sa` of `ns` with a TokenRequest token:
/// the very identity the chart's pods run with, no impersonation.
fn service_account_kubeconfig(ns: &str, sa: &str, dir: &Path) -> PathBuf {
    let token = kubectl_ok(&["create", "token", sa, "-n", ns, "--duration=1h"], None);
    let view: Value = serde_json::from_str(&kubectl_ok(
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    ))
    .unwrap();
    let cluster = &view["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": sa, "context": {"cluster": "testenv", "user": sa, "namespace": ns}}],
        "current-context": sa,
    });
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

fn denied(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("forbidden")
}

/// `kubectl auth can-i` as the ServiceAccount.
fn can_i(kubeconfig: &Path, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let out = kubectl_as(kubeconfig, &full, None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// A Helm release, uninstalled when dropped (declare it after its Namespace).
struct Release {
    name: String,
    namespace: String,
    notes: String,
}

impl Release {
    fn install(namespace: &str, sets: &[&str]) -> Release {
        let chart = chart();
        let mut args = vec![
            "install",
            "latchkey",
            chart.as_str(),
            "--namespace",
            namespace,
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let notes = helm_ok(&args);
        Release {
            name: "latchkey".into(),
            namespace: namespace.into(),
            notes,
        }
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(&kubectl_ok(
            &["get", kind, name, "-n", &self.namespace, "-o", "json"],
            None,
        ))
        .unwrap()
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
    }
}

fn install_token_issuer_crd() {
    apply_crd(
        &root().join("crates/latchkey/tests/fixtures/apk-tokenissuer-crd.yaml"),
        "tokenissuers.dp.wso2.com",
    );
}

fn wait_secret(ns: &str, name: &str) -> BTreeMap<String, String> {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            found = secret_data(ns, name);
            found.is_some()
        }),
        "Secret {ns}/{name} never appeared"
    );
    found.unwrap()
}

fn ready_reason(ns: &str, name: &str) -> Option<(String, String)> {
    let out = kubectl(&["get", "oac", name, "-n", ns, "-o", "json"], None);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
}

fn wait_ready_reason(ns: &str, name: &str, want: (&str, &str)) {
    let mut last = None;
    let ok = eventually(Duration::from_secs(30), || {
        last = ready_reason(ns, name);
        last.as_ref()
            .is_some_and(|(s, r)| s == want.0 && r == want.1)
    });
    assert!(ok, "{ns}/{name}: Ready never {want:?} (last {last:?})");
}

// ---------------------------------------------------------------------------------------------
// `latchkey run` as the chart runs it

/// Flags of the Deployment that name in-pod paths or addresses; the harness gives its own.
const POD_ONLY_FLAGS: [&str; 6] = [
    "--listen",
    "--admin-listen",
    "--state-dir",
    "--tls-cert",
    "--tls-key",
    "--log-format",
];

/// Start `latchkey run` out of cluster as the chart's pod would run: the Deployment's flags
/// (but listeners on loopback, a temporary state dir and local copies of mounted files), its
/// `POD_*` environment, and the ServiceAccount's kubeconfig.
fn start_like_the_chart(
    deploy: &Value,
    sa_kubeconfig: &Path,
    state: &Path,
    extra: &[String],
) -> Server {
    let ns = deploy["metadata"]["namespace"].as_str().unwrap().to_owned();
    let args = args_of(deploy);
    assert_eq!(args[0], "run");
    let mut flags: Vec<String> = args[1..]
        .iter()
        .filter(|a| !POD_ONLY_FLAGS.iter().any(|f| a.starts_with(f)))
        .cloned()
        .collect();
    flags.extend_from_slice(extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::spawn(
        "run",
        state,
        &flags,
        &[
            ("KUBECONFIG", sa_kubeconfig),
            ("POD_NAMESPACE", Path::new(&ns)),
            ("POD_NAME", Path::new("latchkey-e2e-0")),
        ],
    )
}

/// No RBAC denial in the logs: the API server words them "… is forbidden: User …".
fn assert_no_rbac_denials(server: &Server) {
    let denials: Vec<String> = server
        .logs()
        .into_iter()
        .filter(|l| l.contains("is forbidden: User") || l.contains("cannot list resource"))
        .collect();
    assert!(denials.is_empty(), "RBAC denials:\n{}", denials.join("\n"));
}

/// A token request over a connection made by `open`.
fn token_with(open: &dyn Fn() -> Conn, id: &str, secret: &str, scope: Option<&str>) -> Response {
    let mut body = "grant_type=client_credentials".to_owned();
    if let Some(s) = scope {
        body.push_str(&format!("&scope={}", form_encode(s)));
    }
    open().send(&post_token(
        &[("Authorization", &basic(id, secret)), FORM],
        &body,
    ))
}

fn wait_token(open: &dyn Fn() -> Conn, id: &str, secret: &str) -> Response {
    let mut last = None;
    let ok = eventually(Duration::from_secs(30), || {
        let r = token_with(open, id, secret, None);
        let done = r.status == 200;
        last = Some(r);
        done
    });
    let last = last.unwrap();
    assert!(ok, "no token for {id}: {} {}", last.status, last.text());
    last
}

fn get(conn: Conn, path: &str) -> Response {
    let mut conn = conn;
    conn.send(format!("GET {path} HTTP/1.1\r\nHost: latchkey\r\n\r\n").as_bytes())
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn helm_lint_and_template_with_several_value_sets() {
    let chart = chart();
    let value_sets: [&[&str]; 6] = [
        &[],
        &[
            "watchNamespaces={team-a,team-b}",
            "defaultClient.enabled=true,defaultClient.namespace=team-a",
        ],
        &["apk.enabled=true", "defaultClient.enabled=true"],
        &[
            "tls.mode=certManager,tls.certManager.issuerRef.name=ca-issuer",
            "apk.enabled=true,serviceMonitor.enabled=true,networkPolicy.enabled=true",
            "networkPolicy.adminFrom[0].namespaceSelector.matchLabels.monitoring=true",
        ],
        &[
            "tls.mode=plaintext",
            "replicaCount=3",
            "podDisruptionBudget.enabled=false",
        ],
        &[
            "tls.mode=perPod",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
    ];
    for sets in value_sets {
        let mut args = vec!["lint", chart.as_str(), "--strict"];
        for s in sets {
            args.extend(["--set", s]);
        }
        helm_ok(&args);
    }

    // Defaults: cluster-wide RBAC, TLS from a Helm-made Secret, a NetworkPolicy, restricted pod, probes on
    // the admin port, grace matched to the drain.
    let docs = template("lk", &[]).unwrap();
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    let deploy = find(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = container(deploy);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let args = args_of(deploy);
    for want in [
        "--admin-listen=0.0.0.0:9096",
        "--drain-timeout=25s",
        "--tls-cert=/etc/latchkey/tls/tls.crt",
        "--token-url=https://latchkey.lk.svc:9095/oauth2/token",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespaces")),
        "{args:?}"
    );
    // preStop 5 s + drain 25 s + 10 s to hand the Lease over.
    assert_eq!(pod["terminationGracePeriodSeconds"], 40);
    assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    let spread = pod["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(spread.len(), 2);
    let svc = find(&docs, "Service");
    let ports: Vec<(String, u64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [("https".into(), 9095), ("admin".into(), 9096)]);
    let tls = find(&docs, "Secret");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let leader = find_all(&docs, "Role")[0];
    assert_eq!(leader["metadata"]["namespace"], "lk");
    assert!(
        leader["rules"]
            .to_string()
            .contains("latchkey-signing-keys")
    );

    // watchNamespaces: a Role in each, nothing cluster-wide.
    let docs = template(
        "lk",
        &[
            "watchNamespaces={team-a,team-b}",
            "defaultClient.enabled=true,defaultClient.namespace=team-a",
        ],
    )
    .unwrap();
    assert!(find_all(&docs, "ClusterRole").is_empty());
    assert!(find_all(&docs, "ClusterRoleBinding").is_empty());
    let role_namespaces: Vec<&str> = find_all(&docs, "Role")
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(role_namespaces, ["team-a", "team-b", "lk"]);
    assert!(args_of(find(&docs, "Deployment")).contains(&"--namespaces=team-a,team-b".into()));
    let client = find(&docs, "OAuthClient");
    assert_eq!(client["metadata"]["namespace"], "team-a");
    assert_eq!(client["spec"]["clientId"], APK_ID);

    // APK: the TokenIssuer trusts the Helm-made certificate inline.
    let docs = template("lk", &["apk.enabled=true"]).unwrap();
    let ti = find(&docs, "TokenIssuer");
    assert_eq!(ti["apiVersion"], "dp.wso2.com/v1alpha2");
    assert_eq!(
        ti["spec"]["signatureValidation"]["jwks"]["url"],
        "https://latchkey.lk.svc.cluster.local:9095/oauth2/jwks"
    );
    let inline = ti["spec"]["signatureValidation"]["jwks"]["tls"]["certificateInline"]
        .as_str()
        .unwrap();
    let secret_crt = base64::engine::general_purpose::STANDARD
        .decode(find(&docs, "Secret")["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(inline.as_bytes(), secret_crt, "one certificate per render");

    // cert-manager, ServiceMonitor, NetworkPolicy.
    let docs = template(
        "lk",
        &[
            "tls.mode=certManager,tls.certManager.issuerRef.name=ca-issuer",
            "apk.enabled=true,serviceMonitor.enabled=true,networkPolicy.enabled=true",
        ],
    )
    .unwrap();
    let cert = find(&docs, "Certificate");
    let names = cert["spec"]["dnsNames"].to_string();
    for n in [
        "latchkey.lk.svc",
        "latchkey.lk.svc.cluster.local",
        "idp.am.wso2.com",
    ] {
        assert!(names.contains(&format!("\"{n}\"")), "{n} not in {names}");
    }
    assert_eq!(cert["spec"]["secretName"], "latchkey-tls");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "ca-issuer");
    assert!(
        find_all(&docs, "Secret").is_empty(),
        "cert-manager writes the Secret"
    );
    assert_eq!(
        find(&docs, "TokenIssuer")["spec"]["signatureValidation"]["jwks"]["tls"],
        json!({"secretRef": {"name": "latchkey-tls", "key": "ca.crt"}})
    );
    assert_eq!(
        find(&docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"],
        "admin"
    );
    assert_eq!(
        find(&docs, "NetworkPolicy")["spec"]["policyTypes"],
        json!(["Ingress"])
    );

    // Plain HTTP and per-replica certificates.
    let docs = template("lk", &["tls.mode=plaintext"]).unwrap();
    assert!(args_of(find(&docs, "Deployment")).contains(&"--plaintext".into()));
    assert!(find_all(&docs, "Secret").is_empty());
    let docs = template("lk", &["tls.mode=perPod"]).unwrap();
    let args = args_of(find(&docs, "Deployment"));
    assert!(
        args.contains(&"--tls-san=latchkey.lk.svc".into()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--tls-san=idp.am.wso2.com".into()),
        "{args:?}"
    );

    // Values that cannot work are refused with a reason.
    for (sets, needle) in [
        (&["replicaCount=two"][..], "/replicaCount"),
        (&["tls.mode=bogus"], "/tls/mode"),
        (&["nonsense=1"], "nonsense"),
        (&["signingKeys.alg=HS256"], "/signingKeys/alg"),
        (&["tls.mode=certManager"], "issuerRef.name is required"),
        (
            &["tls.mode=existingSecret"],
            "tls.existingSecret is required",
        ),
        (&["apk.enabled=true,tls.mode=perPod"], "cannot trust"),
        (
            &["watchNamespaces={team-a}", "defaultClient.enabled=true"],
            "not in watchNamespaces",
        ),
    ] {
        let err = template("lk", sets).expect_err(&format!("{sets:?} rendered"));
        assert!(err.contains(needle), "{sets:?}: {err}");
    }
}

/// APK's router keeps the JWKS 2 h and never refetches on an unknown kid: with the APK
/// integration on, a next key is published at least 2 h 10 min before it signs.
#[test]
fn with_apk_next_keys_are_published_a_router_cache_ahead() {
    // `helm template` talks to no cluster: rendered with an empty kubeconfig, so this runs
    // without the control plane (but never without helm).
    let render = |sets: &[&str]| -> Result<Vec<Value>, String> {
        let chart = chart();
        let mut args = vec!["template", "latchkey", chart.as_str(), "--namespace", "lk"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = Command::new(root().join("target/testenv/bin/helm"))
            .env("KUBECONFIG", "/dev/null")
            .args(&args)
            .output()
            .expect("run helm (built by tests/testenv into target/testenv/bin)");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(documents(&String::from_utf8(out.stdout).unwrap()))
    };
    let verifier_cache = |sets: &[&str]| -> Vec<String> {
        let docs = render(sets).unwrap();
        args_of(find(&docs, "Deployment"))
            .into_iter()
            .filter(|a| a.starts_with("--verifier-cache"))
            .collect()
    };
    // Without APK: the flag is left out and the lead stays two jwksMaxAge, as before.
    assert_eq!(verifier_cache(&[]), Vec::<String>::new());
    assert_eq!(
        verifier_cache(&["apk.enabled=true"]),
        ["--verifier-cache=7800s"]
    );
    // A longer cache of another verifier wins; a shorter one cannot undercut APK's.
    assert_eq!(
        verifier_cache(&["apk.enabled=true", "signingKeys.verifierCacheSeconds=14400"]),
        ["--verifier-cache=14400s"]
    );
    assert_eq!(
        verifier_cache(&["apk.enabled=true", "signingKeys.verifierCacheSeconds=600"]),
        ["--verifier-cache=7800s"]
    );
    assert_eq!(
        verifier_cache(&["signingKeys.verifierCacheSeconds=900"]),
        ["--verifier-cache=900s"]
    );
    // The schema refuses a margin below APK's own 2 h.
    let err = render(&["apk.enabled=true", "apk.verifierCacheSeconds=3600"]).unwrap_err();
    assert!(err.contains("verifierCacheSeconds"), "{err}");
}

#[test]
fn the_token_issuer_renders_valid_for_apks_crd() {
    install_token_issuer_crd();
    let ns = Namespace::new("e2e-apk");
    let value_sets: [&[&str]; 4] = [
        &["apk.enabled=true"],
        &["apk.enabled=true,tls.mode=certManager,tls.certManager.issuerRef.name=ca"],
        &[
            "apk.enabled=true,tls.mode=existingSecret,tls.existingSecret=my-tls",
            "apk.tokenIssuer.environments={Development,QA}",
            "apk.gateway.name=my-gateway,apk.gateway.namespace=apk",
        ],
        &[
            "apk.enabled=true,tls.mode=perPod",
            "apk.tokenIssuer.jwksTLS.configMapRef.name=latchkey-ca",
            "apk.tokenIssuer.jwksTLS.configMapRef.key=ca.crt",
        ],
    ];
    for (i, sets) in value_sets.iter().enumerate() {
        let docs = template(&ns.0, sets).unwrap();
        let mut ti = find(&docs, "TokenIssuer").clone();
        ti["metadata"]["name"] = json!(format!("latchkey-{i}"));
        let spec = &ti["spec"];
        assert_eq!(spec["issuer"], "https://idp.am.wso2.com/token");
        assert_eq!(spec["consumerKeyClaim"], "clientId");
        assert_eq!(spec["scopesClaim"], "scope");
        let mappings: Vec<(&str, &str)> = spec["claimMappings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["remoteClaim"].as_str().unwrap(),
                    m["localClaim"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            mappings,
            [
                ("organization", "x-wso2-organization"),
                ("groups", "x-wso2-groups")
            ]
        );
        assert_eq!(spec["targetRef"]["kind"], "Gateway");
        // Strict field validation: an unknown or misplaced field is an error, not pruned.
        let text = serde_json::to_string(&ti).unwrap();
        kubectl_ok(
            &["create", "--dry-run=server", "--validate=strict", "-f", "-"],
            Some(&text),
        );
        kubectl_ok(&["create", "-f", "-"], Some(&text));
        let stored: Value = serde_json::from_str(&kubectl_ok(
            &[
                "get",
                "tokenissuer",
                &format!("latchkey-{i}"),
                "-n",
                &ns.0,
                "-o",
                "json",
            ],
            None,
        ))
        .unwrap();
        assert_eq!(
            stored["spec"], ti["spec"],
            "the API server kept every field"
        );
    }
    // The stand-in CRD has teeth: a misspelt field and a missing required one are refused.
    let docs = template(&ns.0, &["apk.enabled=true"]).unwrap();
    let mut bad = find(&docs, "TokenIssuer").clone();
    bad["spec"]["consumerKeyClaims"] = json!("clientId");
    let out = kubectl(
        &["create", "--dry-run=server", "--validate=strict", "-f", "-"],
        Some(&bad.to_string()),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let mut bad = find(&docs, "TokenIssuer").clone();
    bad["spec"].as_object_mut().unwrap().remove("issuer");
    let out = kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&bad.to_string()),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("issuer"));
}

/// The default install (cluster-wide), plus the TokenIssuer and a NetworkPolicy, in a
/// namespace that enforces the restricted Pod Security Standard. Then the whole flow run by
/// the chart's ServiceAccount, with the chart's own flags and serving certificate.
#[test]
fn the_chart_installs_and_its_service_account_runs_the_whole_flow() {
    let started = Instant::now();
    install_crd();
    install_token_issuer_crd();
    let rel = Namespace::new("e2e-inst");
    let apps = Namespace::new("e2e-apps");
    kubectl_ok(
        &[
            "label",
            "namespace",
            &rel.0,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
        None,
    );
    let release = Release::install(&rel.0, &["apk.enabled=true", "networkPolicy.enabled=true"]);
    assert!(
        release
            .notes
            .contains(&format!("https://latchkey.{}.svc:9095/oauth2/token", rel.0))
    );
    assert!(
        release.notes.contains("curl --cacert ca.crt"),
        "{}",
        release.notes
    );
    let deploy = release.get("deployment", "latchkey");

    // The pod the Deployment would make is admitted under restricted Pod Security.
    let template = &deploy["spec"]["template"];
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "latchkey-pss", "namespace": rel.0, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    });
    kubectl_ok(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&pod.to_string()),
    );

    // `latchkey run` as the chart's ServiceAccount, serving the chart's certificate.
    let dir = tempfile::tempdir().unwrap();
    let sa = service_account_kubeconfig(&rel.0, "latchkey", dir.path());
    let tls = wait_secret(&rel.0, "latchkey-tls");
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, &tls["tls.crt"]).unwrap();
    std::fs::write(&key, &tls["tls.key"]).unwrap();
    let state = dir.path().join("state");
    let server = start_like_the_chart(
        &deploy,
        &sa,
        &state,
        &[
            format!("--tls-cert={}", crt.display()),
            format!("--tls-key={}", key.display()),
        ],
    );
    wait_ready(&server);
    let host = format!("latchkey.{}.svc", rel.0);
    let addr = server.addr;
    let (ca, h) = (crt.clone(), host.clone());
    let open = move || Conn::try_open_named(addr, Some(ca.clone()), &h).expect("TLS to latchkey");

    // The leader created the signing keys in the release namespace.
    let keys = wait_secret(&rel.0, "latchkey-signing-keys");
    assert!(keys.contains_key("keyring.json"));

    // The examples, applied as they ship (in a namespace of this test).
    let mut applied = 0;
    for entry in std::fs::read_dir(root().join("manifests/examples")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let text = text.replace("namespace: apps", &format!("namespace: {}", apps.0));
        kubectl_ok(&["apply", "-f", "-"], Some(&text));
        applied += 1;
    }
    assert_eq!(applied, 3);

    // Generated credentials → token, status, Events.
    let creds = wait_secret(&apps.0, "orders-gateway-credentials");
    assert_eq!(
        creds["tokenUrl"],
        format!("https://latchkey.{}.svc:9095/oauth2/token", rel.0)
    );
    let token = wait_token(&open, &creds["clientId"], &creds["clientSecret"]);
    wait_ready_reason(&apps.0, "orders-gateway", ("True", "Registered"));
    let access = token.json()["access_token"].as_str().unwrap().to_owned();
    let (header, claims) = jwt_parts(&access);
    assert_eq!(header["alg"], "RS256");
    // The chart's default: thumbprint kids, so keys rotate and APK follows them by JWKS.
    assert_eq!(
        header["kid"].as_str().unwrap().len(),
        43,
        "an RFC 7638 thumbprint kid"
    );
    assert_eq!(claims["clientId"], creds["clientId"].as_str());

    // A client with its own Secret, scoped clients with claims, a disabled one.
    wait_token(&open, "billing-batch", "change-me-to-a-long-random-value");
    let reporting = wait_secret(&apps.0, "reporting-reader-credentials");
    let r = wait_token(&open, &reporting["clientId"], &reporting["clientSecret"]);
    let (_, claims) = jwt_parts(r.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["organization"], "default");
    assert_eq!(claims["groups"], json!(["analysts"]));
    assert_eq!(claims["scope"], "reports:read");
    let admin = wait_secret(&apps.0, "platform-admin-credentials");
    wait_token(&open, &admin["clientId"], &admin["clientSecret"]);
    let r = token_with(
        &open,
        &admin["clientId"],
        &admin["clientSecret"],
        Some("apk:api_create"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let retired = wait_secret(&apps.0, "retired-integration-credentials");
    wait_ready_reason(&apps.0, "retired-integration", ("False", "Disabled"));
    let r = token_with(&open, &retired["clientId"], &retired["clientSecret"], None);
    assert_eq!(r.status, 401);
    let events: Value = serde_json::from_str(&kubectl_ok(
        &["get", "events.events.k8s.io", "-n", &apps.0, "-o", "json"],
        None,
    ))
    .unwrap();
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reportingController"] == "latchkey"),
        "no Event from latchkey"
    );

    // APK: the TokenIssuer's JWKS URL serves the keys that verify the token, over TLS trusted
    // through the certificate the TokenIssuer carries, for the host name in its URL.
    let ti = release.get("tokenissuer", "latchkey");
    let jwks = &ti["spec"]["signatureValidation"]["jwks"];
    let url = jwks["url"].as_str().unwrap();
    let rest = url.strip_prefix("https://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let (url_host, port) = authority.split_once(':').unwrap();
    assert_eq!(port, "9095");
    assert_eq!(url_host, format!("latchkey.{}.svc.cluster.local", rel.0));
    let inline = dir.path().join("tokenissuer-ca.pem");
    std::fs::write(&inline, jwks["tls"]["certificateInline"].as_str().unwrap()).unwrap();
    let r = get(
        Conn::try_open_named(addr, Some(inline), url_host).unwrap(),
        path,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let verified = verify_with_jwks(&access, &r.json());
    assert_eq!(verified["iss"], ti["spec"]["issuer"]);
    assert_eq!(
        verified[ti["spec"]["consumerKeyClaim"].as_str().unwrap()],
        creds["clientId"].as_str()
    );
    assert!(verified[ti["spec"]["scopesClaim"].as_str().unwrap()].is_string());

    // Key rotation's writes: the ServiceAccount replaces the keys Secret with a
    // resourceVersion precondition (a stale one is a conflict, not a denial)…
    let current: Value = serde_json::from_slice(
        &kubectl_as(
            &sa,
            &[
                "get",
                "secret",
                "latchkey-signing-keys",
                "-n",
                &rel.0,
                "-o",
                "json",
            ],
            None,
        )
        .stdout,
    )
    .unwrap();
    assert!(current["metadata"]["resourceVersion"].is_string());
    let mut next = current.clone();
    next["metadata"]["annotations"] = json!({"latchkey.dev/e2e-rotation": "1"});
    let out = kubectl_as(&sa, &["replace", "-f", "-"], Some(&next.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_as(&sa, &["replace", "-f", "-"], Some(&next.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && (err.contains("Conflict") || err.contains("has been modified")),
        "{err}"
    );
    // …and nothing else in the release namespace.
    let ns_flag = ["-n", rel.0.as_str()];
    for (verb_object, allowed) in [
        (&["update", "secret/latchkey-signing-keys"][..], true),
        (&["watch", "secret/latchkey-signing-keys"], true),
        (&["update", "lease/latchkey-leader"], true),
        (&["update", "secret/latchkey-tls"], false),
        (&["delete", "secret/latchkey-signing-keys"], false),
        (&["update", "lease/another"], false),
        (&["create", "pods"], false),
        (&["update", "oauthclients.latchkey.dev"], false),
        (
            &["patch", "oauthclients.latchkey.dev", "--subresource=status"],
            true,
        ),
    ] {
        let mut args = verb_object.to_vec();
        args.extend_from_slice(&ns_flag);
        assert_eq!(can_i(&sa, &args), allowed, "can-i {args:?}");
    }
    // Cluster-wide: Secrets are read and created everywhere, never updated.
    assert!(can_i(&sa, &["list", "secrets", "--all-namespaces"]));
    assert!(!can_i(&sa, &["update", "secrets", "-n", &apps.0]));
    assert!(!can_i(&sa, &["delete", "secrets", "-n", &apps.0]));
    // Issue 12: authorization grants are ConfigMaps in the release namespace only; Users are
    // read where clients are, and only their status is written.
    for verb in ["get", "list", "create", "update", "delete"] {
        assert!(can_i(&sa, &[verb, "configmaps", "-n", &rel.0]), "{verb}");
    }
    assert!(!can_i(&sa, &["create", "configmaps", "-n", &apps.0]));
    assert!(can_i(
        &sa,
        &["update", "secret/latchkey-session-keys", "-n", &rel.0]
    ));
    assert!(can_i(&sa, &["watch", "users.latchkey.dev", "-n", &apps.0]));
    assert!(!can_i(
        &sa,
        &["update", "users.latchkey.dev", "-n", &apps.0]
    ));
    assert!(can_i(
        &sa,
        &[
            "patch",
            "users.latchkey.dev",
            "--subresource=status",
            "-n",
            &apps.0
        ]
    ));

    assert_no_rbac_denials(&server);
    let logs = server.logs().join("\n");
    for s in [
        &creds["clientSecret"],
        &reporting["clientSecret"],
        &admin["clientSecret"],
    ] {
        assert!(!logs.contains(s.as_str()), "secret value in logs");
    }
    assert!(server.terminate().success());
    println!(
        "figure: helm install to a verified token as the chart's ServiceAccount: {:?}",
        started.elapsed()
    );
}

/// watchNamespaces: Roles only in the watched namespaces; the release namespace (not watched)
/// holds only the Lease and the keys Secret, whose watch is allowed by name alone.
#[test]
fn with_watch_namespaces_the_service_account_is_confined() {
    install_crd();
    let rel = Namespace::new("e2e-instw");
    let watched = Namespace::new("e2e-watched");
    let other = Namespace::new("e2e-other");
    let release = Release::install(
        &rel.0,
        &[
            &format!("watchNamespaces={{{}}}", watched.0),
            &format!(
                "defaultClient.enabled=true,defaultClient.namespace={}",
                watched.0
            ),
            "tls.mode=perPod",
        ],
    );
    assert!(
        release.notes.contains("NON-PRODUCTION"),
        "{}",
        release.notes
    );
    assert!(release.notes.contains("testing only"), "{}", release.notes);
    let deploy = release.get("deployment", "latchkey");
    assert!(args_of(&deploy).contains(&format!("--namespaces={}", watched.0)));

    let dir = tempfile::tempdir().unwrap();
    let sa = service_account_kubeconfig(&rel.0, "latchkey", dir.path());
    // tls.mode=perPod: the replica makes its certificate in its state dir, as in the pod.
    let server = start_like_the_chart(&deploy, &sa, &dir.path().join("state"), &[]);
    wait_ready(&server);
    let (addr, ca) = (server.addr, dir.path().join("state/tls.crt"));
    let open = move || Conn::try_open_named(addr, Some(ca.clone()), "idp.am.wso2.com").unwrap();

    // APK's default client, as the seed request sends it.
    let seed = || {
        open().send(&post_token(
            &[("Authorization", SEED_AUTH), FORM],
            "grant_type=client_credentials",
        ))
    };
    assert!(
        eventually(Duration::from_secs(30), || seed().status == 200),
        "the default client never answered"
    );
    let r = seed();
    assert_eq!(r.json()["scope"], "default");
    let (_, claims) = jwt_parts(r.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["clientId"], APK_ID);
    wait_ready_reason(
        &watched.0,
        "latchkey-apk-default-client",
        ("True", "Registered"),
    );

    // A generated client in the watched namespace works end to end.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: gw, namespace: {} }}\nspec: {{ scopes: [\"orders:read\"] }}\n",
            watched.0
        )),
    );
    let creds = wait_secret(&watched.0, "gw-credentials");
    wait_token(&open, &creds["clientId"], &creds["clientSecret"]);
    wait_ready_reason(&watched.0, "gw", ("True", "Registered"));
    assert!(secret_data(&rel.0, "latchkey-signing-keys").is_some());

    // Another namespace is out of reach: its clients are not served, its Secrets not readable.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: s, namespace: {ns} }}\nstringData: {{ clientSecret: elsewhere }}\n---\napiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: x, namespace: {ns} }}\nspec: {{ clientId: elsewhere, secretRef: {{ name: s }} }}\n",
            ns = other.0
        )),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        token_with(&open, "elsewhere", "elsewhere", None).status,
        401
    );
    assert_eq!(
        ready_reason(&other.0, "x"),
        None,
        "status written outside the watch"
    );
    for args in [
        &["get", "secret", "s", "-n", other.0.as_str()][..],
        &["get", "secrets", "-n", other.0.as_str()],
        &["get", "oauthclients", "-n", other.0.as_str()],
        &["get", "secrets", "--all-namespaces"],
        &["get", "oauthclients", "--all-namespaces"],
        // In the release namespace only the keys Secret, by name.
        &["get", "secrets", "-n", rel.0.as_str()],
        &["get", "secret", "default-token", "-n", rel.0.as_str()],
    ] {
        let out = kubectl_as(&sa, args, None);
        assert!(
            denied(&out),
            "not denied: kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let by_name = kubectl_as(
        &sa,
        &[
            "get",
            "secrets",
            "-n",
            &rel.0,
            "--field-selector=metadata.name=latchkey-signing-keys",
        ],
        None,
    );
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );
    assert!(!can_i(&sa, &["list", "secrets", "-n", &rel.0]));
    assert!(!can_i(
        &sa,
        &["create", "events.events.k8s.io", "-n", &other.0]
    ));
    assert!(can_i(
        &sa,
        &["create", "events.events.k8s.io", "-n", &watched.0]
    ));

    assert_no_rbac_denials(&server);
    assert!(server.terminate().success());
}

#[test]
fn generated_manifests_match_their_sources_and_apply() {
    let rendered = Command::new("bash")
        .arg(root().join("manifests/render-install.sh"))
        .env("HELM", root().join("target/testenv/bin/helm"))
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let on_disk = std::fs::read(root().join("manifests/install.yaml")).unwrap();
    assert!(
        rendered.stdout == on_disk,
        "manifests/install.yaml differs from the chart: run `make generate`"
    );

    // kubectl apply of the file (all but the CRD, which other suites share): the API server
    // takes every object, then it is removed again.
    install_crd();
    let text = String::from_utf8(on_disk).unwrap();
    let docs: Vec<Value> = documents(&text)
        .into_iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition")
        .collect();
    assert!(
        documents(&text)
            .iter()
            .any(|d| d["kind"] == "CustomResourceDefinition")
    );
    assert_eq!(find(&docs, "Namespace")["metadata"]["name"], "latchkey");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    let out = kubectl(&["apply", "--server-side", "-f", "-"], Some(&list));
    let cleanup = || {
        let _ = kubectl(
            &["delete", "--wait=false", "--ignore-not-found", "-f", "-"],
            Some(&list),
        );
    };
    if !out.status.success() {
        cleanup();
        panic!("install.yaml: {}", String::from_utf8_lossy(&out.stderr));
    }
    cleanup();
}

// Issue 13: registration's RBAC, proven by the chart's own ServiceAccount.
#[test]
fn with_registration_open_the_service_account_registers_updates_and_deletes_only_there() {
    install_crd();
    let rel = Namespace::new("e2e-dcr");
    let other = Namespace::new("e2e-dcr-other");
    let release = Release::install(
        &rel.0,
        &[
            "registration.mode=open",
            "registration.allowedScopes={orders:read}",
        ],
    );
    let deploy = release.get("deployment", "latchkey");
    let dir = tempfile::tempdir().unwrap();
    let sa = service_account_kubeconfig(&rel.0, "latchkey", dir.path());
    assert!(can_i(
        &sa,
        &["create", "oauthclients.latchkey.dev", "-n", &rel.0]
    ));
    assert!(!can_i(
        &sa,
        &["create", "oauthclients.latchkey.dev", "-n", &other.0]
    ));
    assert!(!can_i(&sa, &["delete", "secrets", "-n", &other.0]));
    let tls = wait_secret(&rel.0, "latchkey-tls");
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&crt, &tls["tls.crt"]).unwrap();
    std::fs::write(&key, &tls["tls.key"]).unwrap();
    let server = start_like_the_chart(
        &deploy,
        &sa,
        &dir.path().join("state"),
        &[
            format!("--tls-cert={}", crt.display()),
            format!("--tls-key={}", key.display()),
        ],
    );
    wait_ready(&server);
    let (addr, ca, host) = (server.addr, crt.clone(), format!("latchkey.{}.svc", rel.0));
    let open =
        move || Conn::try_open_named(addr, Some(ca.clone()), &host).expect("TLS to latchkey");
    let send = |method: &str, path: &str, auth: Option<&str>, body: &Value| {
        let body = body.to_string();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        open().send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let res = send(
        "POST",
        "/dcr/register",
        None,
        &json!({"scope": "orders:read"}),
    );
    assert_eq!(res.status, 201, "{}", res.text());
    let reg = res.json();
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let bearer = format!(
        "Bearer {}",
        reg["registration_access_token"].as_str().unwrap()
    );
    let path = format!("/oauth2/register/{id}");
    let res = wait_token(&open, &id, reg["client_secret"].as_str().unwrap());
    assert_eq!(res.status, 200);
    let owner = kubectl_ok(
        &[
            "get",
            "secret",
            &format!("dcr-{id}-credentials"),
            "-n",
            &rel.0,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].name}",
        ],
        None,
    );
    assert_eq!(owner, format!("dcr-{id}"));
    let res = send("PUT", &path, Some(&bearer), &json!({"client_id": id}));
    assert_eq!(res.status, 200, "{}", res.text());
    let rotated = res.json()["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(wait_token(&open, &id, &rotated).status, 200);
    let res = send("DELETE", &path, Some(&bearer), &json!({}));
    assert_eq!(res.status, 204, "{}", res.text());
    assert_eq!(token_with(&open, &id, &rotated, None).status, 401);
    assert_no_rbac_denials(&server);
}

// Issue 11: clients without secrets.
/// `--set serviceAccountTokens.enabled=true` (all namespaces, or `watchNamespaces`): as the
/// chart's own ServiceAccount, `latchkey run` accepts a projected token bound to a Secret for
/// the OAuthClient listing its ServiceAccount (naming it in `assertionIdentityClaim`), refuses
/// it within 5 s of the Secret's deletion, writes the trust conditions, and meets no RBAC
/// denial. With `watchNamespaces`, a ServiceAccount outside them shows as Forbidden.
fn service_account_tokens_under_the_chart_rbac(watch: bool) {
    install_crd();
    let rel = Namespace::new("e2e-insa");
    let apps = Namespace::new("e2e-saapps");
    let mut sets = vec![
        "serviceAccountTokens.enabled=true".to_owned(),
        "tls.mode=perPod".to_owned(),
    ];
    if watch {
        sets.push(format!("watchNamespaces={{{}}}", apps.0));
    }
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let release = Release::install(&rel.0, &sets);
    let deploy = release.get("deployment", "latchkey");
    let audience = args_of(&deploy)
        .iter()
        .find_map(|a| a.strip_prefix("--token-url=").map(str::to_owned))
        .expect("the chart sets --token-url");

    let a = apps.0.as_str();
    kubectl_ok(&["create", "serviceaccount", "gateway", "-n", a], None);
    kubectl_ok(&["create", "secret", "generic", "bound", "-n", a], None);
    let id = format!("gw-{a}");
    let mut clients = vec![
        (
            "gateway",
            json!({ "clientId": id, "assertionIdentityClaim": "caller",
                    "serviceAccounts": [{ "namespace": a, "name": "gateway" }] }),
        ),
        (
            "ghost",
            json!({ "clientId": format!("ghost-{a}"),
                    "serviceAccounts": [{ "namespace": a, "name": "ghost" }] }),
        ),
    ];
    if watch {
        // The chart's own ServiceAccount exists, but its namespace is not watched.
        clients.push((
            "outside",
            json!({ "clientId": format!("outside-{a}"),
                    "serviceAccounts": [{ "namespace": rel.0, "name": "latchkey" }] }),
        ));
    }
    for (name, spec) in &clients {
        let doc = json!({
            "apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": { "name": name, "namespace": a }, "spec": spec,
        });
        kubectl_ok(&["apply", "-f", "-"], Some(&doc.to_string()));
    }

    let dir = tempfile::tempdir().unwrap();
    let sa = service_account_kubeconfig(&rel.0, "latchkey", dir.path());
    let server = start_like_the_chart(&deploy, &sa, &dir.path().join("state"), &[]);
    wait_ready(&server);
    assert!(
        server.wait_for_log(
            "ServiceAccount tokens accepted as client assertions",
            Duration::from_secs(30)
        ),
        "the service-account issuer is discovered with the chart's RBAC"
    );
    wait_condition(
        a,
        "gateway",
        "ServiceAccountsResolved",
        ("True", "Resolved"),
    );
    wait_ready_reason(a, "gateway", ("True", "Registered"));
    wait_condition(
        a,
        "ghost",
        "ServiceAccountsResolved",
        ("False", "ServiceAccountNotFound"),
    );
    if watch {
        wait_condition(
            a,
            "outside",
            "ServiceAccountsResolved",
            ("False", "Forbidden"),
        );
    }

    let token = kubectl_ok(
        &[
            "create",
            "token",
            "gateway",
            "-n",
            a,
            "--audience",
            &audience,
            "--bound-object-kind",
            "Secret",
            "--bound-object-name",
            "bound",
        ],
        None,
    );
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_assertion_type={}&client_assertion={}",
        form_encode(&id),
        form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        form_encode(token.trim())
    );
    let res = server.token(&[FORM], &body);
    assert_eq!(res.status, 200, "{}", res.text());
    let (_, claims) = jwt_parts(res.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], json!(id));
    assert_eq!(
        claims["caller"],
        json!(format!("system:serviceaccount:{a}:gateway"))
    );

    kubectl_ok(&["delete", "secret", "bound", "-n", a, "--wait=true"], None);
    let deleted = Instant::now();
    let refused = eventually(Duration::from_secs(5), || {
        server.token(&[FORM], &body).status == 400
    });
    println!(
        "figure: token bound to a deleted Secret refused after {:?}",
        deleted.elapsed()
    );
    assert!(
        refused,
        "still accepted 5 s after its bound Secret was deleted"
    );
    assert_eq!(
        server.token(&[FORM], &body).json()["error"],
        json!("invalid_client")
    );

    assert_no_rbac_denials(&server);
    assert!(server.terminate().success());
}

#[test]
fn with_service_account_tokens_the_chart_rbac_serves_bound_tokens() {
    service_account_tokens_under_the_chart_rbac(false);
}

#[test]
fn with_service_account_tokens_and_watch_namespaces_the_chart_rbac_serves_bound_tokens() {
    service_account_tokens_under_the_chart_rbac(true);
}
