//! The `OAuthClient` fields of client authentication by assertion (issue 11): a client's own
//! keys for `private_key_jwt` (`jwks` inline or `jwksUri`) and the external issuers it trusts
//! (`federatedIdentities`). Their rules are stated once here, for the CRD (CEL) and for files
//! (`validate`), with the same messages.

use kube::KubeSchema;
use latchkey_core::assertion::{AssertionTrust, FederatedIdentity, ObjectKeyRef, jwks_from_value};
use serde::{Deserialize, Serialize};

use crate::{ApiError, OAuthClientSpec};

/// Longest URL (`jwksUri`, an issuer), in characters.
pub const MAX_URL_LEN: usize = 2048;
/// Longest federated subject or audience, in characters.
pub const MAX_SUBJECT_LEN: usize = 1024;
/// Most federated identities per client.
pub const MAX_FEDERATED: usize = 16;

/// On a URL field: https only (keys fetched over plain HTTP could be anyone's).
pub const HTTPS_URL: &str = "self.startsWith('https://')";
pub const HTTPS_URL_MESSAGE: &str = "must be an https:// URL";
/// On the spec: one source of the client's own keys.
pub const ONE_JWKS_SOURCE: &str = "(has(self.jwks) ? 1 : 0) + (has(self.jwksUri) ? 1 : 0) + \
     (has(self.jwksFrom) ? 1 : 0) <= 1";
pub const ONE_JWKS_SOURCE_MESSAGE: &str =
    "give the client's keys as one of jwks, jwksUri and jwksFrom";
/// On the spec: a client with assertion trust and no Secret has no generated credentials to
/// keep a generated client id in, so it names its id.
pub const SECRETLESS_NEEDS_ID: &str = "has(self.clientId) || has(self.secretRef) || \
     !(has(self.jwks) || has(self.jwksUri) || has(self.jwksFrom) || \
     (has(self.federatedIdentities) && \
     size(self.federatedIdentities) > 0) || (has(self.serviceAccounts) && \
     size(self.serviceAccounts) > 0))";
pub const SECRETLESS_NEEDS_ID_MESSAGE: &str =
    "a client authenticated by assertion without secretRef must set clientId";

/// An external issuer whose tokens for one exact subject authenticate the client (a CI
/// platform such as GitHub Actions, another cluster).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentitySpec {
    /// The issuer (`iss`), an https URL; its keys are found through its OpenID discovery
    /// document unless `jwks` is given.
    #[schemars(length(min = 9, max = MAX_URL_LEN))]
    #[x_kube(validation = kube::core::Rule::new(HTTPS_URL).message(HTTPS_URL_MESSAGE))]
    pub issuer: String,
    /// The exact subject (`sub`) accepted, e.g. `repo:acme/orders:ref:refs/heads/main`.
    #[schemars(length(min = 1, max = MAX_SUBJECT_LEN))]
    pub subject: String,
    /// The audience (`aud`) the token must name. Omitted: one of Latchkey's own audiences
    /// (the issuer or the token endpoint URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_SUBJECT_LEN))]
    pub audience: Option<String>,
    /// The issuer's JWK Set, inline (air-gapped issuers): no discovery then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "jwks_schema")]
    pub jwks: Option<serde_json::Value>,
}

/// A Kubernetes ServiceAccount allowed to act as the client (`latchkey run`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// The ServiceAccount's namespace (a DNS label).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// The ServiceAccount's name (a DNS subdomain name).
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::rules::SECRET_NAME_PATTERN))]
    pub name: String,
}

/// Where a client's JWK Set is kept in the cluster: a key of a Secret or of a ConfigMap in the
/// client's namespace (exactly one).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(ONE_OBJECT).message(ONE_OBJECT_MESSAGE))]
pub struct JwksFrom {
    /// A key of a Secret in the client's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<ObjectKey>,
    /// A key of a ConfigMap in the client's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ObjectKey>,
}

/// A key of a Secret or ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    /// The object's name (a DNS subdomain name).
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::rules::SECRET_NAME_PATTERN))]
    pub name: String,
    /// The key whose value is the JWK Set (JSON).
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::rules::SECRET_KEY_PATTERN))]
    pub key: String,
}

/// On `jwksFrom`: exactly one of the two references.
pub const ONE_OBJECT: &str = "has(self.secretKeyRef) != has(self.configMapKeyRef)";
pub const ONE_OBJECT_MESSAGE: &str = "give exactly one of secretKeyRef and configMapKeyRef";

/// A namespace name: an RFC 1123 DNS label.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Most ServiceAccounts per client.
pub const MAX_SERVICE_ACCOUNTS: usize = 64;

/// A JWK Set object; its keys are checked when the client is loaded.
pub fn jwks_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A JWK Set ({\"keys\": [...]}) of public RSA (2048 bits or more), EC P-256 or Ed25519 keys.",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "description": "The public keys (JWKs).",
                "maxItems": latchkey_core::assertion::MAX_JWKS_KEYS,
                "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
            }
        }
    })
}

/// Whether the spec trusts any assertion.
pub fn has_assertion_trust(spec: &OAuthClientSpec) -> bool {
    spec.jwks.is_some()
        || spec.jwks_uri.is_some()
        || spec.jwks_from.is_some()
        || !spec.federated_identities.is_empty()
        || !spec.service_accounts.is_empty()
}

fn https_url(field: &str, url: &str) -> Result<(), ApiError> {
    if !url.starts_with("https://") || url.len() > MAX_URL_LEN || url.len() < 9 {
        return Err(ApiError::InvalidSpec(format!(
            "{field}: {HTTPS_URL_MESSAGE} of at most {MAX_URL_LEN} characters"
        )));
    }
    Ok(())
}

/// The assertion fields' rules, for documents that never met an API server.
pub fn validate(spec: &OAuthClientSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::InvalidSpec(m));
    let sources = [
        spec.jwks.is_some(),
        spec.jwks_uri.is_some(),
        spec.jwks_from.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return bad(format!("spec: {ONE_JWKS_SOURCE_MESSAGE}"));
    }
    if has_assertion_trust(spec) && spec.client_id.is_none() && spec.secret_ref.is_none() {
        return bad(format!("spec: {SECRETLESS_NEEDS_ID_MESSAGE}"));
    }
    if let Some(uri) = &spec.jwks_uri {
        https_url("spec.jwksUri", uri)?;
    }
    if let Some(name) = &spec.assertion_identity_claim {
        use crate::rules::*;
        if !is_identity_claim(name) {
            let why = if latchkey_core::client::IDENTITY_CLAIM_TAKEN.contains(&name.as_str()) {
                IDENTITY_CLAIM_FREE_MESSAGE.to_owned()
            } else {
                format!(
                    "{name:?} must match {IDENTITY_CLAIM_PATTERN} and be at most \
                     {MAX_IDENTITY_CLAIM_LEN} characters"
                )
            };
            return bad(format!("spec.assertionIdentityClaim: {why}"));
        }
        if spec.claims.contains_key(name) {
            return bad(format!(
                "spec.assertionIdentityClaim: {IDENTITY_CLAIM_NOT_STATIC_MESSAGE}"
            ));
        }
    }
    if let Some(from) = &spec.jwks_from {
        let refs = [&from.secret_key_ref, &from.config_map_key_ref];
        if refs.iter().filter(|r| r.is_some()).count() != 1 {
            return bad(format!("spec.jwksFrom: {ONE_OBJECT_MESSAGE}"));
        }
        for r in refs.into_iter().flatten() {
            if !crate::rules::is_secret_name(&r.name) || !crate::rules::is_secret_key(&r.key) {
                return bad(format!(
                    "spec.jwksFrom: {:?}/{:?} is not an object name and key",
                    r.name, r.key
                ));
            }
        }
    }
    if let Some(j) = &spec.jwks {
        jwks_from_value(j).map_err(|e| ApiError::InvalidSpec(format!("spec.jwks: {e}")))?;
    }
    if spec.federated_identities.len() > MAX_FEDERATED {
        return bad(format!(
            "spec.federatedIdentities: at most {MAX_FEDERATED} entries are allowed"
        ));
    }
    if spec.service_accounts.len() > MAX_SERVICE_ACCOUNTS {
        return bad(format!(
            "spec.serviceAccounts: at most {MAX_SERVICE_ACCOUNTS} entries are allowed"
        ));
    }
    let label = regex_lite_label;
    for (i, sa) in spec.service_accounts.iter().enumerate() {
        if !label(&sa.namespace) {
            return bad(format!(
                "spec.serviceAccounts[{i}].namespace: {:?} is not a namespace name",
                sa.namespace
            ));
        }
        if !crate::rules::is_secret_name(&sa.name) {
            return bad(format!(
                "spec.serviceAccounts[{i}].name: {:?} is not a ServiceAccount name",
                sa.name
            ));
        }
    }
    for (i, f) in spec.federated_identities.iter().enumerate() {
        https_url(&format!("spec.federatedIdentities[{i}].issuer"), &f.issuer)?;
        if f.subject.is_empty() || f.subject.chars().count() > MAX_SUBJECT_LEN {
            return bad(format!(
                "spec.federatedIdentities[{i}].subject: must be 1 to {MAX_SUBJECT_LEN} characters"
            ));
        }
        if f.audience
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.chars().count() > MAX_SUBJECT_LEN)
        {
            return bad(format!(
                "spec.federatedIdentities[{i}].audience: must be 1 to {MAX_SUBJECT_LEN} characters"
            ));
        }
        if let Some(j) = &f.jwks {
            jwks_from_value(j).map_err(|e| {
                ApiError::InvalidSpec(format!("spec.federatedIdentities[{i}].jwks: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Whether `s` is an RFC 1123 DNS label ([`DNS_LABEL_PATTERN`], at most 63 characters).
fn regex_lite_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The core trust of a spec that passed [`validate`], for a client in `namespace`.
pub fn trust(spec: &OAuthClientSpec, namespace: &str) -> Result<AssertionTrust, ApiError> {
    let jwks = |field: &str, v: &serde_json::Value| {
        jwks_from_value(v).map_err(|e| ApiError::InvalidSpec(format!("{field}: {e}")))
    };
    Ok(AssertionTrust {
        jwks: spec
            .jwks
            .as_ref()
            .map(|v| jwks("spec.jwks", v))
            .transpose()?,
        jwks_uri: spec.jwks_uri.clone(),
        federated: spec
            .federated_identities
            .iter()
            .map(|f| {
                Ok(FederatedIdentity {
                    issuer: f.issuer.clone(),
                    subject: f.subject.clone(),
                    audience: f.audience.clone(),
                    jwks: f
                        .jwks
                        .as_ref()
                        .map(|v| jwks("spec.federatedIdentities[].jwks", v))
                        .transpose()?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        service_accounts: spec
            .service_accounts
            .iter()
            .map(|sa| (sa.namespace.clone(), sa.name.clone()))
            .collect(),
        jwks_from: spec.jwks_from.as_ref().and_then(|f| {
            let (kind, r) = match (&f.secret_key_ref, &f.config_map_key_ref) {
                (Some(r), _) => ("Secret", r),
                (None, Some(r)) => ("ConfigMap", r),
                (None, None) => return None,
            };
            Some(ObjectKeyRef {
                kind,
                namespace: namespace.to_owned(),
                name: r.name.clone(),
                key: r.key.clone(),
            })
        }),
        identity_claim: spec.assertion_identity_claim.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> OAuthClientSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    const ED_KEY: &str = r#"{keys: [{kty: OKP, crv: Ed25519, kid: k1, x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    #[test]
    fn a_secretless_client_converts() {
        let spec = parse(&format!(
            "clientId: ci\njwks: {ED_KEY}\nfederatedIdentities:\n- issuer: https://token.actions.githubusercontent.com\n  subject: repo:acme/orders:ref:refs/heads/main\nserviceAccounts: [{{namespace: apps, name: gateway}}]\nassertionIdentityClaim: https://example.com/caller\n"
        ));
        validate(&spec).unwrap();
        let t = trust(&spec, "apps").unwrap();
        assert_eq!(
            t.identity_claim.as_deref(),
            Some("https://example.com/caller")
        );
        assert_eq!(t.jwks.unwrap().keys.len(), 1);
        assert_eq!(
            t.federated[0].subject,
            "repo:acme/orders:ref:refs/heads/main"
        );
    }

    #[test]
    fn broken_assertion_fields_are_named() {
        for (yaml, field) in [
            (
                format!("clientId: c\njwks: {ED_KEY}\njwksUri: https://x/j"),
                "spec:",
            ),
            (format!("jwks: {ED_KEY}"), "spec:"),
            (
                format!(
                    "clientId: c\njwks: {ED_KEY}\njwksFrom: {{configMapKeyRef: {{name: k, key: jwks}}}}"
                ),
                "spec:",
            ),
            ("clientId: c\njwksFrom: {}".into(), "spec.jwksFrom"),
            ("clientId: c\njwksUri: http://x/j".into(), "spec.jwksUri"),
            (
                "clientId: c\njwks: {keys: [{kty: oct, k: AAAA}]}".into(),
                "spec.jwks",
            ),
            (
                "clientId: c\nfederatedIdentities: [{issuer: http://i, subject: s}]".into(),
                "spec.federatedIdentities[0].issuer",
            ),
            (
                "clientId: c\nfederatedIdentities: [{issuer: https://i, subject: ''}]".into(),
                "spec.federatedIdentities[0].subject",
            ),
            (
                "clientId: c\nserviceAccounts: [{namespace: Apps, name: g}]".into(),
                "spec.serviceAccounts[0].namespace",
            ),
            (
                "serviceAccounts: [{namespace: apps, name: g}]".into(),
                "spec:",
            ),
            (
                "clientId: c\nassertionIdentityClaim: client_id".into(),
                "spec.assertionIdentityClaim: iss, sub",
            ),
            (
                "clientId: c\nassertionIdentityClaim: '9x'".into(),
                "spec.assertionIdentityClaim: \"9x\" must match",
            ),
            (
                "clientId: c\nassertionIdentityClaim: tier\nclaims: {tier: gold}".into(),
                "spec.assertionIdentityClaim: assertionIdentityClaim must not",
            ),
        ] {
            let e = validate(&parse(&yaml)).unwrap_err().to_string();
            assert!(e.starts_with(field), "{yaml}: {e}");
        }
    }
}
