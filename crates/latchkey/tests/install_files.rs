//! The installation files that need no cluster and no helm: the chart's CRD copy, its version,
//! and the examples. (Rendering and installing the chart: e2e_install.)
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of a file, as JSON values.
fn documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_chart_holds_the_generated_crd() {
    let chart = read("charts/latchkey/crds/oauthclients.latchkey.dev.yaml");
    let generated = read("manifests/crds/oauthclients.latchkey.dev.yaml");
    assert!(
        chart == generated,
        "charts/latchkey/crds differs from manifests/crds: run `make generate`"
    );
}

// Issue 12: the User CRD.
#[test]
fn the_chart_holds_the_generated_user_crd() {
    let chart = read("charts/latchkey/crds/users.latchkey.dev.yaml");
    let generated = read("manifests/crds/users.latchkey.dev.yaml");
    assert!(
        chart == generated,
        "charts/latchkey/crds differs from manifests/crds: run `make generate`"
    );
}

#[test]
fn the_chart_versions_follow_the_workspace() {
    let chart = &documents(&read("charts/latchkey/Chart.yaml"))[0];
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_examples_are_valid_oauth_clients() {
    let dir = root().join("manifests/examples");
    let mut clients = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in documents(&text) {
            if doc["kind"] != "OAuthClient" {
                assert_eq!(doc["kind"], "Secret", "{}", path.display());
                continue;
            }
            let client: latchkey_api::OAuthClient = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            latchkey_api::convert::validate(&client.spec)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            clients += 1;
        }
    }
    assert!(clients >= 5, "only {clients} example clients");
}

/// Every series name Latchkey's metrics endpoint can expose, from its own exposition: a
/// counter's `_total`, a histogram's `_bucket`, `_sum` and `_count`, a gauge's own name.
fn exported_series() -> std::collections::BTreeSet<String> {
    // Labelled families are exposed once they have a sample: give each one.
    let metrics = latchkey_server::Metrics::new();
    metrics.observe_reload("clients", true);
    let hour = std::time::Duration::from_secs(3600);
    let policy = latchkey_core::keyring::RotationPolicy {
        alg: latchkey_core::SigningAlgorithm::EdDSA,
        rsa_bits: 2048,
        kid: latchkey_core::keyring::KidStrategy::Thumbprint,
        rotation_period: hour,
        verifier_cache: hour,
        clock_skew: hour,
        max_token_lifetime: hour,
    };
    let ring =
        latchkey_core::keyring::KeyRing::bootstrap(&policy, std::time::SystemTime::now()).unwrap();
    metrics.observe_key_ring(&ring, &policy);
    let text = metrics.encode();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The `latchkey_…` names a PromQL expression reads.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("latchkey_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_queries_only_metrics_latchkey_exports() {
    let exported = exported_series();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("charts/latchkey/monitoring/dashboard.json")).unwrap();
    let mut used = std::collections::BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{}: {expr}", panel["title"]);
            for name in names {
                assert!(
                    exported.contains(&name),
                    "{}: {name} is not exported",
                    panel["title"]
                );
                used.insert(name);
            }
        }
    }
    // What the issue asks the dashboard to cover.
    for needed in [
        "latchkey_token_requests_total",
        "latchkey_token_request_duration_seconds_bucket",
        "latchkey_clients_loaded",
        "latchkey_signing_key_age_seconds",
        "latchkey_signing_key_next_rotation_timestamp_seconds",
        "latchkey_leader",
        "latchkey_last_sync_timestamp_seconds",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    let ids: std::collections::BTreeSet<u64> =
        panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids repeat");
}

#[test]
fn the_alerts_read_only_metrics_latchkey_exports() {
    let exported = exported_series();
    let rules = &documents(&read("charts/latchkey/monitoring/alerts.yaml"))[0];
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            let names = metrics_in(expr);
            assert!(!names.is_empty(), "{name}: {expr}");
            for metric in names {
                assert!(
                    exported.contains(&metric),
                    "{name}: {metric} is not exported"
                );
            }
            assert!(rule["labels"]["severity"].is_string(), "{name}");
            assert!(rule["annotations"]["summary"].is_string(), "{name}");
            alerts.push(name.to_owned());
        }
    }
    for needed in [
        "LatchkeyNoLeader",
        "LatchkeySyncStale",
        "LatchkeyKeyRotationOverdue",
        "LatchkeyErrorRatioHigh",
    ] {
        assert!(alerts.iter().any(|a| a == needed), "no {needed}");
    }
}

#[test]
fn dashboard_and_alerts_are_off_by_default() {
    let values = &documents(&read("charts/latchkey/values.yaml"))[0];
    assert_eq!(values["grafanaDashboard"]["enabled"], false);
    assert_eq!(values["grafanaDashboard"]["label"], "grafana_dashboard");
    assert_eq!(values["prometheusRule"]["enabled"], false);
    let dashboard = read("charts/latchkey/templates/dashboard.yaml");
    assert!(dashboard.contains(".Files.Get \"monitoring/dashboard.json\""));
    let rule = read("charts/latchkey/templates/prometheusrule.yaml");
    assert!(rule.contains(".Files.Get \"monitoring/alerts.yaml\""));
}
