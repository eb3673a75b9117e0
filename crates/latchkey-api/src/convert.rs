//! From an `OAuthClient` and its resolved credentials to a core client definition.

use latchkey_core::{ClientSpec, client::RESERVED_CLAIMS};

use crate::{ApiError, OAuthClientSpec, duration};

/// Check a spec against the rules the CRD states (for documents that never met an API
/// server, such as standalone files), naming the field at fault.
pub fn validate(spec: &OAuthClientSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::InvalidSpec(m));
    if spec.client_id.as_ref().is_some_and(String::is_empty) {
        return bad("spec.clientId: must not be empty".into());
    }
    if spec
        .secret_ref
        .as_ref()
        .is_some_and(|r| r.name.is_empty() || r.key.is_empty())
    {
        return bad("spec.secretRef: name and key must not be empty".into());
    }
    if let Some(d) = &spec.access_token_lifetime {
        duration::parse(d)
            .map_err(|e| ApiError::InvalidSpec(format!("spec.accessTokenLifetime: {e}")))?;
    }
    if let Some(name) = spec
        .claims
        .keys()
        .find(|k| RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return bad(format!(
            "spec.claims: {name:?} is a registered claim and is set by Latchkey"
        ));
    }
    Ok(())
}

/// The core definition of a client, given its effective id and secret. `origin` names the
/// object for logs (`namespace/name` or `file#document`).
pub fn client_spec(
    spec: &OAuthClientSpec,
    client_id: &str,
    secret: &[u8],
    origin: String,
) -> Result<ClientSpec, ApiError> {
    validate(spec)?;
    let token_lifetime = spec
        .access_token_lifetime
        .as_deref()
        .map(duration::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidSpec(format!("spec.accessTokenLifetime: {e}")))?;
    Ok(ClientSpec {
        client_id: client_id.to_owned(),
        secret: secret.to_vec(),
        grant_types: spec.grant_types.iter().map(|g| (*g).into()).collect(),
        scopes: spec.scopes.clone(),
        default_scopes: spec.default_scopes.clone(),
        audience: spec.audience.clone(),
        token_lifetime,
        claims: spec.claims.clone().into_iter().collect(),
        disabled: spec.disabled,
        origin,
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
        let c = client_spec(&spec, "orders-gateway", b"s", "apps/orders-gateway".into()).unwrap();
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

    #[test]
    fn bad_fields_are_named() {
        let e = validate(&parse("accessTokenLifetime: 1 hour")).unwrap_err();
        assert!(e.to_string().starts_with("spec.accessTokenLifetime"), "{e}");
        let e = validate(&parse("claims: { iss: me }")).unwrap_err();
        assert!(e.to_string().starts_with("spec.claims"), "{e}");
        assert!(serde_norway::from_str::<OAuthClientSpec>("grantTypes: [password]").is_err());
    }
}
