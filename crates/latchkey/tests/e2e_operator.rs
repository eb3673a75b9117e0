//! The operator end to end, against a real kube-apiserver and etcd (`make e2e`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{cluster::*, *};

fn token_status(server: &Server, id: &str, secret: &str, scope: Option<&str>) -> u16 {
    let mut body = "grant_type=client_credentials".to_owned();
    if let Some(s) = scope {
        body.push_str(&format!("&scope={}", form_encode(s)));
    }
    server
        .token(&[("Authorization", &basic(id, secret)), FORM], &body)
        .status
}

fn wait_status(server: &Server, id: &str, secret: &str, want: u16) -> Duration {
    let start = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || token_status(
            server, id, secret, None
        ) == want),
        "token for {id} never answered {want}"
    );
    start.elapsed()
}

/// Merge-patch an OAuthClient.
fn patch_spec(ns: &str, name: &str, patch: &str) {
    kubectl_ok(
        &["patch", "oac", name, "-n", ns, "--type=merge", "-p", patch],
        None,
    );
}

fn apply(yaml: &str) {
    kubectl_ok(&["apply", "-f", "-"], Some(yaml));
}

#[test]
fn the_crd_validates_specs_on_the_api_server() {
    install_crd();
    let ns = Namespace::new("e2e-crd");
    let base = |spec: &str| {
        format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: x, namespace: {} }}\nspec: {spec}\n",
            ns.0
        )
    };
    for (spec, needle) in [
        (r#"{ claims: { iss: me } }"#, "set by Latchkey"),
        (r#"{ accessTokenLifetime: forever }"#, "accessTokenLifetime"),
        (r#"{ accessTokenLifetime: 48h }"#, "accessTokenLifetime"),
        (
            r#"{ scopes: ["a"], defaultScopes: ["b"] }"#,
            "defaultScopes",
        ),
        (r#"{ scopes: ["a*b"] }"#, "scopes"),
        (r#"{ grantTypes: [password] }"#, "grantTypes"),
        // Client ids are VSCHAR (RFC 6749 Appendix A): printable ASCII, space included.
        (r#"{ clientId: "caf\u00e9" }"#, "clientId"),
        (r#"{ clientId: "tab\there" }"#, "clientId"),
        // Issue 12: public clients (the CEL rules of latchkey_api::auth_method).
        (
            r#"{ tokenEndpointAuthMethod: client_secret_jwt }"#,
            "tokenEndpointAuthMethod",
        ),
        (
            r#"{ clientId: spa, tokenEndpointAuthMethod: none, grantTypes: [authorization_code], redirectUris: ["https://a.example/cb"], secretRef: { name: s } }"#,
            "has no secret: remove secretRef",
        ),
        (
            r#"{ tokenEndpointAuthMethod: none, grantTypes: [authorization_code], redirectUris: ["https://a.example/cb"] }"#,
            "must set clientId",
        ),
        (
            r#"{ clientId: spa, tokenEndpointAuthMethod: none, grantTypes: [authorization_code] }"#,
            "needs redirectUris",
        ),
        (
            r#"{ clientId: spa, tokenEndpointAuthMethod: none, redirectUris: ["https://a.example/cb"] }"#,
            "may only use the authorization_code and refresh_token grants",
        ),
        (
            r#"{ clientId: spa, tokenEndpointAuthMethod: none, grantTypes: [authorization_code], redirectUris: ["https://a.example/cb"], introspection: true }"#,
            "has no credentials",
        ),
        (
            r#"{ clientId: c, tokenEndpointAuthMethod: client_secret_post, jwksUri: "https://k.example/j" }"#,
            "accepts only the secret",
        ),
        (
            r#"{ clientId: c, tokenEndpointAuthMethod: private_key_jwt }"#,
            "needs the client's keys",
        ),
    ] {
        let out = kubectl(&["apply", "-f", "-"], Some(&base(spec)));
        assert!(!out.status.success(), "{spec} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{spec}: {err}");
    }
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&base(
            r#"{ clientId: spa, tokenEndpointAuthMethod: none, grantTypes: [authorization_code, refresh_token], redirectUris: ["http://127.0.0.1:8400/cb"] }"#,
        )),
    );
    kubectl_ok(&["delete", "oac", "x", "-n", &ns.0], None);
    let spaced = base(r#"{ clientId: "https://app.example.com/client one" }"#);
    kubectl_ok(&["apply", "-f", "-"], Some(&spaced));
    let ok = base(
        r#"{ scopes: ["orders:read", "apk:*"], defaultScopes: ["apk:read", "default"], accessTokenLifetime: 1h30m, claims: { organization: apps } }"#,
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&ok));
    let v = oac_json(&ns.0, "x");
    assert_eq!(
        v["spec"]["grantTypes"],
        serde_json::json!(["client_credentials"]),
        "defaults applied by the API server"
    );
    let explain = kubectl_ok(&["explain", "oauthclients.spec.secretRef"], None);
    assert!(explain.contains("Secret"), "{explain}");
}

#[test]
fn generated_credentials_secret_refs_and_every_change_reach_tokens() {
    install_crd();
    let ns = Namespace::new("e2e-op");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "solo", dir.path(), &[]);
    wait_ready(&server);

    // 1. Without secretRef: the leader generates owned credentials, and they work.
    apply(&format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: gw, namespace: {} }}\nspec: {{ scopes: [\"orders:*\"] }}\n",
        ns.0
    ));
    assert!(
        eventually(Duration::from_secs(20), || secret_data(
            &ns.0,
            "gw-credentials"
        )
        .is_some()),
        "no generated Secret"
    );
    let creds = secret_data(&ns.0, "gw-credentials").unwrap();
    assert_eq!(
        creds["clientSecret"].len(),
        43,
        "256 random bits, base64url"
    );
    assert!(creds["tokenUrl"].ends_with("/oauth2/token"));
    let secret_obj: serde_json::Value = serde_json::from_str(&kubectl_ok(
        &["get", "secret", "gw-credentials", "-n", &ns.0, "-o", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        secret_obj["metadata"]["ownerReferences"][0]["kind"],
        "OAuthClient"
    );
    assert_eq!(secret_obj["metadata"]["ownerReferences"][0]["name"], "gw");
    let id = creds["clientId"].clone();
    wait_status(&server, &id, &creds["clientSecret"], 200);
    let v = wait_condition(&ns.0, "gw", "Ready", ("True", "Registered"));
    assert_eq!(v["status"]["clientId"], id.as_str());
    assert_eq!(v["status"]["secretName"], "gw-credentials");
    assert_eq!(
        v["status"]["observedGeneration"],
        v["metadata"]["generation"]
    );
    for c in v["status"]["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], v["metadata"]["generation"], "{c}");
        assert!(
            c["message"].is_string() && c["lastTransitionTime"].is_string(),
            "{c}"
        );
    }
    let table = kubectl_ok(&["get", "oac", "-n", &ns.0], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CLIENT", "ID", "READY", "SECRET", "AGE"],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.starts_with("gw ")
            && row.contains(&id)
            && row.contains("True")
            && row.contains("gw-credentials"),
        "{table}"
    );

    // The secret value is never overwritten: an unrelated edit of the OAuthClient keeps it.
    kubectl_ok(&["annotate", "oac", "gw", "-n", &ns.0, "touched=yes"], None);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        secret_data(&ns.0, "gw-credentials").unwrap()["clientSecret"],
        creds["clientSecret"]
    );

    // A deleted generated Secret comes back with a new secret, the same id, and an Event.
    kubectl_ok(&["delete", "secret", "gw-credentials", "-n", &ns.0], None);
    let mut renewed = None;
    assert!(eventually(Duration::from_secs(20), || {
        renewed = secret_data(&ns.0, "gw-credentials");
        renewed
            .as_ref()
            .is_some_and(|r| r["clientSecret"] != creds["clientSecret"])
    }));
    let renewed = renewed.unwrap();
    assert_eq!(renewed["clientId"], id);
    wait_status(&server, &id, &renewed["clientSecret"], 200);
    assert_eq!(
        token_status(&server, &id, &creds["clientSecret"], None),
        401
    );
    let events = kubectl_ok(&["get", "events", "-n", &ns.0, "-o", "json"], None);
    assert!(
        events.contains("CredentialsRecreated"),
        "no Event for the recreated Secret"
    );

    // 2. secretRef to a user Secret, and its rotation.
    apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{ name: user-secret, namespace: {ns} }}
stringData: {{ token: "first value" }}
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {{ name: mine, namespace: {ns} }}
spec:
  clientId: my-client
  secretRef: {{ name: user-secret, key: token }}
  scopes: ["orders:read"]
"#,
        ns = ns.0
    ));
    wait_status(&server, "my-client", "first value", 200);
    apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: user-secret, namespace: {} }}\nstringData: {{ token: \"second value\" }}\n",
        ns.0
    ));
    let took = wait_status(&server, "my-client", "second value", 200);
    assert_eq!(token_status(&server, "my-client", "first value", None), 401);
    println!("\nfigure: user Secret rotation reached tokens in {took:?}");

    // 3. Scope change.
    assert_eq!(
        token_status(&server, "my-client", "second value", Some("orders:write")),
        400
    );
    patch_spec(
        &ns.0,
        "mine",
        r#"{"spec":{"scopes":["orders:read","orders:write"]}}"#,
    );
    assert!(eventually(Duration::from_secs(10), || token_status(
        &server,
        "my-client",
        "second value",
        Some("orders:write")
    ) == 200));

    // 4. disabled: true, then back.
    patch_spec(&ns.0, "mine", r#"{"spec":{"disabled":true}}"#);
    wait_status(&server, "my-client", "second value", 401);
    wait_condition(&ns.0, "mine", "Ready", ("False", "Disabled"));
    patch_spec(&ns.0, "mine", r#"{"spec":{"disabled":false}}"#);
    wait_status(&server, "my-client", "second value", 200);

    // 5. A second OAuthClient claiming the same client id: the older keeps it.
    apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: squatter-secret, namespace: {ns} }}\nstringData: {{ clientSecret: squat }}\n---\napiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: squatter, namespace: {ns} }}\nspec: {{ clientId: my-client, secretRef: {{ name: squatter-secret }} }}\n",
        ns = ns.0
    ));
    let v = wait_condition(&ns.0, "squatter", "Ready", ("False", "ClientIdConflict"));
    assert!(
        v["status"]["conditions"].to_string().contains("mine"),
        "{}",
        v["status"]
    );
    assert_eq!(token_status(&server, "my-client", "squat", None), 401);
    assert_eq!(
        token_status(&server, "my-client", "second value", None),
        200
    );

    // 6. A missing user Secret is reported precisely.
    apply(&format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: orphan, namespace: {} }}\nspec: {{ clientId: orphan, secretRef: {{ name: nowhere }} }}\n",
        ns.0
    ));
    wait_condition(
        &ns.0,
        "orphan",
        "SecretResolved",
        ("False", "SecretNotFound"),
    );

    // Issue 12: a public client (tokenEndpointAuthMethod none) is Ready with no Secret: none
    // is read, none generated, and the status names none.
    apply(&format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: spa, namespace: {} }}\nspec: {{ clientId: spa, tokenEndpointAuthMethod: none, grantTypes: [authorization_code, refresh_token], redirectUris: [\"http://127.0.0.1:8400/cb\"] }}\n",
        ns.0
    ));
    let v = wait_condition(&ns.0, "spa", "Ready", ("True", "Registered"));
    assert!(v["status"]["secretName"].is_null(), "{}", v["status"]);
    assert_eq!(
        condition(&v, "SecretResolved"),
        Some(("True".into(), "NotNeeded".into()))
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        secret_data(&ns.0, "spa-credentials").is_none(),
        "no credentials are generated for a public client"
    );
    // It has no client_credentials, and no secret to send.
    let res = server.token(&[FORM], "grant_type=client_credentials&client_id=spa");
    assert_eq!(res.json()["error"], "unauthorized_client", "{}", res.text());
    assert_eq!(token_status(&server, "spa", "anything", None), 401);

    // 7. Delete: tokens stop, and the conflicting one takes the id over.
    kubectl_ok(&["delete", "oac", "mine", "-n", &ns.0], None);
    wait_status(&server, "my-client", "second value", 401);
    wait_status(&server, "my-client", "squat", 200);
    wait_condition(&ns.0, "squatter", "Ready", ("True", "Registered"));

    // No secret value ever reached the logs.
    let logs = server.logs().join("\n");
    for s in [
        creds["clientSecret"].as_str(),
        renewed["clientSecret"].as_str(),
        "first value",
        "second value",
        "squat",
    ] {
        assert!(!logs.contains(s), "secret value in logs");
    }
}

#[test]
fn apply_to_first_token_over_fifty_clients() {
    install_crd();
    let ns = Namespace::new("e2e-fifty");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "fifty", dir.path(), &[]);
    wait_ready(&server);
    let mut took = Vec::new();
    for i in 0..50 {
        let name = format!("c{i}");
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: {ns} }}\nstringData: {{ clientSecret: pw-{i} }}\n---\napiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {name}, namespace: {ns} }}\nspec: {{ clientId: id-{i}, secretRef: {{ name: {name} }} }}\n",
            ns = ns.0
        );
        let start = Instant::now();
        apply(&yaml);
        assert!(eventually(Duration::from_secs(10), || token_status(
            &server,
            &format!("id-{i}"),
            &format!("pw-{i}"),
            None
        ) == 200));
        took.push(start.elapsed());
    }
    took.sort();
    let p = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "figure: kubectl apply → first 200 over 50 clients: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        took[took.len() - 1]
    );
    // A sanity bound only: the figure is the result.
    assert!(p(0.5) < Duration::from_secs(5), "p50 {:?}", p(0.5));
}

fn generated_client(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: {name}, namespace: {ns} }}\nspec: {{}}\n"
    )
}

/// The id and secret of a generated client, once its Secret exists.
fn generated_creds(ns: &str, name: &str) -> (String, String) {
    let secret = format!("{name}-credentials");
    let mut data = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            data = secret_data(ns, &secret);
            data.is_some()
        }),
        "{secret} never appeared"
    );
    let data = data.unwrap();
    (data["clientId"].clone(), data["clientSecret"].clone())
}

fn lease_holder(ns: &str) -> Option<String> {
    let out = kubectl(
        &[
            "get",
            "lease",
            "latchkey-leader",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
        .filter(|s| !s.is_empty())
}

#[test]
fn two_replicas_elect_one_writer_and_hand_over() {
    install_crd();
    let ns = Namespace::new("e2e-ha");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_run(&ns.0, "replica-a", da.path(), &[]);
    let b = start_run(&ns.0, "replica-b", db.path(), &[]);
    wait_ready(&a);
    wait_ready(&b);
    let leaders = || {
        [&a, &b]
            .iter()
            .filter(|s| s.metric("latchkey_leader") == Some(1.0))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(20), || leaders() == 1),
        "not exactly one leader"
    );
    let holder = lease_holder(&ns.0).unwrap();
    let (leader, follower) = if holder == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.metric("latchkey_leader"), Some(1.0));
    assert_eq!(follower.metric("latchkey_leader"), Some(0.0));

    apply(&generated_client(&ns.0, "one"));
    let (id1, secret1) = generated_creds(&ns.0, "one");
    wait_status(&leader, &id1, &secret1, 200);
    wait_status(&follower, &id1, &secret1, 200);
    wait_condition(&ns.0, "one", "Ready", ("True", "Registered"));
    assert!(
        leader
            .logs()
            .iter()
            .any(|l| l.contains("credentials written"))
    );
    assert!(
        !follower
            .logs()
            .iter()
            .any(|l| l.contains("credentials written")),
        "the follower wrote"
    );

    // The leader dies without releasing the Lease: the follower takes over within the lease
    // duration, serving tokens all along.
    let follower_id = if holder == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    let killed = Instant::now();
    drop(leader); // SIGKILL
    let mut served = 0;
    let took_over = eventually(Duration::from_secs(15), || {
        assert_eq!(
            token_status(&follower, &id1, &secret1, None),
            200,
            "the follower stopped serving"
        );
        served += 1;
        follower.metric("latchkey_leader") == Some(1.0)
    });
    assert!(took_over, "the follower never took over");
    let takeover = killed.elapsed();
    assert_eq!(lease_holder(&ns.0).as_deref(), Some(follower_id));
    println!(
        "figure: take-over after SIGKILL of the leader: {takeover:?} (lease duration 4s), {served} tokens served meanwhile"
    );
    assert!(takeover < Duration::from_secs(12), "{takeover:?}");

    // The new leader writes.
    apply(&generated_client(&ns.0, "two"));
    let (id2, secret2) = generated_creds(&ns.0, "two");
    wait_status(&follower, &id2, &secret2, 200);
    wait_condition(&ns.0, "two", "Ready", ("True", "Registered"));

    // A graceful stop releases the Lease at once.
    let c = tempfile::tempdir().unwrap();
    let third = start_run(&ns.0, "replica-c", c.path(), &[]);
    wait_ready(&third);
    let stopped = Instant::now();
    assert!(follower.terminate().success());
    assert!(eventually(Duration::from_secs(10), || third
        .metric("latchkey_leader")
        == Some(1.0)));
    println!(
        "figure: take-over after SIGTERM (lease released): {:?}",
        stopped.elapsed()
    );
    wait_status(&third, &id2, &secret2, 200);
}

#[test]
fn a_replica_whose_election_fails_exits() {
    install_crd();
    let ns = Namespace::new("e2e-exit");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "run",
            "--plaintext",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--namespace",
            &ns.0,
            "--namespaces",
            &ns.0,
            "--identity",
            "",
        ])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("identity"), "{stderr}");
}

#[test]
fn an_api_server_outage_keeps_tokens_flowing_and_changes_arrive_after() {
    install_crd();
    let ns = Namespace::new("e2e-outage");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "outage", dir.path(), &[]);
    wait_ready(&server);
    apply(&generated_client(&ns.0, "before"));
    let (id, secret) = generated_creds(&ns.0, "before");
    wait_status(&server, &id, &secret, 200);

    let stopped = stop_apiserver();
    let outage = Instant::now();
    let mut issued = 0;
    while outage.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            token_status(&server, &id, &secret, None),
            200,
            "tokens stopped during the outage"
        );
        issued += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let last_sync = server
        .metric("latchkey_last_sync_timestamp_seconds")
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - last_sync >= 5.0,
        "the sync age metric did not grow during the outage: {}",
        now - last_sync
    );
    assert_eq!(
        server.admin_get("/readyz").status,
        200,
        "a replica with state keeps serving"
    );
    stopped.start();
    let back = Instant::now();
    println!("\nfigure: {issued} tokens issued during an 8 s API server outage");

    // Watches resume: a change made now arrives.
    apply(&generated_client(&ns.0, "after"));
    let (id2, secret2) = generated_creds(&ns.0, "after");
    wait_status(&server, &id2, &secret2, 200);
    println!(
        "\nfigure: a client applied after the API server came back issued tokens {:?} after its return",
        back.elapsed()
    );
    kubectl_ok(&["delete", "oac", "before", "-n", &ns.0], None);
    wait_status(&server, &id, &secret, 401);
}

#[test]
fn two_thousand_clients_all_ready_and_issuing() {
    install_crd();
    let ns = Namespace::new("e2e-2000");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "bulk", dir.path(), &[]);
    wait_ready(&server);
    const N: usize = 2000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    rt.block_on(async {
        use futures::StreamExt;
        let api: kube::Api<latchkey_api::OAuthClient> =
            kube::Api::namespaced(client().await, &ns.0);
        futures::stream::iter(0..N)
            .for_each_concurrent(32, |i| {
                let api = api.clone();
                async move {
                    let spec: latchkey_api::OAuthClientSpec =
                        serde_json::from_value(serde_json::json!({})).unwrap();
                    let oac = latchkey_api::OAuthClient::new(&format!("bulk-{i}"), spec);
                    api.create(&Default::default(), &oac).await.unwrap();
                }
            })
            .await;
    });
    let created = start.elapsed();
    let mut ready = 0;
    let all_ready = eventually(Duration::from_secs(600), || {
        ready = rt.block_on(async {
            let api: kube::Api<latchkey_api::OAuthClient> =
                kube::Api::namespaced(client().await, &ns.0);
            let list = api.list(&Default::default()).await.unwrap();
            list.items
                .iter()
                .filter(|c| {
                    latchkey_operator::status::ready(c.status.as_ref())
                        .is_some_and(|r| r.status == "True")
                })
                .count()
        });
        ready == N
    });
    let to_ready = start.elapsed();
    assert!(all_ready, "only {ready} of {N} became Ready");
    // Every one issues a token with its generated credentials.
    let credentials = generated_credentials(&ns.0);
    assert_eq!(credentials.len(), N);
    let mut conn = server.connect();
    for (id, secret) in &credentials {
        let res = conn.send(&post_token(
            &[("Authorization", &basic(id, secret)), FORM],
            "grant_type=client_credentials",
        ));
        assert_eq!(res.status, 200, "{id}");
    }
    let rss = peak_rss_kib(server.pid());
    println!(
        "figure: {N} OAuthClients created in {created:?}; all Ready in {to_ready:?}; all issuing; latchkey peak RSS {:.1} MiB",
        rss as f64 / 1024.0
    );
}

/// A verifier as gateways run one: it caches the JWKS for its max-age and refetches only
/// when it meets an unknown kid (or the cache is stale).
struct Verifier {
    jwks: serde_json::Value,
    fetched: Instant,
    max_age: Duration,
    unknown_kid_refetches: u64,
}

impl Verifier {
    fn fetch(addr: std::net::SocketAddr) -> (serde_json::Value, Duration) {
        let res =
            Conn::open(addr, None).send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let max_age = res
            .header("cache-control")
            .and_then(|c| c.split("max-age=").nth(1))
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        (res.json(), max_age)
    }

    fn new(addr: std::net::SocketAddr) -> Verifier {
        let (jwks, max_age) = Self::fetch(addr);
        Verifier {
            jwks,
            fetched: Instant::now(),
            max_age,
            unknown_kid_refetches: 0,
        }
    }

    fn has(&self, kid: &str) -> bool {
        self.jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    }

    /// Whether the token verifies.
    fn verify(&mut self, addr: std::net::SocketAddr, token: &str) -> bool {
        if self.fetched.elapsed() > self.max_age {
            (self.jwks, self.max_age) = Self::fetch(addr);
            self.fetched = Instant::now();
        }
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        if !self.has(&kid) {
            self.unknown_kid_refetches += 1;
            (self.jwks, self.max_age) = Self::fetch(addr);
            self.fetched = Instant::now();
        }
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(self.jwks.clone()).unwrap();
        let Some(jwk) = set.find(&kid) else {
            return false;
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::decode_header(token).unwrap().alg);
        v.validate_aud = false;
        v.leeway = 1;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).is_ok()
    }
}

fn keys_ring(ns: &str) -> serde_json::Value {
    let data = secret_data(ns, "latchkey-signing-keys").unwrap();
    serde_json::from_str(&data["keyring.json"]).unwrap()
}

fn count_state(ring: &serde_json::Value, state: &str) -> usize {
    ring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == state)
        .count()
}

#[test]
fn keys_rotate_under_load_without_a_single_verification_failure() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    install_crd();
    let ns = Namespace::new("e2e-rotate");
    let flags = [
        "--rotation-period",
        "4s",
        "--jwks-max-age",
        "1s",
        "--token-lifetime",
        "3s",
        "--clock-skew",
        "1s",
    ];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_run(&ns.0, "rot-a", da.path(), &flags);
    let b = start_run(&ns.0, "rot-b", db.path(), &flags);
    wait_ready(&a);
    wait_ready(&b);
    apply(&generated_client(&ns.0, "load"));
    let (id, secret) = generated_creds(&ns.0, "load");
    wait_status(&a, &id, &secret, 200);
    wait_status(&b, &id, &secret, 200);

    // Continuous load on both replicas; each token is verified at once by a caching
    // verifier, and again near its expiry by another (the retired key must still be there).
    let alive = Arc::new(Mutex::new(vec![a.addr, b.addr]));
    let stop = Arc::new(AtomicBool::new(false));
    let (issued, failures, late_failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let refetches = Arc::new(AtomicU64::new(0));
    let late_queue: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..2 {
        let (alive, stop, issued, failures, refetches, late_queue) = (
            alive.clone(),
            stop.clone(),
            issued.clone(),
            failures.clone(),
            refetches.clone(),
            late_queue.clone(),
        );
        let auth = basic(&id, &secret);
        threads.push(std::thread::spawn(move || {
            let mut verifier = Verifier::new(alive.lock().unwrap()[0]);
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let addrs = alive.lock().unwrap().clone();
                let addr = addrs[i % addrs.len()];
                i += 1;
                let Ok(mut conn) = Conn::try_open(addr, None) else {
                    continue;
                };
                let res = conn.send(&post_token(
                    &[("Authorization", &auth), FORM],
                    "grant_type=client_credentials",
                ));
                if res.status != 200 {
                    continue; // a replica being stopped; the issue is verification, not availability
                }
                issued.fetch_add(1, Ordering::Relaxed);
                let token = res.json()["access_token"].as_str().unwrap().to_owned();
                let verify_at = addrs[(i + 1) % addrs.len()];
                if !verifier.verify(verify_at, &token) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                late_queue
                    .lock()
                    .unwrap()
                    .push((Instant::now() + Duration::from_millis(2500), token));
                std::thread::sleep(Duration::from_millis(20));
            }
            refetches.fetch_add(verifier.unknown_kid_refetches, Ordering::Relaxed);
        }));
    }
    let late_thread = {
        let (alive, stop, late_failures, late_queue) = (
            alive.clone(),
            stop.clone(),
            late_failures.clone(),
            late_queue.clone(),
        );
        std::thread::spawn(move || {
            let mut verifier = Verifier::new(alive.lock().unwrap()[0]);
            let mut checked = 0u64;
            loop {
                let due: Vec<String> = {
                    let mut q = late_queue.lock().unwrap();
                    let now = Instant::now();
                    let (due, rest): (Vec<_>, Vec<_>) = q.drain(..).partition(|(t, _)| *t <= now);
                    *q = rest;
                    due.into_iter().map(|(_, tok)| tok).collect()
                };
                let addr = alive.lock().unwrap()[0];
                for token in due {
                    checked += 1;
                    if !verifier.verify(addr, &token) {
                        late_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if stop.load(Ordering::Relaxed) && late_queue.lock().unwrap().is_empty() {
                    return checked;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Watch the ring: exactly one active key at every look. Stop the leader while a next key
    // waits to be promoted, and check the other replica finishes the rotation.
    let start = Instant::now();
    let mut seen_kids = std::collections::BTreeSet::new();
    let mut killed = false;
    let mut leader = None;
    let (mut a, mut b) = (Some(a), Some(b));
    while start.elapsed() < Duration::from_secs(24) {
        let ring = keys_ring(&ns.0);
        assert_eq!(count_state(&ring, "active"), 1, "ring: {ring}");
        for k in ring["keys"].as_array().unwrap() {
            seen_kids.insert(k["kid"].as_str().unwrap().to_owned());
        }
        if !killed && start.elapsed() > Duration::from_secs(8) && count_state(&ring, "next") == 1 {
            let holder = lease_holder(&ns.0).unwrap();
            let (victim, survivor) = if holder == "rot-a" {
                (a.take().unwrap(), b.as_ref().unwrap())
            } else {
                (b.take().unwrap(), a.as_ref().unwrap())
            };
            alive.lock().unwrap().retain(|addr| *addr != victim.addr);
            drop(victim); // SIGKILL mid-rotation
            killed = true;
            leader = Some(survivor.addr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(killed, "never caught the ring mid-rotation");
    stop.store(true, Ordering::Relaxed);
    let late_checked = late_thread.join().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    let ring = keys_ring(&ns.0);
    assert_eq!(count_state(&ring, "active"), 1);
    let rotations = seen_kids.len() - 1;
    let (issued, failures, late_failures) = (
        issued.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        late_failures.load(Ordering::Relaxed),
    );
    println!(
        "figure: rotation under load (period 4s, JWKS max-age 1s, two replicas, leader SIGKILLed mid-rotation): \
         {issued} tokens issued, {rotations} rotations, {failures} verification failures at issue, \
         {late_failures} failures of {late_checked} re-verified near expiry, {} unknown-kid refetches",
        refetches.load(Ordering::Relaxed)
    );
    assert!(rotations >= 3, "only {rotations} rotations");
    assert_eq!(failures, 0);
    assert_eq!(late_failures, 0);
    assert_eq!(
        refetches.load(Ordering::Relaxed),
        0,
        "a key signed before verifiers could have it"
    );
    assert!(leader.is_some());

    // A stale writer (an old resourceVersion) cannot overwrite a newer key set.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(client().await, &ns.0);
        let old = api.get("latchkey-signing-keys").await.unwrap();
        let old_rv = old.metadata.resource_version.clone().unwrap();
        let old_ring = latchkey_operator::key_secret::read(
            &old,
            &latchkey_core::keyring::KidStrategy::Thumbprint,
        )
        .unwrap();
        let mut newer_rv = old_rv.clone();
        for _ in 0..50 {
            newer_rv = api
                .get("latchkey-signing-keys")
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap();
            if newer_rv != old_rv {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_ne!(newer_rv, old_rv, "the leader never wrote again");
        let err = latchkey_operator::key_secret::replace(
            &api,
            "latchkey-signing-keys",
            &old_ring,
            Default::default(),
            old_rv,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 409),
            "{err}"
        );
    });
}

#[test]
fn keys_cli_rotates_and_revokes_through_the_leader() {
    install_crd();
    let ns = Namespace::new("e2e-keyscli");
    let dir = tempfile::tempdir().unwrap();
    let server = start_run(&ns.0, "cli", dir.path(), &["--jwks-max-age", "1s"]);
    wait_ready(&server);
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("keys")
            .args(args)
            .args(["--namespace", &ns.0, "--wait", "20s"])
            .env("KUBECONFIG", kubeconfig())
            .output()
            .unwrap()
    };
    let first = keys_ring(&ns.0)["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = cli(&["rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The lead is the server's (two 1 s max-ages), stored with the key, although this command
    // runs with the default flags (a 10 min lead).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("next") && stdout.contains("(2s after it was published)"),
        "{stdout}"
    );
    assert!(eventually(Duration::from_secs(15), || {
        keys_ring(&ns.0)["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] != first.as_str() && k["state"] == "active")
    }));
    let out = cli(&["revoke", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("APK's router keeps the JWKS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!keys_ring(&ns.0).to_string().contains(&first));
    let listing = String::from_utf8(cli(&["list"]).stdout).unwrap();
    assert!(
        listing.contains("active") && listing.contains("next rotation due"),
        "{listing}"
    );
    let bad = cli(&["revoke", "no-such-kid"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no key"));
    let events = kubectl_ok(&["get", "events", "-n", &ns.0, "-o", "json"], None);
    assert!(
        events.contains("KeyRevoked") && events.contains("KeyActivated"),
        "no key Events"
    );
    assert!(
        events.contains("restart its router pods"),
        "the KeyRevoked Event says what to do beside APK: {events}"
    );
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains("latchkey_key_revocations_total 1")
            && metrics.contains("latchkey_signing_key_next_activation_timestamp_seconds"),
        "{metrics}"
    );
}
