//! `OAuthClient` (`latchkey.dev/v1alpha1`, short name `oac`): a client that may obtain tokens.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An OAuth 2.0 client registered with Latchkey.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    plural = "oauthclients",
    shortname = "oac",
    namespaced,
    status = "OAuthClientStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".status.clientId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// The client id. Omitted: a UUID is generated once and kept in the credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Secret (same namespace) holding the client secret. Omitted: the operator creates
    /// Secret "<name>-credentials" with clientId, clientSecret and tokenUrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Grants the client may use.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantTypeName>,
    /// Scopes a request may ask for. "default" is always allowed; a trailing "*" matches
    /// every scope with that prefix.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes a request without `scope` gets; each must be allowed by `scopes`.
    #[serde(default = "default_default_scopes")]
    pub default_scopes: Vec<String>,
    /// Audiences of the client's tokens (the `aud` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Lifetime of the client's tokens, e.g. 15m or 1h. Omitted: the server default (3600s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_lifetime: Option<String>,
    /// Static extra claims added to every token. Registered claim names (iss, sub, aud, exp,
    /// nbf, iat, jti) and clientId, scope are rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "claims_schema")]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// A disabled client keeps its credentials but gets no tokens.
    #[serde(default)]
    pub disabled: bool,
}

/// A key of a Secret in the OAuthClient's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    #[serde(default = "default_secret_key")]
    pub key: String,
}

/// A grant type name.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GrantTypeName {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
}

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// The client id in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Secret holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, plus specific conditions such as SecretResolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_grant_types() -> Vec<GrantTypeName> {
    vec![GrantTypeName::ClientCredentials]
}

fn default_default_scopes() -> Vec<String> {
    vec![latchkey_core::scope::DEFAULT_SCOPE.to_owned()]
}

fn default_secret_key() -> String {
    crate::secret::DEFAULT_SECRET_KEY.to_owned()
}

/// An object whose values may be any JSON: the API server must keep them as written.
fn claims_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true },
    })
}

impl From<GrantTypeName> for latchkey_core::GrantType {
    fn from(g: GrantTypeName) -> Self {
        match g {
            GrantTypeName::ClientCredentials => latchkey_core::GrantType::ClientCredentials,
        }
    }
}
