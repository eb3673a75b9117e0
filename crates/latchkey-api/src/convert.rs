//! From an `OAuthClient` and its resolved credentials to a core client definition.

use std::time::Duration;

use latchkey_core::{
    ClientSpec, ScopePolicy, SecretDigest,
    client::{MAX_TOKEN_LIFETIME, RESERVED_CLAIMS},
    scope::{DEFAULT_SCOPE, is_scope_token},
};

use crate::{
    ApiError, OAuthClientSpec, duration,
    rules::*,
    user_rules::{MAX_NAME_LEN, MAX_ORGANIZATIONS, is_name},
};

/// Check a spec against the rules the CRD states (for documents that never met an API
/// server, such as standalone files), naming the field at fault. Accepts exactly what the
/// CRD's schema and CEL rules accept (see [`crate::rules`]).
pub fn validate(spec: &OAuthClientSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::InvalidSpec(m));
    if let Some(id) = &spec.client_id
        && !is_client_id(id)
    {
        return bad(format!(
            "spec.clientId: {id:?} must be 1 to {MAX_CLIENT_ID_LEN} printable ASCII characters \
             (spaces included)"
        ));
    }
    if let Some(r) = &spec.secret_ref {
        if !is_secret_name(&r.name) {
            return bad(format!(
                "spec.secretRef.name: {:?} is not a DNS subdomain name (lowercase letters, \
                 digits, '-' and '.', at most {MAX_SECRET_NAME_LEN} characters)",
                r.name
            ));
        }
        if !is_secret_key(&r.key) {
            return bad(format!(
                "spec.secretRef.key: {:?} is not a Secret key (letters, digits, '-', '_' and \
                 '.', at most {MAX_SECRET_KEY_LEN} characters)",
                r.key
            ));
        }
    }
    check_scopes("spec.scopes", &spec.scopes, MAX_SCOPES)?;
    for (i, s) in spec.scopes.iter().enumerate() {
        if s.find('*').is_some_and(|at| at != s.len() - 1) {
            return bad(format!("spec.scopes[{i}]: {SCOPE_STAR_LAST_MESSAGE}"));
        }
    }
    check_scopes(
        "spec.defaultScopes",
        &spec.default_scopes,
        MAX_DEFAULT_SCOPES,
    )?;
    for (i, d) in spec.default_scopes.iter().enumerate() {
        if d.contains('*') {
            return bad(format!(
                "spec.defaultScopes[{i}]: {DEFAULT_SCOPE_PLAIN_MESSAGE}"
            ));
        }
    }
    // The scopes are well formed by now, so the policy builds; what it allows is the rule.
    let policy = ScopePolicy::new(&spec.scopes, &[])?;
    if let Some(d) = spec
        .default_scopes
        .iter()
        .find(|d| d.as_str() != DEFAULT_SCOPE && !policy.allows(d))
    {
        return bad(format!(
            "spec.defaultScopes: {DEFAULT_SCOPES_ALLOWED_MESSAGE}; {d:?} is not"
        ));
    }
    if spec.audience.len() > MAX_AUDIENCES {
        return bad(format!(
            "spec.audience: at most {MAX_AUDIENCES} entries are allowed"
        ));
    }
    for (i, a) in spec.audience.iter().enumerate() {
        if a.is_empty() || a.chars().count() > MAX_AUDIENCE_LEN {
            return bad(format!(
                "spec.audience[{i}]: must be 1 to {MAX_AUDIENCE_LEN} characters"
            ));
        }
    }
    if let Some(d) = &spec.access_token_lifetime {
        lifetime(d)?;
    }
    if spec
        .claims
        .keys()
        .any(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return bad(format!("spec.claims: {RESERVED_CLAIMS_MESSAGE}"));
    }
    if spec.claims.contains_key("") {
        return bad(format!("spec.claims: {EMPTY_CLAIM_NAME_MESSAGE}"));
    }
    // Issue 11: client authentication by assertion.
    crate::assertion_spec::validate(spec)?;
    // Issue 12: the token endpoint auth method (public clients).
    crate::auth_method::validate(spec)?;
    // Issue 13: secret rotation.
    if let Some(p) = &spec.previous_secret {
        if !is_secret_key(&p.key) {
            return bad(format!(
                "spec.previousSecret.key: {:?} is not a Secret key (letters, digits, '-', '_' \
                 and '.', at most {MAX_SECRET_KEY_LEN} characters)",
                p.key
            ));
        }
        let distinct = match &spec.secret_ref {
            Some(r) => p.key != r.key,
            None => ![
                crate::secret_data::DEFAULT_SECRET_KEY,
                crate::secret_data::CLIENT_ID_KEY,
                crate::secret_data::TOKEN_URL_KEY,
            ]
            .contains(&p.key.as_str()),
        };
        if !distinct {
            return bad(format!(
                "spec.previousSecret.key: {PREVIOUS_SECRET_KEY_DISTINCT_MESSAGE}"
            ));
        }
    }
    // Issue 12: browser clients.
    for (field, uris) in [
        ("spec.redirectUris", &spec.redirect_uris),
        (
            "spec.postLogoutRedirectUris",
            &spec.post_logout_redirect_uris,
        ),
    ] {
        if uris.len() > MAX_REDIRECT_URIS {
            return bad(format!(
                "{field}: at most {MAX_REDIRECT_URIS} entries are allowed"
            ));
        }
        if let Some((i, u)) = uris.iter().enumerate().find(|(_, u)| !is_redirect_uri(u)) {
            return bad(format!(
                "{field}[{i}]: {u:?} {REDIRECT_URI_MESSAGE} (at most {MAX_REDIRECT_URI_LEN} \
                 characters)"
            ));
        }
    }
    let organizations = &spec.allowed_organizations;
    if organizations.len() > MAX_ORGANIZATIONS {
        return bad(format!(
            "spec.allowedOrganizations: at most {MAX_ORGANIZATIONS} entries are allowed"
        ));
    }
    if let Some(i) = organizations.iter().position(|o| !is_name(o, MAX_NAME_LEN)) {
        return bad(format!(
            "spec.allowedOrganizations[{i}]: must be 1 to {MAX_NAME_LEN} characters without \
             spaces or control characters"
        ));
    }
    Ok(())
}

/// A list of scope tokens: its length, and each entry's syntax and length.
fn check_scopes(field: &str, scopes: &[String], max: usize) -> Result<(), ApiError> {
    if scopes.len() > max {
        return Err(ApiError::InvalidSpec(format!(
            "{field}: at most {max} entries are allowed"
        )));
    }
    for (i, s) in scopes.iter().enumerate() {
        if !is_scope_token(s) || s.len() > MAX_SCOPE_LEN {
            return Err(ApiError::InvalidSpec(format!(
                "{field}[{i}]: {s:?} is not a scope (1 to {MAX_SCOPE_LEN} printable ASCII \
                 characters without spaces, '\"' or '\\')"
            )));
        }
    }
    Ok(())
}

/// A spec's token lifetime: the duration syntax, then the 1s..=24h range.
fn lifetime(text: &str) -> Result<Duration, ApiError> {
    let bad = |m: String| ApiError::InvalidSpec(format!("spec.accessTokenLifetime: {m}"));
    if text.len() > MAX_DURATION_LEN {
        return Err(bad(format!(
            "must be at most {MAX_DURATION_LEN} characters"
        )));
    }
    let d = duration::parse(text).map_err(bad)?;
    if d < Duration::from_secs(1) || d > MAX_TOKEN_LIFETIME {
        return Err(bad(format!("{text:?}: {LIFETIME_RANGE_MESSAGE}")));
    }
    Ok(d)
}

/// The core definition of a client, given its effective id and the digest of its secret.
/// `origin` names the object for logs (`namespace/name`). The spec must have passed
/// [`validate`] (the resolver checks it once, before it looks for credentials).
pub fn client_spec(
    spec: &OAuthClientSpec,
    client_id: &str,
    secret: SecretDigest,
    origin: String,
) -> Result<ClientSpec, ApiError> {
    let token_lifetime = spec
        .access_token_lifetime
        .as_deref()
        .map(lifetime)
        .transpose()?;
    // Issue 11: client authentication by assertion (`origin` is `namespace/name`).
    let namespace = origin.split_once('/').map_or("", |(ns, _)| ns);
    let assertion = crate::assertion_spec::trust(spec, namespace)?;
    Ok(ClientSpec {
        client_id: client_id.to_owned(),
        secret,
        grant_types: spec.grant_types.iter().map(|g| (*g).into()).collect(),
        scopes: spec.scopes.clone(),
        default_scopes: spec.default_scopes.clone(),
        audience: spec.audience.clone(),
        token_lifetime,
        claims: spec.claims.clone().into_iter().collect(),
        disabled: spec.disabled,
        origin,
        // Issue 11: client authentication by assertion.
        assertion,
        // Issue 13: the caller adds the previous secret once it has read it, and the bulk
        // revocation from the object's annotation.
        previous_secret: None,
        may_introspect: spec.introspection,
        tokens_not_before: None,
        // Issue 12: browser clients.
        redirect_uris: spec.redirect_uris.clone(),
        post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
        first_party: spec.first_party,
        allowed_organizations: spec.allowed_organizations.clone(),
        token_endpoint_auth_method: spec.token_endpoint_auth_method.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::ClientRecord;

    fn parse(yaml: &str) -> OAuthClientSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn design_example_converts() {
        let spec = parse(
            r#"
clientId: orders-gateway
secretRef: { name: orders-gateway-secret }
grantTypes: [client_credentials]
scopes: ["orders:read", "apk:*"]
defaultScopes: [default]
audience: [orders-api]
accessTokenLifetime: 1h
claims: { organization: apps }
disabled: false
"#,
        );
        assert_eq!(spec.secret_ref.as_ref().unwrap().key, "clientSecret");
        validate(&spec).unwrap();
        let secret = SecretDigest::of_secret(b"s").unwrap();
        let c = client_spec(
            &spec,
            "orders-gateway",
            secret,
            "apps/orders-gateway".into(),
        )
        .unwrap();
        let record = ClientRecord::new(c).unwrap();
        assert_eq!(record.token_lifetime().unwrap().as_secs(), 3600);
        assert_eq!(
            record.extra_claims_json(),
            r#","aud":"orders-api","organization":"apps""#
        );
    }

    #[test]
    fn defaults_apply_when_fields_are_omitted() {
        let spec = parse("{}");
        assert_eq!(
            spec.grant_types,
            vec![crate::types::GrantTypeName::ClientCredentials]
        );
        assert_eq!(spec.default_scopes, vec!["default".to_string()]);
        assert!(!spec.disabled);
    }

    // Issue 12: browser clients.
    #[test]
    fn browser_client_fields_reach_the_record() {
        let spec = parse(
            r#"
redirectUris: ["https://app.example.com/cb", "http://127.0.0.1:8400/cb"]
postLogoutRedirectUris: ["https://app.example.com/"]
firstParty: true
allowedOrganizations: [org1]
"#,
        );
        validate(&spec).unwrap();
        let secret = SecretDigest::of_secret(b"s").unwrap();
        let c = client_spec(&spec, "web", secret, "apps/web".into()).unwrap();
        let record = ClientRecord::new(c).unwrap();
        assert!(record.has_redirect_uri("http://127.0.0.1:8400/cb"));
        assert!(!record.has_redirect_uri("https://app.example.com/"));
        assert!(record.has_post_logout_redirect_uri("https://app.example.com/"));
        assert!(record.is_first_party());
        assert!(record.allows_organization("org1") && !record.allows_organization("org2"));
        let plain = ClientRecord::new(
            client_spec(&parse("{}"), "m2m", SecretDigest::of(b"s"), "m".into()).unwrap(),
        )
        .unwrap();
        assert!(!plain.is_first_party() && plain.sole_redirect_uri().is_none());
        // Omitted fields stay out of what is written back.
        let yaml = serde_norway::to_string(&parse("{}")).unwrap();
        assert!(
            !yaml.contains("redirectUris") && !yaml.contains("firstParty"),
            "{yaml}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = validate(&parse("accessTokenLifetime: 1 hour")).unwrap_err();
        assert!(e.to_string().starts_with("spec.accessTokenLifetime"), "{e}");
        let e = validate(&parse("claims: { iss: me }")).unwrap_err();
        assert!(e.to_string().starts_with("spec.claims"), "{e}");
        assert!(serde_norway::from_str::<OAuthClientSpec>("grantTypes: [password]").is_err());
    }
}
