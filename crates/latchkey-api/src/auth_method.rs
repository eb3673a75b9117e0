//! `spec.tokenEndpointAuthMethod`: the one method a client authenticates with at the token
//! endpoint (RFC 7591's names). Omitted, a client accepts what it has credentials for, as
//! before the field existed. `none` is a public client (RFC 6749 §2.1, RFC 8252): no secret
//! and no keys, a browser or native app that signs people in with PKCE. The rules are stated
//! once here, for the CRD (CEL) and for files (`validate`), with the same messages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ApiError, OAuthClientSpec, assertion_spec::has_assertion_trust, types::GrantTypeName};

/// The method a client names.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TokenEndpointAuthMethodName {
    #[serde(rename = "client_secret_basic")]
    ClientSecretBasic,
    #[serde(rename = "client_secret_post")]
    ClientSecretPost,
    #[serde(rename = "private_key_jwt")]
    PrivateKeyJwt,
    #[serde(rename = "none")]
    None,
}

impl From<TokenEndpointAuthMethodName> for latchkey_core::TokenEndpointAuthMethod {
    fn from(m: TokenEndpointAuthMethodName) -> Self {
        use latchkey_core::TokenEndpointAuthMethod as M;
        match m {
            TokenEndpointAuthMethodName::ClientSecretBasic => M::ClientSecretBasic,
            TokenEndpointAuthMethodName::ClientSecretPost => M::ClientSecretPost,
            TokenEndpointAuthMethodName::PrivateKeyJwt => M::PrivateKeyJwt,
            TokenEndpointAuthMethodName::None => M::None,
        }
    }
}

/// CEL: the client names `none`.
macro_rules! public {
    () => {
        "(has(self.tokenEndpointAuthMethod) && self.tokenEndpointAuthMethod == 'none')"
    };
}
/// CEL: the client trusts some assertion.
macro_rules! assertion_trust {
    () => {
        "(has(self.jwks) || has(self.jwksUri) || has(self.jwksFrom) || \
         (has(self.federatedIdentities) && size(self.federatedIdentities) > 0) || \
         (has(self.serviceAccounts) && size(self.serviceAccounts) > 0))"
    };
}

/// On the spec: a public client reads no Secret.
pub const PUBLIC_NO_SECRET: &str = concat!(
    "!",
    public!(),
    " || (!has(self.secretRef) && !has(self.previousSecret))"
);
pub const PUBLIC_NO_SECRET_MESSAGE: &str = "a public client (tokenEndpointAuthMethod none) has no \
     secret: remove secretRef and previousSecret";
/// On the spec: a public client names its id (no credentials Secret keeps a generated one).
pub const PUBLIC_NEEDS_ID: &str = concat!("!", public!(), " || has(self.clientId)");
pub const PUBLIC_NEEDS_ID_MESSAGE: &str = "a public client (tokenEndpointAuthMethod none) must \
     set clientId: it has no credentials Secret to keep a generated one in";
/// On the spec: a public client signs people in, so it has somewhere to send them back.
pub const PUBLIC_NEEDS_REDIRECT: &str = concat!(
    "!",
    public!(),
    " || (has(self.redirectUris) && size(self.redirectUris) > 0)"
);
pub const PUBLIC_NEEDS_REDIRECT_MESSAGE: &str =
    "a public client (tokenEndpointAuthMethod none) needs redirectUris";
/// On the spec: a public client's grants are the code (with PKCE) and its refresh tokens.
pub const PUBLIC_GRANTS: &str = concat!(
    "!",
    public!(),
    // The enum has three names, so "not client_credentials" is "only the other two"; `in`
    // keeps the API server's cost estimate of an unbounded list within its budget.
    " || (has(self.grantTypes) && 'authorization_code' in self.grantTypes && \
     !('client_credentials' in self.grantTypes))"
);
pub const PUBLIC_GRANTS_MESSAGE: &str = "a public client (tokenEndpointAuthMethod none) may \
     only use the authorization_code and refresh_token grants, authorization_code among them \
     (client_credentials needs a confidential client)";
/// On the spec: a public client holds no keys and cannot authenticate to introspect.
pub const PUBLIC_NO_CREDENTIALS: &str = concat!(
    "!",
    public!(),
    " || !(",
    assertion_trust!(),
    " || (has(self.introspection) && self.introspection))"
);
pub const PUBLIC_NO_CREDENTIALS_MESSAGE: &str = "a public client (tokenEndpointAuthMethod none) \
     has no credentials: it may not set jwks, jwksUri, jwksFrom, federatedIdentities, \
     serviceAccounts or introspection";
/// On the spec: a secret method accepts only the secret.
pub const SECRET_METHOD_ONLY: &str = concat!(
    "!has(self.tokenEndpointAuthMethod) || !(self.tokenEndpointAuthMethod in \
     ['client_secret_basic', 'client_secret_post']) || !",
    assertion_trust!()
);
pub const SECRET_METHOD_ONLY_MESSAGE: &str = "tokenEndpointAuthMethod client_secret_basic or \
     client_secret_post accepts only the secret: remove jwks, jwksUri, jwksFrom, \
     federatedIdentities and serviceAccounts (or omit tokenEndpointAuthMethod to accept both)";
/// On the spec: `private_key_jwt` has the client's keys and nothing else.
pub const PRIVATE_KEY_JWT_ONLY: &str = "!has(self.tokenEndpointAuthMethod) || \
     self.tokenEndpointAuthMethod != 'private_key_jwt' || ((has(self.jwks) || \
     has(self.jwksUri) || has(self.jwksFrom)) && !has(self.secretRef) && \
     !has(self.previousSecret) && !(has(self.federatedIdentities) && \
     size(self.federatedIdentities) > 0) && !(has(self.serviceAccounts) && \
     size(self.serviceAccounts) > 0))";
pub const PRIVATE_KEY_JWT_ONLY_MESSAGE: &str = "tokenEndpointAuthMethod private_key_jwt needs the \
     client's keys (jwks, jwksUri or jwksFrom) and accepts nothing else: remove secretRef, \
     previousSecret, federatedIdentities and serviceAccounts";

/// Every rule on the spec with its message, in the order the CRD lists them.
pub const SPEC_RULES: [(&str, &str); 7] = [
    (PUBLIC_NO_SECRET, PUBLIC_NO_SECRET_MESSAGE),
    (PUBLIC_NEEDS_ID, PUBLIC_NEEDS_ID_MESSAGE),
    (PUBLIC_NEEDS_REDIRECT, PUBLIC_NEEDS_REDIRECT_MESSAGE),
    (PUBLIC_GRANTS, PUBLIC_GRANTS_MESSAGE),
    (PUBLIC_NO_CREDENTIALS, PUBLIC_NO_CREDENTIALS_MESSAGE),
    (SECRET_METHOD_ONLY, SECRET_METHOD_ONLY_MESSAGE),
    (PRIVATE_KEY_JWT_ONLY, PRIVATE_KEY_JWT_ONLY_MESSAGE),
];

/// Whether the spec is a public client's.
pub fn is_public(spec: &OAuthClientSpec) -> bool {
    spec.token_endpoint_auth_method == Some(TokenEndpointAuthMethodName::None)
}

/// Whether the client reads no Secret and none is generated for it: a public client, or one
/// without `secretRef` that authenticates by assertion.
pub fn has_no_secret(spec: &OAuthClientSpec) -> bool {
    spec.secret_ref.is_none() && (is_public(spec) || has_assertion_trust(spec))
}

/// The method's rules, for documents that never met an API server.
pub fn validate(spec: &OAuthClientSpec) -> Result<(), ApiError> {
    let Some(method) = spec.token_endpoint_auth_method else {
        return Ok(());
    };
    let bad = |m: &str| Err(ApiError::InvalidSpec(format!("spec: {m}")));
    let trusts = has_assertion_trust(spec);
    let keys = spec.jwks.is_some() || spec.jwks_uri.is_some() || spec.jwks_from.is_some();
    let others = !spec.federated_identities.is_empty() || !spec.service_accounts.is_empty();
    let secret = spec.secret_ref.is_some() || spec.previous_secret.is_some();
    match method {
        TokenEndpointAuthMethodName::None => {
            if secret {
                return bad(PUBLIC_NO_SECRET_MESSAGE);
            }
            if spec.client_id.is_none() {
                return bad(PUBLIC_NEEDS_ID_MESSAGE);
            }
            if spec.redirect_uris.is_empty() {
                return bad(PUBLIC_NEEDS_REDIRECT_MESSAGE);
            }
            let grants = &spec.grant_types;
            if !grants.contains(&GrantTypeName::AuthorizationCode)
                || grants.contains(&GrantTypeName::ClientCredentials)
            {
                return bad(PUBLIC_GRANTS_MESSAGE);
            }
            if trusts || spec.introspection {
                return bad(PUBLIC_NO_CREDENTIALS_MESSAGE);
            }
        }
        TokenEndpointAuthMethodName::ClientSecretBasic
        | TokenEndpointAuthMethodName::ClientSecretPost => {
            if trusts {
                return bad(SECRET_METHOD_ONLY_MESSAGE);
            }
        }
        TokenEndpointAuthMethodName::PrivateKeyJwt => {
            if !keys || secret || others {
                return bad(PRIVATE_KEY_JWT_ONLY_MESSAGE);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> OAuthClientSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    const PUBLIC: &str = "clientId: spa\ntokenEndpointAuthMethod: none\n\
         grantTypes: [authorization_code, refresh_token]\nredirectUris: ['http://127.0.0.1:8400/cb']\n";
    const ED_KEY: &str = r#"{keys: [{kty: OKP, crv: Ed25519, kid: k1, x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn refused(yaml: &str, message: &str) {
        let e = crate::convert::validate(&parse(yaml)).expect_err(yaml);
        assert_eq!(e.to_string(), format!("spec: {message}"), "{yaml}");
    }

    #[test]
    fn an_omitted_method_changes_nothing() {
        let spec = parse("scopes: [a]");
        assert_eq!(spec.token_endpoint_auth_method, None);
        assert!(!is_public(&spec) && !has_no_secret(&spec));
        validate(&spec).unwrap();
        let yaml = serde_norway::to_string(&spec).unwrap();
        assert!(!yaml.contains("tokenEndpointAuthMethod"), "{yaml}");
    }

    #[test]
    fn a_public_client_has_no_secret_and_signs_people_in() {
        let spec = parse(PUBLIC);
        crate::convert::validate(&spec).unwrap();
        assert!(is_public(&spec) && has_no_secret(&spec));
        crate::convert::validate(&parse(&format!("{PUBLIC}firstParty: true\nscopes: [a]")))
            .unwrap();
        let only_code = PUBLIC.replace(", refresh_token", "");
        crate::convert::validate(&parse(&only_code)).unwrap();

        refused(
            &format!("{PUBLIC}secretRef: {{ name: s }}"),
            PUBLIC_NO_SECRET_MESSAGE,
        );
        refused(
            &format!("{PUBLIC}previousSecret: {{ key: old, expiresAt: '2030-01-01T00:00:00Z' }}"),
            PUBLIC_NO_SECRET_MESSAGE,
        );
        refused(
            &PUBLIC.replace("clientId: spa\n", ""),
            PUBLIC_NEEDS_ID_MESSAGE,
        );
        refused(
            &PUBLIC.replace("redirectUris: ['http://127.0.0.1:8400/cb']\n", ""),
            PUBLIC_NEEDS_REDIRECT_MESSAGE,
        );
        // The default grant (client_credentials) is not a public client's.
        refused(
            &PUBLIC.replace("grantTypes: [authorization_code, refresh_token]\n", ""),
            PUBLIC_GRANTS_MESSAGE,
        );
        refused(
            &PUBLIC.replace("refresh_token]", "refresh_token, client_credentials]"),
            PUBLIC_GRANTS_MESSAGE,
        );
        refused(
            &PUBLIC.replace("[authorization_code, refresh_token]", "[refresh_token]"),
            PUBLIC_GRANTS_MESSAGE,
        );
        refused(
            &format!("{PUBLIC}introspection: true"),
            PUBLIC_NO_CREDENTIALS_MESSAGE,
        );
        refused(
            &format!("{PUBLIC}jwks: {ED_KEY}"),
            PUBLIC_NO_CREDENTIALS_MESSAGE,
        );
        refused(
            &format!("{PUBLIC}serviceAccounts: [{{namespace: apps, name: g}}]"),
            PUBLIC_NO_CREDENTIALS_MESSAGE,
        );
    }

    #[test]
    fn a_secret_method_accepts_only_the_secret() {
        for m in ["client_secret_basic", "client_secret_post"] {
            let base = format!("clientId: c\ntokenEndpointAuthMethod: {m}\n");
            crate::convert::validate(&parse(&base)).unwrap();
            crate::convert::validate(&parse(&format!("{base}secretRef: {{ name: s }}"))).unwrap();
            refused(
                &format!("{base}jwksUri: https://keys.example.com/j"),
                SECRET_METHOD_ONLY_MESSAGE,
            );
            refused(
                &format!(
                    "{base}federatedIdentities: [{{issuer: 'https://i.example', subject: s}}]"
                ),
                SECRET_METHOD_ONLY_MESSAGE,
            );
        }
    }

    #[test]
    fn private_key_jwt_needs_keys_and_nothing_else() {
        let base = "clientId: c\ntokenEndpointAuthMethod: private_key_jwt\n";
        let with_keys = format!("{base}jwks: {ED_KEY}\n");
        crate::convert::validate(&parse(&with_keys)).unwrap();
        assert!(has_no_secret(&parse(&with_keys)));
        refused(base, PRIVATE_KEY_JWT_ONLY_MESSAGE);
        refused(
            &format!("{with_keys}secretRef: {{ name: s }}"),
            PRIVATE_KEY_JWT_ONLY_MESSAGE,
        );
        refused(
            &format!("{with_keys}serviceAccounts: [{{namespace: apps, name: g}}]"),
            PRIVATE_KEY_JWT_ONLY_MESSAGE,
        );
    }

    #[test]
    fn unknown_methods_do_not_parse() {
        for bad in ["client_secret_jwt", "None", "tls_client_auth", "''"] {
            assert!(
                serde_norway::from_str::<OAuthClientSpec>(&format!(
                    "tokenEndpointAuthMethod: {bad}"
                ))
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_cel_rules_name_every_field_validate_reads() {
        let all = SPEC_RULES.map(|(rule, _)| rule).join(" ");
        for field in [
            "secretRef",
            "previousSecret",
            "clientId",
            "redirectUris",
            "grantTypes",
            "introspection",
            "jwks",
            "jwksUri",
            "jwksFrom",
            "federatedIdentities",
            "serviceAccounts",
        ] {
            assert!(all.contains(&format!("self.{field}")), "{field}");
        }
        for m in latchkey_core::TokenEndpointAuthMethod::ALL {
            assert!(all.contains(&format!("'{}'", m.as_str())), "{m}");
        }
    }
}
