//! `OAuthClient` (`latchkey.dev/v1alpha1`, short name `oac`): a client that may obtain tokens.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    assertion_spec, auth_method,
    rules::{self, *},
};

/// What the client is and what it may ask for.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    doc = "An OAuth 2.0 client registered with Latchkey: the credentials it authenticates with \
           and what its access tokens contain.",
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
#[x_kube(validation = Rule::new(DEFAULT_SCOPES_ALLOWED)
    .message(DEFAULT_SCOPES_ALLOWED_MESSAGE)
    .field_path(DEFAULT_SCOPES_ALLOWED_FIELD))]
#[x_kube(validation = Rule::new(PREVIOUS_SECRET_KEY_DISTINCT)
    .message(PREVIOUS_SECRET_KEY_DISTINCT_MESSAGE)
    .field_path(PREVIOUS_SECRET_KEY_FIELD))]
// Issue 11: client authentication by assertion.
#[x_kube(validation = Rule::new(assertion_spec::ONE_JWKS_SOURCE)
    .message(assertion_spec::ONE_JWKS_SOURCE_MESSAGE))]
#[x_kube(validation = Rule::new(assertion_spec::SECRETLESS_NEEDS_ID)
    .message(assertion_spec::SECRETLESS_NEEDS_ID_MESSAGE))]
// Issue 12: the token endpoint auth method (public clients).
#[x_kube(validation = Rule::new(auth_method::PUBLIC_NO_SECRET)
    .message(auth_method::PUBLIC_NO_SECRET_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::PUBLIC_NEEDS_ID)
    .message(auth_method::PUBLIC_NEEDS_ID_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::PUBLIC_NEEDS_REDIRECT)
    .message(auth_method::PUBLIC_NEEDS_REDIRECT_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::PUBLIC_GRANTS)
    .message(auth_method::PUBLIC_GRANTS_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::PUBLIC_NO_CREDENTIALS)
    .message(auth_method::PUBLIC_NO_CREDENTIALS_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::SECRET_METHOD_ONLY)
    .message(auth_method::SECRET_METHOD_ONLY_MESSAGE))]
#[x_kube(validation = Rule::new(auth_method::PRIVATE_KEY_JWT_ONLY)
    .message(auth_method::PRIVATE_KEY_JWT_ONLY_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// The client id: printable ASCII (spaces and ':' included), at most 256 characters. Omitted:
    /// a UUID is generated once and kept in the credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_CLIENT_ID_LEN), regex(pattern = CLIENT_ID_PATTERN))]
    pub client_id: Option<String>,
    /// The Secret (same namespace) holding the client secret. Omitted: the operator creates
    /// Secret "<name>-credentials" with clientId, clientSecret and tokenUrl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Grants the client may use.
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<GrantTypeName>,
    /// Scopes a request may ask for (RFC 6749 scope tokens: printable ASCII without spaces,
    /// '"' or '\'). "default" is always allowed; an entry ending in "*" allows every scope
    /// that starts with what precedes the "*" and is longer.
    #[serde(default)]
    #[schemars(
        length(max = MAX_SCOPES),
        inner(length(max = MAX_SCOPE_LEN), regex(pattern = SCOPE_PATTERN)),
        transform = scope_items
    )]
    pub scopes: Vec<String>,
    /// Scopes a request without `scope` gets: plain scope names, each allowed by `scopes`.
    #[serde(default = "default_default_scopes")]
    #[schemars(
        length(max = MAX_DEFAULT_SCOPES),
        inner(length(max = MAX_SCOPE_LEN), regex(pattern = SCOPE_PATTERN)),
        transform = default_scope_items
    )]
    pub default_scopes: Vec<String>,
    /// Audiences of the client's tokens (the `aud` claim: one entry is a string, more are an
    /// array).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_AUDIENCES),
        inner(length(min = 1, max = MAX_AUDIENCE_LEN))
    )]
    pub audience: Vec<String>,
    /// Lifetime of the client's tokens in whole hours, minutes and seconds (e.g. 15m, 1h,
    /// 1h30m), from 1s to 24h. Omitted: the server default (3600s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_DURATION_LEN), regex(pattern = crate::duration::PATTERN))]
    #[x_kube(validation = Rule::new(LIFETIME_RANGE).message(LIFETIME_RANGE_MESSAGE))]
    pub access_token_lifetime: Option<String>,
    /// Static extra claims added to every token, any JSON values. A claim name must not be
    /// empty, and iss, sub, aud, exp, nbf, iat, jti, clientId and scope are set by Latchkey
    /// and rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "claims_schema")]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// A disabled client keeps its credentials but gets no tokens.
    #[serde(default)]
    pub disabled: bool,
    // Issue 11: client authentication by assertion.
    /// private_key_jwt: the client's public keys as an inline JWK Set. The client then
    /// authenticates with a JWT it signs (iss = sub = client id). At most one of jwks and
    /// jwksUri.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "assertion_spec::jwks_schema")]
    pub jwks: Option<serde_json::Value>,
    /// private_key_jwt: an https URL where the client publishes its JWK Set (fetched and
    /// cached by Latchkey, refetched when an assertion names an unknown key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = assertion_spec::MAX_URL_LEN))]
    #[x_kube(validation = Rule::new(assertion_spec::HTTPS_URL).message(assertion_spec::HTTPS_URL_MESSAGE))]
    pub jwks_uri: Option<String>,
    /// External issuers (a CI platform, another cluster) whose tokens for an exact subject
    /// authenticate the client; `client_id` must then be sent with the assertion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = assertion_spec::MAX_FEDERATED))]
    pub federated_identities: Vec<assertion_spec::FederatedIdentitySpec>,
    /// Kubernetes ServiceAccounts whose projected tokens authenticate the client
    /// (`latchkey run`); `client_id` must then be sent with the token as client_assertion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = assertion_spec::MAX_SERVICE_ACCOUNTS))]
    pub service_accounts: Vec<assertion_spec::ServiceAccountRef>,
    /// private_key_jwt (`latchkey run`): the client's JWK Set in a key of a Secret or
    /// ConfigMap in its namespace; read when first needed, again when an assertion names an
    /// unknown key, and at least every minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_from: Option<assertion_spec::JwksFrom>,
    /// A claim that names the caller in tokens issued on a ServiceAccount or federated
    /// assertion: `system:serviceaccount:<namespace>:<name>` for a ServiceAccount,
    /// `<issuer>#<subject>` for a federated identity (private_key_jwt adds nothing: the
    /// caller is the client). Omitted: tokens carry the contract's claims only. Not one of
    /// iss, sub, aud, exp, nbf, iat, jti, scope, clientId, client_id, organization, groups,
    /// azp or the static claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = MAX_IDENTITY_CLAIM_LEN),
        regex(pattern = IDENTITY_CLAIM_PATTERN)
    )]
    #[x_kube(validation = Rule::new(IDENTITY_CLAIM_FREE).message(IDENTITY_CLAIM_FREE_MESSAGE))]
    pub assertion_identity_claim: Option<String>,
    // Issue 13: secret rotation with a grace period.
    /// A previous client secret that is still accepted until `expiresAt`, so a secret rotates
    /// without downtime: it is read from the same Secret as the current one, under `key`.
    /// `latchkey clients rotate-secret` sets it for generated credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Issue 13: the client may call the introspection endpoint (RFC 7662), authenticating as
    /// at the token endpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub introspection: bool,
    // Issue 12: browser clients.
    /// Where the authorization endpoint may send a signed-in user back, compared character
    /// for character: https, or http to 127.0.0.1 or [::1]; no user info, no fragment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_REDIRECT_URIS),
        inner(length(min = 1, max = MAX_REDIRECT_URI_LEN), regex(pattern = REDIRECT_URI_PATTERN))
    )]
    pub redirect_uris: Vec<String>,
    /// Where logout may send the user back, compared character for character; the same
    /// rules as redirectUris.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_REDIRECT_URIS),
        inner(length(min = 1, max = MAX_REDIRECT_URI_LEN), regex(pattern = REDIRECT_URI_PATTERN))
    )]
    pub post_logout_redirect_uris: Vec<String>,
    /// A first-party client signs users in without showing them a consent page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_party: bool,
    /// Organizations whose users may sign in to this client. Omitted: users of any
    /// organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = crate::user_rules::MAX_ORGANIZATIONS),
        inner(
            length(min = 1, max = crate::user_rules::MAX_NAME_LEN),
            regex(pattern = crate::user_rules::NAME_PATTERN)
        )
    )]
    pub allowed_organizations: Vec<String>,
    /// The one method the client authenticates with at the token endpoint (RFC 7591):
    /// client_secret_basic, client_secret_post, private_key_jwt, or none for a public client
    /// (a browser or native app: no secret, client_id alone, PKCE S256 required, only the
    /// authorization_code and refresh_token grants). Omitted: whatever the client has
    /// credentials for (its secret by HTTP Basic or the form, or an assertion it trusts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<auth_method::TokenEndpointAuthMethodName>,
}

// Issue 13: secret rotation with a grace period.
/// The previous client secret of a rotation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    /// Key of the previous secret in the client's Secret (the one `secretRef` names, or the
    /// generated one); it must differ from the current secret's key.
    #[serde(default = "default_previous_secret_key")]
    #[schemars(length(max = MAX_SECRET_KEY_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
    /// When the previous secret stops being accepted (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    pub expires_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

fn default_previous_secret_key() -> String {
    crate::secret_data::PREVIOUS_SECRET_KEY.to_owned()
}

/// A key of a Secret in the OAuthClient's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (a DNS subdomain name).
    #[schemars(length(max = MAX_SECRET_NAME_LEN), regex(pattern = SECRET_NAME_PATTERN))]
    pub name: String,
    /// Key within the Secret's data.
    #[serde(default = "default_secret_key")]
    #[schemars(length(max = MAX_SECRET_KEY_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// A grant type name.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GrantTypeName {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    // Issue 12: people sign in (the client needs redirectUris).
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
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
    // Issue 13: secret rotation with a grace period.
    /// When the previous secret stops being accepted, while `spec.previousSecret` is set and
    /// its key is in the Secret (condition PreviousSecretAccepted says whether it still is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

fn default_grant_types() -> Vec<GrantTypeName> {
    vec![GrantTypeName::ClientCredentials]
}

fn default_default_scopes() -> Vec<String> {
    vec![latchkey_core::scope::DEFAULT_SCOPE.to_owned()]
}

fn default_secret_key() -> String {
    crate::secret_data::DEFAULT_SECRET_KEY.to_owned()
}

/// An object whose values may be any JSON: the API server keeps unknown fields as written.
/// CEL gets no type for a map of untyped values, so the reserved names are declared as
/// (string) properties, which CEL can test with `has()`; the empty name, which CEL cannot
/// name, is refused with OpenAPI (`not: {required: [""]}`).
fn claims_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let reserved = latchkey_core::client::RESERVED_CLAIMS;
    let properties: serde_json::Map<String, serde_json::Value> = reserved
        .iter()
        .map(|name| {
            let description = "Set by Latchkey: not allowed as a static claim.";
            (
                name.to_string(),
                serde_json::json!({ "type": "string", "description": description }),
            )
        })
        .collect();
    let rule = reserved
        .iter()
        .map(|n| format!("!has(self.{n})"))
        .collect::<Vec<_>>()
        .join(" && ");
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": properties,
        "x-kubernetes-validations": [{ "rule": rule, "message": rules::RESERVED_CLAIMS_MESSAGE }],
        "not": { "required": [""] },
    })
}

/// Adds CEL rules to the `items` of an array schema.
fn item_rules(schema: &mut schemars::Schema, rules: &[(&str, &str)]) {
    let Some(items) = schema.get_mut("items").and_then(|i| i.as_object_mut()) else {
        return;
    };
    let rules = rules
        .iter()
        .map(|(rule, message)| serde_json::json!({ "rule": rule, "message": message }))
        .collect();
    items.insert(
        "x-kubernetes-validations".to_owned(),
        serde_json::Value::Array(rules),
    );
}

fn scope_items(schema: &mut schemars::Schema) {
    item_rules(schema, &[(SCOPE_STAR_LAST, SCOPE_STAR_LAST_MESSAGE)]);
}

fn default_scope_items(schema: &mut schemars::Schema) {
    item_rules(
        schema,
        &[(rules::DEFAULT_SCOPE_PLAIN, DEFAULT_SCOPE_PLAIN_MESSAGE)],
    );
}

impl From<GrantTypeName> for latchkey_core::GrantType {
    fn from(g: GrantTypeName) -> Self {
        match g {
            GrantTypeName::ClientCredentials => latchkey_core::GrantType::ClientCredentials,
            GrantTypeName::AuthorizationCode => latchkey_core::GrantType::AuthorizationCode,
            GrantTypeName::RefreshToken => latchkey_core::GrantType::RefreshToken,
        }
    }
}
