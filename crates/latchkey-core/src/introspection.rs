//! Issue 13: token introspection (RFC 7662). A token is active when it is one of Latchkey's
//! own: signed by a key it publishes now (the `kid` names it, the `alg` matches it), issued by
//! this issuer, within `nbf`..`exp` at `now`, for a client that still exists, is enabled and
//! has not revoked its tokens in bulk since, and its `jti` is not revoked. Anything else is
//! simply inactive: the answer never says why.
//!
//! Everything is in memory: the key set and registry snapshots of the [`Issuer`], the
//! revocation list snapshot, and the parsed verification keys (built once per key set).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{Issuer, KeySet, SigningAlgorithm, revocation::Revocations, token::unix_seconds};

/// Longest token looked at; longer ones are inactive without parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How far in the future an `nbf` may be (another replica's clock may run ahead).
const NBF_SKEW: Duration = Duration::from_secs(60);

/// One published key, ready to verify.
struct Verifier {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
}

/// The verifiers of one key set.
struct Verifiers {
    keys: Arc<KeySet>,
    list: Vec<Verifier>,
}

fn algorithm(a: SigningAlgorithm) -> Algorithm {
    match a {
        SigningAlgorithm::RS256 => Algorithm::RS256,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Answers introspection requests from live snapshots.
pub struct Introspector {
    verifiers: ArcSwapOption<Verifiers>,
    revocations: ArcSwap<Revocations>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("revoked", &self.revocations.load().len())
            .finish_non_exhaustive()
    }
}

impl Default for Introspector {
    fn default() -> Self {
        Introspector {
            verifiers: ArcSwapOption::empty(),
            revocations: ArcSwap::from_pointee(Revocations::default()),
        }
    }
}

impl Introspector {
    /// Swap in the revocation list last read from the store.
    pub fn replace_revocations(&self, list: Revocations) {
        self.revocations.store(Arc::new(list));
    }

    /// The revocation list of this moment.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revocations.load_full()
    }

    /// The verifiers for `keys`, built once per key set.
    fn verifiers(&self, keys: &Arc<KeySet>) -> Arc<Verifiers> {
        if let Some(v) = self.verifiers.load_full()
            && Arc::ptr_eq(&v.keys, keys)
        {
            return v;
        }
        let list = keys
            .published()
            .iter()
            .filter_map(|k| {
                Some(Verifier {
                    kid: k.kid().to_owned(),
                    alg: algorithm(k.alg()),
                    key: DecodingKey::from_jwk(k.jwk()).ok()?,
                })
            })
            .collect();
        let v = Arc::new(Verifiers {
            keys: keys.clone(),
            list,
        });
        self.verifiers.store(Some(v.clone()));
        v
    }

    /// The claims of `token` when it is active at `now`, else `None`.
    pub fn active_claims(
        &self,
        issuer: &Issuer,
        token: &str,
        now: SystemTime,
    ) -> Option<Map<String, Value>> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let keys = issuer.keys()?;
        let header = jsonwebtoken::decode_header(token).ok()?;
        let verifiers = self.verifiers(&keys);
        let verifier = verifiers
            .list
            .iter()
            .find(|v| Some(v.kid.as_str()) == header.kid.as_deref() && v.alg == header.alg)?;
        // Time, issuer and audience are checked below, against `now` and this issuer.
        let mut validation = Validation::new(verifier.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &verifier.key, &validation)
            .ok()?
            .claims;
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let now_s = unix_seconds(now);
        if text("iss") != Some(issuer.settings().issuer.as_str())
            || number("exp")? <= now_s
            || number("nbf").is_some_and(|nbf| nbf > now_s + NBF_SKEW.as_secs())
        {
            return None;
        }
        let client_id = text("clientId")?;
        let registry = issuer.registry();
        let client = registry.get(client_id)?;
        let iat = number("iat")?;
        if client.is_disabled()
            || client
                .tokens_not_before()
                .is_some_and(|t| iat < unix_seconds(t))
            || self.revocations.load().is_revoked(text("jti")?)
        {
            return None;
        }
        Some(claims)
    }

    /// The RFC 7662 answer for `token`: `{"active":true, …claims, client_id, token_type}` or
    /// `{"active":false}`.
    pub fn introspect(&self, issuer: &Issuer, token: &str, now: SystemTime) -> Value {
        match self.active_claims(issuer, token, now) {
            None => serde_json::json!({ "active": false }),
            Some(mut claims) => {
                if let Some(id) = claims.get("clientId").cloned() {
                    claims.insert("client_id".into(), id);
                }
                claims.insert("token_type".into(), "Bearer".into());
                claims.insert("active".into(), true.into());
                Value::Object(claims)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ClientRecord, GrantType, KeyMaterial, Registry, SigningKey, TokenSettings,
        client::tests::spec,
    };
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn key(kid: &str) -> SigningKey {
        SigningKey::new(
            kid,
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap()
    }

    fn issuer(registry: Registry, k: SigningKey) -> Issuer {
        Issuer::new(TokenSettings::default(), registry, Some(KeySet::single(k)))
    }

    fn token(i: &Issuer, id: &str, secret: &str, now: SystemTime) -> String {
        let registry = i.registry();
        let c = registry.authenticate(id, secret.as_bytes(), now).unwrap();
        i.issue_to(c, GrantType::ClientCredentials, None, None, now)
            .unwrap()
            .access_token
    }

    #[test]
    fn own_valid_tokens_are_active_with_their_claims() {
        let i = issuer(
            Registry::new([ClientRecord::new(spec("a", "pw")).unwrap()]).unwrap(),
            key("k1"),
        );
        let x = Introspector::default();
        let t = token(&i, "a", "pw", at(1_000));
        let v = x.introspect(&i, &t, at(1_001));
        assert_eq!(v["active"], true);
        assert_eq!(v["client_id"], "a");
        assert_eq!(v["sub"], "a");
        assert_eq!(v["scope"], "default");
        assert_eq!(v["exp"], 1_000 + 3_600);
        assert_eq!(v["token_type"], "Bearer");
        // Expired, garbage, too long: inactive, and nothing else is said.
        let inactive = serde_json::json!({ "active": false });
        assert_eq!(x.introspect(&i, &t, at(1_000 + 3_600)), inactive);
        assert_eq!(x.introspect(&i, "not.a.token", at(1_001)), inactive);
        assert_eq!(
            x.introspect(&i, &"a".repeat(MAX_TOKEN_LEN + 1), at(1_001)),
            inactive
        );
        // A tampered payload fails the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1].replace_range(0..4, "eyJh");
        assert_eq!(x.introspect(&i, &parts.join("."), at(1_001)), inactive);
    }

    #[test]
    fn foreign_keys_issuers_clients_and_revocations_are_inactive() {
        let registry = Registry::new([ClientRecord::new(spec("a", "pw")).unwrap()]).unwrap();
        let i = issuer(registry.clone(), key("k1"));
        let x = Introspector::default();
        let t = token(&i, "a", "pw", at(1_000));
        // Another deployment's key with the same kid: its tokens do not verify here.
        let other = issuer(registry.clone(), key("k1"));
        assert_eq!(x.introspect(&other, &t, at(1_001))["active"], false);
        // Another issuer with our keys: not ours either.
        let settings = TokenSettings {
            issuer: "https://elsewhere.example".into(),
            ..TokenSettings::default()
        };
        let keys = i.keys().unwrap();
        let same = KeySet::new(keys.active().clone(), keys.published().to_vec()).unwrap();
        let elsewhere = Issuer::new(settings, registry, Some(same));
        assert_eq!(x.introspect(&elsewhere, &t, at(1_001))["active"], false);
        // The client disappears, or revokes its tokens in bulk.
        i.replace_registry(Registry::default());
        assert_eq!(x.introspect(&i, &t, at(1_001))["active"], false);
        let mut s = spec("a", "pw");
        s.tokens_not_before = Some(at(1_000));
        i.replace_registry(Registry::new([ClientRecord::new(s.clone()).unwrap()]).unwrap());
        assert_eq!(
            x.introspect(&i, &t, at(1_001))["active"],
            true,
            "iat is not before"
        );
        s.tokens_not_before = Some(at(1_001));
        i.replace_registry(Registry::new([ClientRecord::new(s).unwrap()]).unwrap());
        assert_eq!(x.introspect(&i, &t, at(1_002))["active"], false);
        // A revoked jti.
        i.replace_registry(Registry::new([ClientRecord::new(spec("a", "pw")).unwrap()]).unwrap());
        let jti = x.introspect(&i, &t, at(1_001))["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        let list = Revocations::default()
            .with(&jti, 4_600, at(1_001))
            .unwrap()
            .unwrap();
        x.replace_revocations(list);
        assert_eq!(x.introspect(&i, &t, at(1_002))["active"], false);
    }
}
