//! Property tests ("fuzzing without nightly") of reading client manifests: `OAuthClient` and
//! `Secret` YAML through serde_norway into the API types and on to a core client spec. Any
//! input is refused or accepted, never a panic. Cases: `PROPTEST_CASES`.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::Secret;
use latchkey_api::{OAuthClient, client_spec};
use proptest::prelude::*;

const CLIENT: &str = "apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: orders-gateway, namespace: apps }
spec:
  clientId: orders-gateway
  secretRef: { name: orders-gateway-secret, key: clientSecret }
  grantTypes: [client_credentials]
  scopes: [\"orders:read\", \"apk:*\"]
  defaultScopes: [default]
  audience: [orders-api]
  accessTokenLifetime: 1h
  claims: { organization: apps, groups: [a, b] }
  disabled: false
";

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: { name: orders-gateway-secret, namespace: apps }
data: { clientSecret: Y2hhbmdlLW1l }
stringData: { other: change-me }
";

const TOKENS: [&str; 16] = [
    ": ",
    "\n",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "&a ",
    "*a",
    "!!binary ",
    "918273645546372819",
    "~",
    "1h30m",
    "-1s",
];

/// `base` with a few edits: a byte replaced, a YAML token inserted, a run deleted.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6).prop_map(move |edits| {
        let mut v = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at % (v.len() + 1);
            match op {
                0 if i < v.len() => v[i] = byte,
                1 => {
                    let t = TOKENS[byte as usize % TOKENS.len()];
                    v.splice(i..i, t.bytes());
                }
                _ => {
                    let end = (i + byte as usize % 12).min(v.len());
                    v.drain(i..end);
                }
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    })
}

fn read_client(text: &str) {
    if let Ok(client) = serde_norway::from_str::<OAuthClient>(text) {
        let id = client.spec.client_id.clone().unwrap_or_default();
        let digest = latchkey_core::SecretDigest::of(b"secret");
        let _ = client_spec(&client.spec, &id, digest, "fuzz".into());
    }
}

proptest! {
    // No source file to persist failing cases beside (a binary crate's test).
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_as_a_client_never_panics(text in "\\PC{0,400}") {
        read_client(&text);
        let _ = serde_norway::from_str::<Secret>(&text);
    }

    #[test]
    fn a_mutated_client_never_panics(text in mutated(CLIENT)) {
        read_client(&text);
    }

    #[test]
    fn a_mutated_secret_never_panics(text in mutated(SECRET)) {
        if let Ok(secret) = serde_norway::from_str::<Secret>(&text) {
            let _ = latchkey_api::secret_data::value(&secret, "clientSecret");
        }
    }
}
