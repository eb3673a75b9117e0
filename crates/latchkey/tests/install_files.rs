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
