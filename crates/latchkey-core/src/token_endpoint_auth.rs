//! How a client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`):
//! a client may name one method, and then no other is accepted for it. A client that names
//! none accepts what it has credentials for (a secret by HTTP Basic or the form, or an
//! assertion it trusts), as before the method could be named. `none` makes a public client
//! (RFC 6749 §2.1): it has no credentials and identifies itself with `client_id` alone.

use crate::{ErrorCode, OAuthError};

/// A method a client may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenEndpointAuthMethod {
    /// The secret in HTTP Basic (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// The secret in the form (`client_id` and `client_secret`).
    ClientSecretPost,
    /// A JWT signed with the client's own key (RFC 7523 §2.2, OpenID Connect Core §9).
    PrivateKeyJwt,
    /// A public client: no authentication, `client_id` only, PKCE required.
    None,
}

impl TokenEndpointAuthMethod {
    pub const ALL: [TokenEndpointAuthMethod; 4] = [
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::ClientSecretPost,
        TokenEndpointAuthMethod::PrivateKeyJwt,
        TokenEndpointAuthMethod::None,
    ];

    /// The name RFC 7591 and OpenID Connect Discovery give the method.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
            TokenEndpointAuthMethod::None => "none",
        }
    }

    /// The method of this name, if it is one of the four.
    pub fn parse(name: &str) -> Option<TokenEndpointAuthMethod> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for TokenEndpointAuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request that authenticated by `used` (a method name: one of the four, or
/// another label for assertions of other kinds) may act for a client that `required` one
/// method. A refusal is `invalid_client` and says which method the client uses; the caller
/// has already proven the credentials, so this tells it nothing it could guess with.
pub fn check(required: Option<TokenEndpointAuthMethod>, used: &str) -> Result<(), OAuthError> {
    match required {
        Some(required) if required.as_str() != used => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            format!(
                "this client authenticates with {required} only (its tokenEndpointAuthMethod), \
                 not {used}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The answer to a secret sent for a public client: it has none, so nothing can match.
pub fn public_client_sent_secret() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        "this client is public (tokenEndpointAuthMethod none): it sends client_id alone, \
         without client_secret or HTTP Basic",
    )
}

/// The answer to an assertion sent for a public client.
pub fn public_client_sent_assertion() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        "this client is public (tokenEndpointAuthMethod none): it sends client_id alone, \
         without client_assertion",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in TokenEndpointAuthMethod::ALL {
            assert_eq!(TokenEndpointAuthMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(TokenEndpointAuthMethod::parse("client_secret_jwt"), None);
    }

    #[test]
    fn a_named_method_is_the_only_one_accepted() {
        use TokenEndpointAuthMethod as M;
        for used in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert!(check(None, used).is_ok(), "unnamed accepts {used}");
        }
        assert!(check(Some(M::ClientSecretPost), "client_secret_post").is_ok());
        let e = check(Some(M::ClientSecretPost), "client_secret_basic").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert_eq!(
            e.description(),
            "this client authenticates with client_secret_post only (its \
             tokenEndpointAuthMethod), not client_secret_basic"
        );
        assert!(check(Some(M::PrivateKeyJwt), "federated_jwt").is_err());
        assert!(check(Some(M::ClientSecretBasic), "private_key_jwt").is_err());
        assert!(check(Some(M::None), "none").is_ok());
        assert!(check(Some(M::None), "client_secret_post").is_err());
    }
}
