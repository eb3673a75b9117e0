//! Client authentication by assertion (RFC 7523 §2.2) at the token endpoint: which client
//! the assertion speaks for, which of its trusted keys verify it, and whether its `jti` was
//! seen. The rules are core's ([`latchkey_core::assertion`]); this module picks the keys
//! (inline, `jwksUri`, a federated issuer's discovery) and remembers the `jti`s.
//!
//! Replay protection is per replica: replicas share nothing on the hot path, so an assertion
//! replayed to another replica within its lifetime (at most `--assertion-max-lifetime`,
//! 5 minutes by default, for private_key_jwt) is accepted there once. That is the same
//! window a bearer access token has everywhere; a stolen assertion gives no more than one
//! token per replica before it expires, and a client that needs strict single use runs one
//! replica or keeps its assertions short.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use latchkey_core::{
    ClientRecord, CoreError, ErrorCode, OAuthError, Registry,
    assertion::{self, Expect, JwkSet, ReplayCache, SignatureCheck},
};

use crate::{
    ServerError,
    client_auth::AuthMethod,
    object_jwks::ObjectJwks,
    remote_jwks::{RemoteKeys, RemoteKeysConfig},
    routes::TOKEN_PATH,
    service_account::ServiceAccounts,
};

/// How assertions are accepted.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// Audiences accepted besides the issuer and `{public URL}/oauth2/token`.
    pub extra_audiences: Vec<String>,
    /// Longest `exp - iat` of a private_key_jwt assertion.
    pub max_lifetime: Duration,
    /// Live `jti`s remembered; beyond that, new assertions are refused until some expire.
    pub replay_capacity: usize,
    /// Fetching remote keys.
    pub remote: RemoteKeysConfig,
    /// Certificates trusted (besides the system's) when fetching remote keys
    /// ([`crate::remote_jwks::parse_roots`]).
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl Default for AssertionConfig {
    fn default() -> Self {
        AssertionConfig {
            extra_audiences: Vec::new(),
            max_lifetime: assertion::DEFAULT_MAX_LIFETIME,
            replay_capacity: 1 << 20,
            remote: RemoteKeysConfig::default(),
            extra_roots: Vec::new(),
        }
    }
}

/// The assertion verifier of one replica.
#[derive(Debug)]
pub struct Assertions {
    audiences: Vec<String>,
    max_lifetime: Duration,
    replay: ReplayCache,
    remote: RemoteKeys,
}

/// Who an accepted assertion authenticated: the client, by which method, and (issue 11) the
/// caller's identity for the client's `assertionIdentityClaim`, when the client sets one and
/// the caller is not the client itself: `system:serviceaccount:<ns>:<name>` for a
/// ServiceAccount, `{issuer}#{subject}` for a federated identity.
#[derive(Debug)]
pub struct Authenticated {
    pub client: Arc<ClientRecord>,
    pub method: AuthMethod,
    pub caller: Option<String>,
}

/// A refused assertion: the answer (always `invalid_client`, without detail) and the reason
/// for the log.
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
}

impl From<CoreError> for Refused {
    fn from(e: CoreError) -> Self {
        Refused {
            reason: match e {
                CoreError::AssertionRefused(r) => r,
                _ => "the assertion could not be checked",
            },
        }
    }
}

fn refused(reason: &'static str) -> Refused {
    Refused { reason }
}

impl Refused {
    pub fn to_oauth(&self) -> OAuthError {
        OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
    }
}

impl Assertions {
    /// A verifier for tokens issued as `issuer`, served at `public_url` if known.
    pub fn new(
        config: &AssertionConfig,
        issuer: &str,
        public_url: Option<&str>,
    ) -> Result<Assertions, ServerError> {
        let mut audiences = vec![issuer.to_owned()];
        if let Some(base) = public_url {
            audiences.push(format!("{}{TOKEN_PATH}", base.trim_end_matches('/')));
        }
        audiences.extend(config.extra_audiences.iter().cloned());
        audiences.dedup();
        Ok(Assertions {
            audiences,
            max_lifetime: config.max_lifetime,
            replay: ReplayCache::new(config.replay_capacity),
            remote: RemoteKeys::new(config.remote.clone(), &config.extra_roots)?,
        })
    }

    /// The cache of remote keys (`jwksUri`, federated issuers).
    pub fn remote(&self) -> &RemoteKeys {
        &self.remote
    }

    /// The audiences an assertion may name for this server.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Authenticate the client an assertion speaks for. `client_id` is the form's, if sent:
    /// it must match; a federated assertion needs it (its `sub` names the caller, not the
    /// client).
    pub async fn authenticate(
        &self,
        registry: &Registry,
        service_accounts: Option<&ServiceAccounts>,
        object_jwks: Option<&ObjectJwks>,
        client_id: Option<&str>,
        token: &str,
        now: SystemTime,
    ) -> Result<Authenticated, Refused> {
        let peeked = assertion::peek(token)?;
        let iss = peeked.claims.iss.as_deref().unwrap_or_default();
        let self_signed = peeked.claims.sub.as_deref() == Some(iss);
        let id = match (client_id, self_signed) {
            (Some(id), _) => id,
            (None, true) => iss,
            (None, false) => {
                return Err(refused(
                    "client_id is required when the assertion's sub is not the client id",
                ));
            }
        };
        let Some(client) = registry.get(id) else {
            return Err(refused("no such client"));
        };
        if client.is_disabled() {
            return Err(refused("the client is disabled"));
        }
        let trust = client.assertion_trust();
        let named = trust.identity_claim.is_some();
        let kid = peeked.kid.as_deref();
        if let Some(sa) = service_accounts
            && sa.issuer() == iss
        {
            let sub = peeked.claims.sub.as_deref().unwrap_or_default();
            let Some((ns, name)) = assertion::service_account_of(sub) else {
                return Err(refused("the token's sub is not a ServiceAccount"));
            };
            if !trust.allows_service_account(ns, name) {
                return Err(refused("the ServiceAccount is not listed by this client"));
            }
            let keys = sa.jwks(kid).await.map_err(refused)?;
            match assertion::verify_signature(token, &peeked, &keys) {
                SignatureCheck::Valid => {}
                SignatureCheck::NoKey => {
                    return Err(refused(
                        "no service-account key of the cluster fits the token",
                    ));
                }
                SignatureCheck::Invalid => {
                    return Err(refused("the assertion's signature is invalid"));
                }
            }
            let audience = [sa.audience().to_owned()];
            let expect = Expect {
                issuer: sa.issuer(),
                subject: sub,
                audiences: &audience,
                max_lifetime: assertion::MAX_SERVICE_ACCOUNT_LIFETIME,
                // The kubelet reuses a projected token: no single use (see service_account).
                require_jti: false,
            };
            assertion::check_claims(&peeked.claims, &expect, now)?;
            sa.still_valid(token).await.map_err(refused)?;
            return Ok(Authenticated {
                client: client.clone(),
                method: AuthMethod::ServiceAccount,
                // The token's sub is the ServiceAccount's user name.
                caller: named.then(|| sub.to_owned()),
            });
        }
        let fetched: Arc<JwkSet>;
        let (keys, expect, method, caller): (&JwkSet, Expect<'_>, AuthMethod, Option<String>) =
            if iss == id && trust.has_client_keys() {
                let keys = match (&trust.jwks, &trust.jwks_uri, &trust.jwks_from) {
                    (Some(inline), _, _) => inline,
                    (None, Some(uri), _) => {
                        fetched = self.remote.jwks(uri, kid).await.map_err(refused)?;
                        &fetched
                    }
                    (None, None, Some(object)) => {
                        let Some(reader) = object_jwks else {
                            return Err(refused("jwksFrom needs latchkey run (a cluster)"));
                        };
                        fetched = reader.jwks(object, kid).await.map_err(refused)?;
                        &fetched
                    }
                    (None, None, None) => return Err(refused("the client has no keys")),
                };
                let expect = Expect {
                    issuer: id,
                    subject: id,
                    audiences: &self.audiences,
                    max_lifetime: self.max_lifetime,
                    require_jti: true,
                };
                // The caller is the client itself: nothing to add.
                (keys, expect, AuthMethod::PrivateKeyJwt, None)
            } else if let Some(f) = trust.federated_for(iss) {
                let keys = match &f.jwks {
                    Some(inline) => inline,
                    None => {
                        fetched = self
                            .remote
                            .issuer_jwks(&f.issuer, kid)
                            .await
                            .map_err(refused)?;
                        &fetched
                    }
                };
                let expect = Expect {
                    issuer: &f.issuer,
                    subject: &f.subject,
                    audiences: f.audience.as_slice_or(&self.audiences),
                    max_lifetime: assertion::MAX_FEDERATED_LIFETIME,
                    require_jti: true,
                };
                let caller = named.then(|| assertion::federated_caller(&f.issuer, &f.subject));
                (keys, expect, AuthMethod::FederatedJwt, caller)
            } else {
                return Err(refused(
                    "the client trusts neither its own keys nor a federated issuer for this iss",
                ));
            };
        match assertion::verify_signature(token, &peeked, keys) {
            SignatureCheck::Valid => {}
            SignatureCheck::NoKey => return Err(refused("no trusted key fits the assertion")),
            SignatureCheck::Invalid => return Err(refused("the assertion's signature is invalid")),
        }
        let exp = assertion::check_claims(&peeked.claims, &expect, now)?;
        let jti = peeked.claims.jti.as_deref().unwrap_or_default();
        self.replay.admit(id, iss, jti, exp, now)?;
        Ok(Authenticated {
            client: client.clone(),
            method,
            caller,
        })
    }
}

/// An optional single audience as a one-element slice, else the default list.
trait AsSliceOr {
    fn as_slice_or<'a>(&'a self, default: &'a [String]) -> &'a [String];
}

impl AsSliceOr for Option<String> {
    fn as_slice_or<'a>(&'a self, default: &'a [String]) -> &'a [String] {
        match self {
            Some(one) => std::slice::from_ref(one),
            None => default,
        }
    }
}
