//! Issue 13: a registration as a resource: the `OAuthClient` (named `dcr-<client_id>`,
//! labelled `latchkey.dev/registered`, annotated with what RFC 7591 metadata the spec has no
//! field for) and its credentials `Secret`, built from checked metadata and read back into the
//! answer's members. Both stores use it: files standalone, the API server in a cluster.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use latchkey_api::{
    OAuthClient, SecretKeyRef,
    registration::{self, AuthMethod, ClientMetadata},
    secret_data,
};
use latchkey_server::register::RegistrarError;
use serde_json::{Map, Value};

/// Label on every registered client.
pub const REGISTERED_LABEL: &str = "latchkey.dev/registered";
/// Annotations a registration keeps on its `OAuthClient`.
pub const CLIENT_NAME_ANNOTATION: &str = "latchkey.dev/client-name";
pub const AUTH_METHOD_ANNOTATION: &str = "latchkey.dev/token-endpoint-auth-method";
pub const TOKEN_DIGEST_ANNOTATION: &str = "latchkey.dev/registration-token-sha256";
pub const ISSUED_AT_ANNOTATION: &str = "latchkey.dev/client-id-issued-at";

/// A registration as stored.
pub(crate) struct Stored {
    pub client: OAuthClient,
    pub secret: Secret,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> RegistrarError {
    RegistrarError::Unavailable(e.to_string())
}

pub(crate) fn metadata_error(e: registration::MetadataError) -> RegistrarError {
    RegistrarError::Metadata {
        code: e.code.as_str(),
        description: e.description,
    }
}

fn bad(description: &str) -> RegistrarError {
    RegistrarError::Metadata {
        code: "invalid_client_metadata",
        description: description.to_owned(),
    }
}

pub(crate) fn name_of(client_id: &str) -> String {
    format!("dcr-{client_id}")
}

pub(crate) fn annotation<'a>(client: &'a OAuthClient, key: &str) -> Option<&'a str> {
    client
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The answer's members for a stored registration: the resource as it is now (an edit of the
/// file wins over what was registered).
pub(crate) fn members(stored: &Stored) -> Map<String, Value> {
    let client = &stored.client;
    let metadata = ClientMetadata {
        client_name: annotation(client, CLIENT_NAME_ANNOTATION).map(str::to_owned),
        scopes: client.spec.scopes.clone(),
        grant_types: client.spec.grant_types.clone(),
        token_endpoint_auth_method: annotation(client, AUTH_METHOD_ANNOTATION)
            .and_then(AuthMethod::parse)
            .unwrap_or_default(),
    };
    let mut out = Map::new();
    if let Some(id) = &client.spec.client_id {
        out.insert("client_id".into(), id.clone().into());
    }
    let key = client
        .spec
        .secret_ref
        .as_ref()
        .map_or(secret_data::DEFAULT_SECRET_KEY, |r| r.key.as_str());
    if let Some(secret) = secret_data::value(&stored.secret, key)
        && let Ok(secret) = String::from_utf8(secret)
    {
        out.insert("client_secret".into(), secret.into());
    }
    if let Some(at) = annotation(client, ISSUED_AT_ANNOTATION).and_then(|a| a.parse::<u64>().ok()) {
        out.insert("client_id_issued_at".into(), at.into());
    }
    out.insert("client_secret_expires_at".into(), 0.into());
    out.extend(metadata.to_json());
    out
}

/// The resource of a registration with `metadata` (over `previous`, whose other spec fields
/// and annotations an admin may have set, and are kept).
pub(crate) fn build(
    namespace: &str,
    client_id: &str,
    metadata: &ClientMetadata,
    secret: &str,
    token_digest: &str,
    issued_at: u64,
    previous: Option<&OAuthClient>,
) -> Stored {
    let name = name_of(client_id);
    let secret_name = format!("{name}-credentials");
    let mut spec = previous.map(|p| p.spec.clone()).unwrap_or_else(|| {
        let mut s = metadata.to_spec(client_id);
        s.secret_ref = Some(SecretKeyRef {
            name: secret_name.clone(),
            key: secret_data::DEFAULT_SECRET_KEY.into(),
        });
        s
    });
    spec.scopes = metadata.scopes.clone();
    spec.grant_types = metadata.grant_types.clone();
    let mut annotations = previous
        .and_then(|p| p.metadata.annotations.clone())
        .unwrap_or_default();
    match &metadata.client_name {
        Some(n) => annotations.insert(CLIENT_NAME_ANNOTATION.into(), n.clone()),
        None => annotations.remove(CLIENT_NAME_ANNOTATION),
    };
    annotations.insert(
        AUTH_METHOD_ANNOTATION.into(),
        metadata.token_endpoint_auth_method.as_str().into(),
    );
    annotations.insert(TOKEN_DIGEST_ANNOTATION.into(), token_digest.into());
    annotations.insert(ISSUED_AT_ANNOTATION.into(), issued_at.to_string());
    let mut labels = previous
        .and_then(|p| p.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(REGISTERED_LABEL.into(), "true".into());
    let mut client = OAuthClient::new(&name, spec);
    client.metadata = ObjectMeta {
        name: Some(name),
        namespace: Some(
            previous
                .and_then(|p| p.metadata.namespace.clone())
                .unwrap_or_else(|| namespace.into()),
        ),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    let secret_ref = client.spec.secret_ref.clone();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_ref.as_ref().map_or(secret_name, |r| r.name.clone())),
            namespace: client.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(REGISTERED_LABEL.into(), "true".into())])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(
            secret_ref.map_or(secret_data::DEFAULT_SECRET_KEY.into(), |r| r.key),
            secret.to_owned(),
        )])),
        ..Secret::default()
    };
    Stored { client, secret }
}

/// The metadata members of a management PUT: RFC 7592 §2.2 repeats `client_id` (it must
/// match) and may repeat `client_secret` (it must match; omitted, the secret rotates).
/// Returns the members to check and whether the secret is kept.
pub(crate) fn update_members(
    body: &[u8],
    client_id: &str,
    current_secret: Option<&str>,
) -> Result<(Map<String, Value>, bool), RegistrarError> {
    if body.len() > registration::MAX_METADATA_BYTES {
        return Err(bad("the request body is too large"));
    }
    let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("the request body is not a JSON object"));
    };
    if members.remove("client_id").as_ref().and_then(Value::as_str) != Some(client_id) {
        return Err(bad("client_id: must be present and name this registration"));
    }
    let keep = match members.remove("client_secret") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => {
            let same = current_secret.is_some_and(|c| {
                use subtle::ConstantTimeEq;
                bool::from(c.as_bytes().ct_eq(s.as_bytes()))
            });
            if !same {
                return Err(bad(
                    "client_secret: must be the current secret, or omitted to get a new one",
                ));
            }
            true
        }
        Some(_) => return Err(bad("client_secret: must be a string")),
    };
    for server_set in [
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
        "client_secret_expires_at",
    ] {
        members.remove(server_set);
    }
    Ok((members, keep))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_update_names_its_client_and_repeats_the_secret_or_rotates_it() {
        let id = "x";
        let ok = |body: Value| update_members(body.to_string().as_bytes(), id, Some("s"));
        let (m, keep) =
            ok(serde_json::json!({"client_id": "x", "client_secret": "s", "scope": "a"})).unwrap();
        assert!(keep);
        assert_eq!(m.get("scope").unwrap(), "a");
        assert!(!m.contains_key("client_id"));
        let (_, keep) = ok(serde_json::json!({"client_id": "x"})).unwrap();
        assert!(!keep);
        assert!(ok(serde_json::json!({"client_id": "y"})).is_err());
        assert!(ok(serde_json::json!({})).is_err());
        assert!(ok(serde_json::json!({"client_id": "x", "client_secret": "t"})).is_err());
        assert!(update_members(b"[]", id, None).is_err());
    }
}
