//! The token grant itself, over live snapshots of clients and keys.
//!
//! Readers load the current snapshot without taking any lock a writer holds (`arc-swap`);
//! writers build a whole new snapshot and swap it in.

use std::{sync::Arc, time::SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::{
    ClientRecord, ErrorCode, GrantType, IssuedToken, KeySet, OAuthError, Registry,
    TokenEndpointAuthMethod, TokenSettings, token,
};

/// A token request, already taken apart by the transport.
#[derive(Clone, Copy)]
pub struct TokenRequest<'a> {
    pub grant_type: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a [u8],
    /// How the secret came (HTTP Basic or the form): a client that names its method accepts
    /// only that one.
    pub method: TokenEndpointAuthMethod,
    /// The `scope` parameter as sent, if any.
    pub scope: Option<&'a str>,
}

impl std::fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("method", &self.method)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Issues tokens from the current registry and key set.
#[derive(Debug)]
pub struct Issuer {
    settings: TokenSettings,
    registry: ArcSwap<Registry>,
    /// `None` until the first key set is known (cluster mode, before the keys Secret syncs).
    keys: ArcSwapOption<KeySet>,
}

impl Issuer {
    pub fn new(settings: TokenSettings, registry: Registry, keys: Option<KeySet>) -> Issuer {
        Issuer {
            settings,
            registry: ArcSwap::from_pointee(registry),
            keys: ArcSwapOption::new(keys.map(Arc::new)),
        }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The registry snapshot of this moment.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// The key set of this moment, once there is one.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// Swap in a new registry; requests in flight finish with the one they loaded.
    pub fn replace_registry(&self, registry: Registry) {
        self.registry.store(Arc::new(registry));
    }

    /// Swap in a new key set.
    pub fn replace_keys(&self, keys: KeySet) {
        self.keys.store(Some(Arc::new(keys)));
    }

    /// Run the grant: supported grant type, client authentication, the client's grants, its
    /// scopes, then mint with the active key at `now`.
    pub fn issue(&self, req: TokenRequest<'_>, now: SystemTime) -> Result<IssuedToken, OAuthError> {
        let grant = parse_grant(req.grant_type)?;
        let registry = self.registry.load();
        let client = registry.authenticate_by(req.client_id, req.client_secret, req.method, now)?;
        self.issue_to(client, grant, req.scope, None, now)
    }

    /// Issue to a client that has already proven who it is, by whichever method of client
    /// authentication (a secret here, an assertion or a public client's PKCE elsewhere): the
    /// grant, scope and signing rules are the same for all of them.
    /// `caller` (issue 11) is who authenticated by assertion, for the client's identity
    /// claim.
    pub fn issue_to(
        &self,
        client: &ClientRecord,
        grant: GrantType,
        scope: Option<&str>,
        caller: Option<&str>,
        now: SystemTime,
    ) -> Result<IssuedToken, OAuthError> {
        // Issue 12: the grants for people run at the token endpoint over the grant store and
        // mint with `token::mint_for_user`; this path is the machines' only.
        if grant != GrantType::ClientCredentials {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "this path issues client_credentials tokens only",
            ));
        }
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!("this client may not use grant_type={grant}"),
            ));
        }
        let scope = client.scopes().grant(scope)?;
        let keys = self.keys.load();
        let Some(keys) = keys.as_ref() else {
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "no signing key is loaded yet; retry shortly",
            ));
        };
        token::mint_for_caller(keys.active(), &self.settings, client, &scope, caller, now)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "the token could not be signed"))
    }
}

/// A grant type Latchkey serves, or `unsupported_grant_type`.
pub fn parse_grant(grant_type: &str) -> Result<GrantType, OAuthError> {
    GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type must be client_credentials, authorization_code or refresh_token",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientRecord, KeyMaterial, SigningAlgorithm, SigningKey, client::tests::spec};

    fn issuer() -> Issuer {
        let mut none = spec("no-grants", "pw");
        none.grant_types.clear();
        let registry =
            Registry::new([spec("a", "pw"), none].map(|s| ClientRecord::new(s).unwrap())).unwrap();
        let key = SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap();
        Issuer::new(
            TokenSettings::default(),
            registry,
            Some(KeySet::single(key)),
        )
    }

    fn req<'a>(
        grant: &'a str,
        id: &'a str,
        secret: &'a str,
        scope: Option<&'a str>,
    ) -> TokenRequest<'a> {
        TokenRequest {
            grant_type: grant,
            client_id: id,
            client_secret: secret.as_bytes(),
            method: TokenEndpointAuthMethod::ClientSecretBasic,
            scope,
        }
    }

    #[test]
    fn each_rule_gives_its_error() {
        let i = issuer();
        let now = SystemTime::now();
        let code = |r| i.issue(r, now).unwrap_err().code;
        assert_eq!(
            code(req("password", "a", "pw", None)),
            ErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            code(req("client_credentials", "a", "bad", None)),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code(req("client_credentials", "no-grants", "pw", None)),
            ErrorCode::UnauthorizedClient
        );
        assert_eq!(
            code(req("client_credentials", "a", "pw", Some("nope"))),
            ErrorCode::InvalidScope
        );
        let ok = i
            .issue(
                req("client_credentials", "a", "pw", Some("apk:x default")),
                now,
            )
            .unwrap();
        assert_eq!(ok.scope, "apk:x default");
    }

    #[test]
    fn without_keys_requests_are_told_to_retry() {
        let i = Issuer::new(
            TokenSettings::default(),
            Registry::new([ClientRecord::new(spec("a", "pw")).unwrap()]).unwrap(),
            None,
        );
        let e = i
            .issue(
                req("client_credentials", "a", "pw", None),
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TemporarilyUnavailable);
        assert_eq!(e.code.http_status(), 503);
    }

    #[test]
    fn a_swapped_registry_takes_effect() {
        let i = issuer();
        let now = SystemTime::now();
        assert!(
            i.issue(req("client_credentials", "a", "pw", None), now)
                .is_ok()
        );
        i.replace_registry(Registry::new([ClientRecord::new(spec("a", "new")).unwrap()]).unwrap());
        assert!(
            i.issue(req("client_credentials", "a", "pw", None), now)
                .is_err()
        );
        assert!(
            i.issue(req("client_credentials", "a", "new", None), now)
                .is_ok()
        );
    }
}
