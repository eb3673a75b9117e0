//! Client metadata of dynamic client registration (RFC 7591 §2), checked once here so that the
//! registration endpoint and its management API (RFC 7592) refuse exactly what an
//! `OAuthClient` could not express, with RFC 7591 §3.2.2 error codes and a description that
//! names the field at fault.
//!
//! What is refused rather than dropped: a client that asks for something and silently gets
//! less would fail later and far from the cause. Informational members (`client_uri`,
//! `logo_uri`, `contacts`, `tos_uri`, `policy_uri`, `software_id`, `software_version`) and
//! members this server does not know are ignored, as §2 asks; the answer lists only what was
//! kept, which is how a client learns that (§3.2.1).

use serde_json::{Map, Value};

use latchkey_core::scope::{DEFAULT_SCOPE, is_scope_token};

use crate::{
    OAuthClientSpec,
    rules::{MAX_REDIRECT_URIS, MAX_SCOPE_LEN, MAX_SCOPES, REDIRECT_URI_MESSAGE, is_redirect_uri},
    types::GrantTypeName,
};

/// Largest registration request body, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `client_name`, in characters.
pub const MAX_CLIENT_NAME_LEN: usize = 256;

/// RFC 7591 §3.2.2 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataErrorCode {
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
}

impl MetadataErrorCode {
    /// The `error` member of the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            MetadataErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            MetadataErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
        }
    }
}

/// Why metadata was refused. The description never echoes a value the caller sent except
/// scope tokens and grant/method names, which are within the `error_description` charset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct MetadataError {
    pub code: MetadataErrorCode,
    pub description: String,
}

fn metadata(description: impl Into<String>) -> MetadataError {
    MetadataError {
        code: MetadataErrorCode::InvalidClientMetadata,
        description: description.into(),
    }
}

fn redirect(description: impl Into<String>) -> MetadataError {
    MetadataError {
        code: MetadataErrorCode::InvalidRedirectUri,
        description: description.into(),
    }
}

/// How a registered client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }

    /// The method named `name`, if this server supports it for registered clients.
    pub fn parse(name: &str) -> Option<AuthMethod> {
        match name {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            _ => None,
        }
    }
}

/// What the operator of this server lets registered clients have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    /// Scope entries a registered client may hold, with the CRD's meaning (an entry ending in
    /// `*` allows longer scopes with that prefix). Empty: only `default`.
    pub scope_cap: Vec<String>,
    /// Grant types a registered client may hold.
    pub grant_types: Vec<GrantTypeName>,
}

impl Default for RegistrationPolicy {
    /// The cautious default: `client_credentials` with the `default` scope only.
    fn default() -> Self {
        RegistrationPolicy {
            scope_cap: Vec::new(),
            grant_types: vec![GrantTypeName::ClientCredentials],
        }
    }
}

impl RegistrationPolicy {
    /// Whether a requested scope entry (plain, or a `p*` pattern) stays within the cap.
    fn allows(&self, entry: &str) -> bool {
        if entry == DEFAULT_SCOPE {
            return true;
        }
        let (stem, pattern) = match entry.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (entry, false),
        };
        self.scope_cap
            .iter()
            .any(|cap| match cap.strip_suffix('*') {
                // A pattern is within `q*` when every scope it allows starts with `q` and is
                // longer: so its stem starts with `q`; a plain scope must be longer than `q`.
                Some(q) => stem.starts_with(q) && (pattern || stem.len() > q.len()),
                None => cap == entry,
            })
    }
}

/// Validated client metadata: what a registration stores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientMetadata {
    pub client_name: Option<String>,
    /// Scope entries, in request order without duplicates; `default` is implied and not
    /// listed.
    pub scopes: Vec<String>,
    pub grant_types: Vec<GrantTypeName>,
    pub token_endpoint_auth_method: AuthMethod,
}

/// Parse and check a registration request body (RFC 7591 §3.1: a JSON object).
pub fn parse(body: &[u8], policy: &RegistrationPolicy) -> Result<ClientMetadata, MetadataError> {
    if body.len() > MAX_METADATA_BYTES {
        return Err(metadata(format!(
            "the request body exceeds {MAX_METADATA_BYTES} bytes"
        )));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| metadata("the request body is not a JSON object"))?;
    let Value::Object(members) = value else {
        return Err(metadata("the request body is not a JSON object"));
    };
    check(&members, policy)
}

/// Check metadata members already parsed as a JSON object.
pub fn check(
    members: &Map<String, Value>,
    policy: &RegistrationPolicy,
) -> Result<ClientMetadata, MetadataError> {
    if members.contains_key("software_statement") {
        return Err(MetadataError {
            code: MetadataErrorCode::InvalidSoftwareStatement,
            description: "software statements are not accepted by this server".into(),
        });
    }
    for key in ["jwks", "jwks_uri"] {
        if members.get(key).is_some_and(|v| !v.is_null()) {
            return Err(metadata(format!(
                "{key}: client keys are not supported yet (registered clients authenticate \
                 with a client secret: client_secret_basic or client_secret_post)"
            )));
        }
    }

    let grant_types = grant_types(members, policy)?;
    if let Some(types) = string_list(members, "response_types")?
        && !types.is_empty()
    {
        return Err(metadata(
            "response_types: registration creates client_credentials clients only, which use \
             no response type; a client that signs people in is an OAuthClient",
        ));
    }
    if let Some(uris) = string_list(members, "redirect_uris")? {
        check_redirect_uris(&uris)?;
        if !uris.is_empty() {
            return Err(redirect(
                "redirect_uris: registration creates client_credentials clients only; a client \
                 that signs people in (authorization_code) is an OAuthClient with redirectUris",
            ));
        }
    }
    let token_endpoint_auth_method = match string(members, "token_endpoint_auth_method")? {
        None => AuthMethod::default(),
        Some(name) => AuthMethod::parse(name).ok_or_else(|| {
            metadata(format!(
                "token_endpoint_auth_method: {} is not supported; use client_secret_basic or \
                 client_secret_post",
                printable(name)
            ))
        })?,
    };
    let client_name = match string(members, "client_name")? {
        None => None,
        Some(name) => {
            if name.chars().count() > MAX_CLIENT_NAME_LEN || name.chars().any(char::is_control) {
                return Err(metadata(format!(
                    "client_name: must be at most {MAX_CLIENT_NAME_LEN} characters without \
                     control characters"
                )));
            }
            Some(name.to_owned()).filter(|n| !n.is_empty())
        }
    };
    let scopes = match string(members, "scope")? {
        None => Vec::new(),
        Some(scope) => scopes(scope, policy)?,
    };
    Ok(ClientMetadata {
        client_name,
        scopes,
        grant_types,
        token_endpoint_auth_method,
    })
}

fn grant_types(
    members: &Map<String, Value>,
    policy: &RegistrationPolicy,
) -> Result<Vec<GrantTypeName>, MetadataError> {
    // RFC 7591 §2 defaults to authorization_code; a registration here only makes sense for
    // the grant this server offers, so an absent list means client_credentials.
    let names = string_list(members, "grant_types")?.unwrap_or_else(|| vec!["client_credentials"]);
    if names.is_empty() {
        return Err(metadata("grant_types: must name at least one grant type"));
    }
    let mut out = Vec::new();
    for name in names {
        let grant = match name {
            "client_credentials" => GrantTypeName::ClientCredentials,
            other => {
                return Err(metadata(format!(
                    "grant_types: {} is not supported; registered clients may use \
                     client_credentials",
                    printable(other)
                )));
            }
        };
        if !policy.grant_types.contains(&grant) {
            return Err(metadata(format!(
                "grant_types: {name} is not allowed for registered clients on this server"
            )));
        }
        if !out.contains(&grant) {
            out.push(grant);
        }
    }
    Ok(out)
}

fn scopes(scope: &str, policy: &RegistrationPolicy) -> Result<Vec<String>, MetadataError> {
    let mut out: Vec<String> = Vec::new();
    if scope.is_empty() {
        return Ok(out);
    }
    for entry in scope.split(' ') {
        if entry.is_empty() {
            return Err(metadata(
                "scope: scopes must be separated by exactly one space",
            ));
        }
        if !is_scope_token(entry) || entry.len() > MAX_SCOPE_LEN {
            return Err(metadata(format!(
                "scope: each scope is 1 to {MAX_SCOPE_LEN} printable ASCII characters without \
                 space, double quote or backslash"
            )));
        }
        if entry.find('*').is_some_and(|i| i != entry.len() - 1) {
            return Err(metadata(
                "scope: '*' is only allowed as the last character of a scope",
            ));
        }
        if !policy.allows(entry) {
            return Err(metadata(format!(
                "scope: {entry} is not allowed for registered clients on this server"
            )));
        }
        if entry != DEFAULT_SCOPE && !out.iter().any(|s| s == entry) {
            out.push(entry.to_owned());
        }
    }
    if out.len() > MAX_SCOPES {
        return Err(metadata(format!("scope: at most {MAX_SCOPES} scopes")));
    }
    Ok(out)
}

/// The same rule as an `OAuthClient`'s `redirectUris` (`rules::is_redirect_uri`: exact,
/// `https`, or `http` to a loopback IP literal), so a refusal names the real problem first.
pub fn check_redirect_uris(uris: &[&str]) -> Result<(), MetadataError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(redirect(format!(
            "redirect_uris: at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    match uris.iter().position(|uri| !is_redirect_uri(uri)) {
        Some(i) => Err(redirect(format!(
            "redirect_uris[{i}]: {REDIRECT_URI_MESSAGE}"
        ))),
        None => Ok(()),
    }
}

fn string<'a>(
    members: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, MetadataError> {
    match members.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata(format!("{key}: must be a string"))),
    }
}

fn string_list<'a>(
    members: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<&'a str>>, MetadataError> {
    let not_list = || metadata(format!("{key}: must be an array of strings"));
    match members.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(not_list))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(not_list()),
    }
}

/// A caller's value, named in a description only when it is short plain ASCII.
fn printable(value: &str) -> String {
    let plain = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
    if plain {
        value.to_owned()
    } else {
        "the given value".to_owned()
    }
}

impl ClientMetadata {
    /// The `OAuthClient` spec of a registered client; its client id is the registration's.
    pub fn to_spec(&self, client_id: &str) -> OAuthClientSpec {
        OAuthClientSpec {
            client_id: Some(client_id.to_owned()),
            grant_types: self.grant_types.clone(),
            scopes: self.scopes.clone(),
            default_scopes: vec![DEFAULT_SCOPE.to_owned()],
            ..OAuthClientSpec::default()
        }
    }

    /// The metadata members of a registration answer (RFC 7591 §3.2.1), as stored.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(name) = &self.client_name {
            out.insert("client_name".into(), name.clone().into());
        }
        let grants: Vec<Value> = self
            .grant_types
            .iter()
            .map(|g| match g {
                GrantTypeName::ClientCredentials => "client_credentials".into(),
                GrantTypeName::AuthorizationCode => "authorization_code".into(),
                GrantTypeName::RefreshToken => "refresh_token".into(),
            })
            .collect();
        out.insert("grant_types".into(), grants.into());
        out.insert("response_types".into(), Vec::<Value>::new().into());
        out.insert(
            "token_endpoint_auth_method".into(),
            self.token_endpoint_auth_method.as_str().into(),
        );
        let mut scope = vec![DEFAULT_SCOPE];
        scope.extend(self.scopes.iter().map(String::as_str));
        out.insert("scope".into(), scope.join(" ").into());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cap(entries: &[&str]) -> RegistrationPolicy {
        RegistrationPolicy {
            scope_cap: entries.iter().map(|s| s.to_string()).collect(),
            ..RegistrationPolicy::default()
        }
    }

    fn run(body: Value, policy: &RegistrationPolicy) -> Result<ClientMetadata, MetadataError> {
        parse(body.to_string().as_bytes(), policy)
    }

    fn refused(body: Value, policy: &RegistrationPolicy) -> MetadataError {
        match run(body.clone(), policy) {
            Ok(m) => panic!("{body} was accepted as {m:?}"),
            Err(e) => {
                // RFC 7591 §3.2.2 descriptions keep RFC 6749's charset.
                assert!(
                    e.description
                        .bytes()
                        .all(latchkey_core::oauth::is_description_byte),
                    "{e}"
                );
                e
            }
        }
    }

    #[test]
    fn an_empty_object_is_a_client_credentials_client_with_the_default_scope() {
        let m = run(json!({}), &RegistrationPolicy::default()).unwrap();
        assert_eq!(m.grant_types, vec![GrantTypeName::ClientCredentials]);
        assert_eq!(m.scopes, Vec::<String>::new());
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        let answer = m.to_json();
        assert_eq!(answer["scope"], "default");
        assert_eq!(answer["grant_types"], json!(["client_credentials"]));
        assert_eq!(answer["token_endpoint_auth_method"], "client_secret_basic");
        assert!(!answer.contains_key("client_name"));
    }

    #[test]
    fn full_metadata_becomes_a_valid_spec() {
        let policy = cap(&["orders:*", "billing"]);
        let m = run(
            json!({
                "client_name": "Orders gateway",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_post",
                "scope": "orders:read default orders:read billing orders:*",
                "client_uri": "https://example.com",
                "contacts": ["ops@example.com"],
                "x-unknown": {"ignored": true},
                "redirect_uris": []
            }),
            &policy,
        )
        .unwrap();
        assert_eq!(m.client_name.as_deref(), Some("Orders gateway"));
        assert_eq!(m.scopes, ["orders:read", "billing", "orders:*"]);
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretPost);
        let spec = m.to_spec("dcr-1");
        crate::convert::validate(&spec).unwrap();
        assert_eq!(spec.client_id.as_deref(), Some("dcr-1"));
        assert_eq!(spec.default_scopes, ["default"]);
        assert_eq!(m.to_json()["scope"], "default orders:read billing orders:*");
    }

    #[test]
    fn bodies_that_are_not_json_objects_or_too_large_are_refused() {
        let p = RegistrationPolicy::default();
        for body in [&b"[]"[..], b"\"x\"", b"{", b"", b"null"] {
            let e = parse(body, &p).unwrap_err();
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
        }
        let big = format!("{{\"client_name\":\"{}\"}}", "a".repeat(MAX_METADATA_BYTES));
        let e = parse(big.as_bytes(), &p).unwrap_err();
        assert!(e.description.contains("exceeds"), "{e}");
    }

    #[test]
    fn unsupported_grant_types_are_refused_by_name_not_dropped() {
        let p = RegistrationPolicy::default();
        let e = refused(
            json!({"grant_types": ["client_credentials", "authorization_code"]}),
            &p,
        );
        assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
        assert!(
            e.description
                .contains("authorization_code is not supported"),
            "{e}"
        );
        let e = refused(json!({"grant_types": []}), &p);
        assert!(e.description.starts_with("grant_types:"), "{e}");
        let e = refused(json!({"grant_types": "client_credentials"}), &p);
        assert!(e.description.contains("array of strings"), "{e}");
        let e = refused(json!({"grant_types": ["<script>"]}), &p);
        assert!(!e.description.contains("<script>"), "{e}");
        // A policy without the grant refuses it.
        let none = RegistrationPolicy {
            grant_types: Vec::new(),
            ..RegistrationPolicy::default()
        };
        let e = refused(json!({}), &none);
        assert!(
            e.description.contains("not allowed for registered clients"),
            "{e}"
        );
    }

    #[test]
    fn auth_methods_other_than_client_secrets_are_refused() {
        let p = RegistrationPolicy::default();
        for name in [
            "private_key_jwt",
            "none",
            "tls_client_auth",
            "client_secret_jwt",
        ] {
            let e = refused(json!({"token_endpoint_auth_method": name}), &p);
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
            assert!(
                e.description.contains(&format!("{name} is not supported")),
                "{e}"
            );
        }
        for key in ["jwks", "jwks_uri"] {
            let e = refused(json!({key: "https://example.com/jwks"}), &p);
            assert!(e.description.starts_with(key), "{e}");
        }
        let e = refused(json!({"software_statement": "e30.e30.x"}), &p);
        assert_eq!(e.code, MetadataErrorCode::InvalidSoftwareStatement);
    }

    #[test]
    fn scopes_are_scope_tokens_within_the_cap() {
        let p = cap(&["orders:*", "billing"]);
        for ok in [
            "billing",
            "orders:read",
            "orders:a*",
            "orders:*",
            "default",
            "",
        ] {
            run(json!({ "scope": ok }), &p).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("admin", "admin is not allowed"),
            ("orders:", "orders: is not allowed"),
            ("ord*", "ord* is not allowed"),
            ("billing2", "billing2 is not allowed"),
            ("*", "* is not allowed"),
            ("billing  billing", "exactly one space"),
            (" billing", "exactly one space"),
            ("bill\"ing", "printable ASCII"),
            ("or*ders", "last character"),
        ] {
            let e = refused(json!({ "scope": bad }), &p);
            assert_eq!(e.code, MetadataErrorCode::InvalidClientMetadata);
            assert!(e.description.contains(why), "{bad}: {e}");
        }
        // The default policy allows only `default`.
        let e = refused(
            json!({"scope": "orders:read"}),
            &RegistrationPolicy::default(),
        );
        assert!(e.description.contains("not allowed"), "{e}");
        let long = "a".repeat(MAX_SCOPE_LEN + 1);
        refused(json!({ "scope": long }), &cap(&["*"]));
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        let e = refused(json!({ "scope": many.join(" ") }), &cap(&["*"]));
        assert!(e.description.contains("at most"), "{e}");
    }

    #[test]
    fn client_names_are_bounded_text() {
        let p = RegistrationPolicy::default();
        let m = run(json!({"client_name": "Café ☕"}), &p).unwrap();
        assert_eq!(m.client_name.as_deref(), Some("Café ☕"));
        refused(json!({"client_name": "a\nb"}), &p);
        refused(
            json!({"client_name": "é".repeat(MAX_CLIENT_NAME_LEN + 1)}),
            &p,
        );
        refused(json!({"client_name": 7}), &p);
    }

    #[test]
    fn redirect_uris_follow_the_oauthclient_rule_and_are_refused_for_registration() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://[::1]:9000/",
        ] {
            check_redirect_uris(&[ok]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://localhost:8080/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "app.example.com/cb",
            "ftp://example.com/",
            "https:///cb",
            "https://user@example.com/",
            "https://exa mple.com/",
            "",
        ] {
            let e = check_redirect_uris(&["https://fine.example/", bad]).unwrap_err();
            assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri);
            assert_eq!(
                e.description,
                format!("redirect_uris[1]: {REDIRECT_URI_MESSAGE}"),
                "{bad}"
            );
        }
        let many = vec!["https://a.example/"; MAX_REDIRECT_URIS + 1];
        check_redirect_uris(&many).unwrap_err();

        let p = RegistrationPolicy::default();
        let e = refused(json!({"redirect_uris": ["http://evil.example/cb"]}), &p);
        assert!(e.description.contains("127.0.0.1"), "{e}");
        let e = refused(json!({"redirect_uris": ["https://app.example.com/cb"]}), &p);
        assert_eq!(e.code, MetadataErrorCode::InvalidRedirectUri);
        assert!(
            e.description.contains("client_credentials clients only"),
            "{e}"
        );
        let e = refused(json!({"response_types": ["code"]}), &p);
        assert!(e.description.starts_with("response_types:"), "{e}");
    }
}
