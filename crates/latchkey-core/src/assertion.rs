//! Client authentication by a signed JWT (RFC 7521, RFC 7523 §2.2): what an assertion must
//! look like, which keys a client trusts, and which `jti` was already used.
//!
//! The order is fixed so that an attacker's bytes are touched as little as possible: the size
//! first, then the header's `alg` against an allow-list (asymmetric only: `none` and HMAC are
//! refused), then the signature with a key the client trusts, and only then the claims.
//! Nothing here fetches keys: the caller passes them in, with the time.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde::Deserialize;

use crate::CoreError;

pub use jsonwebtoken::jwk::JwkSet;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Largest assertion read, in bytes: refused before any decoding. A projected ServiceAccount
/// token is ~1 KiB, a GitHub Actions token ~1.5 KiB, an RS256 private_key_jwt well under 1 KiB.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// Clock difference tolerated on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Default longest `exp - iat` of a private_key_jwt assertion.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Longest `exp - iat` of a federated issuer's token: it bounds how long a `jti` is remembered.
pub const MAX_FEDERATED_LIFETIME: Duration = Duration::from_secs(3600);

/// Longest `exp - iat` of a ServiceAccount token (the API server's own cap on TokenRequest is
/// 48 h; kubelet asks for 1 h by default).
pub const MAX_SERVICE_ACCOUNT_LIFETIME: Duration = Duration::from_secs(48 * 3600);

/// `sub` prefix of a Kubernetes ServiceAccount token: `system:serviceaccount:NS:NAME`.
pub const SERVICE_ACCOUNT_SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// The (namespace, name) a ServiceAccount token's `sub` names.
pub fn service_account_of(sub: &str) -> Option<(&str, &str)> {
    let rest = sub.strip_prefix(SERVICE_ACCOUNT_SUBJECT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The caller a federated assertion speaks for, as the identity claim shows it:
/// `{issuer}#{subject}` (an OpenID issuer has no fragment, so the first `#` splits it).
pub fn federated_caller(issuer: &str, subject: &str) -> String {
    format!("{issuer}#{subject}")
}

/// Keys one JWK Set may hold.
pub const MAX_JWKS_KEYS: usize = 32;

/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// Signature algorithms an assertion may use.
pub const ALLOWED_ALGS: [&str; 3] = ["RS256", "ES256", "EdDSA"];

/// The header and the (not yet trusted) claims of an assertion.
#[derive(Debug)]
pub struct Peeked {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Claims,
}

/// Registered claims of an assertion; other claims are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Audience,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub jti: Option<String>,
}

/// `aud`: one string or an array of them.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, wanted: &[String]) -> bool {
        match self {
            Audience::None => false,
            Audience::One(a) => wanted.iter().any(|w| w == a),
            Audience::Many(list) => list.iter().any(|a| wanted.iter().any(|w| w == a)),
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn refused(reason: &'static str) -> CoreError {
    CoreError::AssertionRefused(reason)
}

/// Size, shape and `alg` of an assertion, and its claims (unverified: they only say which
/// client and which keys to try).
pub fn peek(assertion: &str) -> Result<Peeked, CoreError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(refused("the assertion is larger than 8 KiB"));
    }
    let mut parts = assertion.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("the assertion is not a compact JWS"));
    };
    let header: RawHeader = B64
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused("the assertion's header is malformed"))?;
    let alg = match header.alg.as_deref() {
        Some("RS256") => Algorithm::RS256,
        Some("ES256") => Algorithm::ES256,
        Some("EdDSA") => Algorithm::EdDSA,
        Some("none") => return Err(refused("alg none is refused")),
        Some(a) if a.starts_with("HS") => return Err(refused("HMAC algorithms are refused")),
        _ => return Err(refused("the assertion's alg is not RS256, ES256 or EdDSA")),
    };
    if header.crit.is_some() {
        return Err(refused("the assertion has critical header parameters"));
    }
    let claims: Claims = B64
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused("the assertion's claims are malformed"))?;
    Ok(Peeked {
        alg,
        kid: header.kid,
        claims,
    })
}

/// A JWK Set a client or issuer publishes, checked: public asymmetric keys only (RSA of at
/// least 2048 bits, EC P-256, Ed25519), at most [`MAX_JWKS_KEYS`].
pub fn parse_jwks(json: &[u8]) -> Result<JwkSet, CoreError> {
    let bad = |m: &str| CoreError::InvalidClient(format!("JWK Set: {m}"));
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|_| bad("not a JSON object with \"keys\""))?;
    jwks_from_value(&value).map_err(|e| bad(&e))
}

/// [`parse_jwks`] of a JSON value; the error says why.
pub fn jwks_from_value(value: &serde_json::Value) -> Result<JwkSet, String> {
    let keys = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JSON object with \"keys\"")?;
    if keys.len() > MAX_JWKS_KEYS {
        return Err(format!("more than {MAX_JWKS_KEYS} keys"));
    }
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if k.get("d").is_some() {
            return Err(format!(
                "keys[{i}] is a private key: give the public key only"
            ));
        }
        let jwk: Jwk = serde_json::from_value(k.clone())
            .map_err(|e| format!("keys[{i}] is not a JWK ({e})"))?;
        check_key(&jwk).map_err(|m| format!("keys[{i}]: {m}"))?;
        out.push(jwk);
    }
    Ok(JwkSet { keys: out })
}

fn check_key(jwk: &Jwk) -> Result<(), &'static str> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = B64.decode(&p.n).map_err(|_| "n is not base64url")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < 2048 {
                return Err("RSA keys must have at least 2048 bits");
            }
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {}
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {}
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {
            return Err("only the P-256 and Ed25519 curves are accepted");
        }
        _ => return Err("only RSA, EC and OKP public keys are accepted"),
    }
    DecodingKey::from_jwk(jwk).map_err(|_| "the key cannot be used")?;
    Ok(())
}

/// The outcome of a signature check against a key set.
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    Valid,
    /// No key of the set fits (the `kid` is unknown, or no key of the alg's type): the set
    /// may be stale.
    NoKey,
    Invalid,
}

fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let family = matches!(
        (&jwk.algorithm, alg),
        (AlgorithmParameters::RSA(_), Algorithm::RS256)
            | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    );
    use jsonwebtoken::jwk::KeyAlgorithm as K;
    let declared = jwk.common.key_algorithm.is_none_or(|ka| {
        matches!(
            (ka, alg),
            (K::RS256, Algorithm::RS256)
                | (K::ES256, Algorithm::ES256)
                | (K::EdDSA, Algorithm::EdDSA)
        )
    });
    let for_signing = jwk
        .common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature);
    family && declared && for_signing
}

/// Check the assertion's signature with the keys that fit its `kid` and `alg`.
pub fn verify_signature(assertion: &str, peeked: &Peeked, keys: &JwkSet) -> SignatureCheck {
    let Some((message, signature)) = assertion.rsplit_once('.') else {
        return SignatureCheck::Invalid;
    };
    let mut tried = false;
    for jwk in &keys.keys {
        if peeked.kid.is_some() && jwk.common.key_id != peeked.kid {
            continue;
        }
        if !fits(jwk, peeked.alg) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        tried = true;
        if jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, peeked.alg)
            .unwrap_or(false)
        {
            return SignatureCheck::Valid;
        }
    }
    if tried {
        SignatureCheck::Invalid
    } else {
        SignatureCheck::NoKey
    }
}

/// What the claims of a verified assertion must say.
#[derive(Debug)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    /// `aud` must name one of these.
    pub audiences: &'a [String],
    /// Longest `exp - iat` (or `exp - now` without `iat`).
    pub max_lifetime: Duration,
    /// Whether a `jti` is required (it is for private_key_jwt and federated issuers).
    pub require_jti: bool,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Check `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, the lifetime and the `jti`'s presence at
/// `now`. Returns `exp` (seconds since the epoch), for the replay cache.
pub fn check_claims(
    claims: &Claims,
    expect: &Expect<'_>,
    now: SystemTime,
) -> Result<u64, CoreError> {
    if claims.iss.as_deref() != Some(expect.issuer) {
        return Err(refused("the assertion's iss is not the expected issuer"));
    }
    if claims.sub.as_deref() != Some(expect.subject) {
        return Err(refused("the assertion's sub is not the expected subject"));
    }
    if !claims.aud.contains_any(expect.audiences) {
        return Err(refused("the assertion's aud does not name this server"));
    }
    let now = secs(now);
    let skew = CLOCK_SKEW.as_secs_f64();
    let Some(exp) = claims.exp.filter(|e| e.is_finite()) else {
        return Err(refused("the assertion has no exp"));
    };
    if now > exp + skew {
        return Err(refused("the assertion has expired"));
    }
    if claims
        .nbf
        .is_some_and(|nbf| !nbf.is_finite() || now + skew < nbf)
    {
        return Err(refused("the assertion is not valid yet (nbf)"));
    }
    if claims
        .iat
        .is_some_and(|iat| !iat.is_finite() || iat > now + skew)
    {
        return Err(refused("the assertion was issued in the future (iat)"));
    }
    let start = claims.iat.unwrap_or(now);
    if exp - start > expect.max_lifetime.as_secs_f64() + skew {
        return Err(refused("the assertion's lifetime is longer than allowed"));
    }
    if expect.require_jti {
        match claims.jti.as_deref() {
            None | Some("") => return Err(refused("the assertion has no jti")),
            Some(j) if j.len() > MAX_JTI_LEN => {
                return Err(refused("the assertion's jti is too long"));
            }
            Some(_) => {}
        }
    }
    Ok(exp.max(0.0) as u64)
}

const SHARDS: usize = 16;

/// `jti`s seen, each kept until its assertion expires (plus the skew), so a replay within the
/// assertion's life is refused. Sharded by digest so that requests rarely wait on one lock;
/// bounded: when a shard is full of live entries, new assertions are refused (fail closed)
/// rather than forgetting one that could then be replayed.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Vec<Mutex<HashMap<[u8; 32], u64>>>,
    per_shard: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live `jti`s.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Admit `jti` of `issuer` for `client_id` once, until `exp` (seconds since the epoch).
    pub fn admit(
        &self,
        client_id: &str,
        issuer: &str,
        jti: &str,
        exp: u64,
        now: SystemTime,
    ) -> Result<(), CoreError> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [client_id, issuer, jti] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let now = secs(now) as u64;
        let until = exp.saturating_add(CLOCK_SKEW.as_secs());
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|u| *u >= now) {
            return Err(refused("the assertion's jti was already used"));
        }
        if map.len() >= self.per_shard {
            map.retain(|_, u| *u >= now);
            if map.len() >= self.per_shard {
                return Err(refused(
                    "too many live assertions to remember: retry shortly",
                ));
            }
        }
        map.insert(key, until);
        Ok(())
    }

    /// Live entries (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An external issuer a client trusts (a CI platform, another cluster): tokens it signs for
/// exactly `subject` authenticate the client.
#[derive(Debug, Clone, PartialEq)]
pub struct FederatedIdentity {
    /// The `iss` (an https URL; its OpenID discovery document names the JWKS).
    pub issuer: String,
    /// The exact `sub` accepted.
    pub subject: String,
    /// The `aud` required; `None`: one of the server's own audiences.
    pub audience: Option<String>,
    /// Keys given in the definition (air-gapped use): no discovery then.
    pub jwks: Option<JwkSet>,
}

/// Who may authenticate as a client with an assertion; empty: nobody.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssertionTrust {
    /// private_key_jwt: the client's own public keys.
    pub jwks: Option<JwkSet>,
    /// private_key_jwt: where the client publishes its public keys (https).
    pub jwks_uri: Option<String>,
    /// External issuers and the subject each may assert.
    pub federated: Vec<FederatedIdentity>,
    /// Kubernetes ServiceAccounts (namespace, name) whose tokens authenticate the client.
    pub service_accounts: Vec<(String, String)>,
    /// private_key_jwt: the client's public keys in a key of a Secret or ConfigMap.
    pub jwks_from: Option<ObjectKeyRef>,
    /// The claim that names the caller in tokens issued on a ServiceAccount or federated
    /// assertion (`spec.assertionIdentityClaim`); `None`: tokens carry the contract's claims
    /// only.
    pub identity_claim: Option<String>,
}

/// A key of a Secret or ConfigMap holding a JWK Set (`latchkey run`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKeyRef {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl AssertionTrust {
    /// Whether any assertion can authenticate the client.
    pub fn is_empty(&self) -> bool {
        self.jwks.is_none()
            && self.jwks_uri.is_none()
            && self.jwks_from.is_none()
            && self.federated.is_empty()
            && self.service_accounts.is_empty()
    }

    /// Whether the ServiceAccount `namespace/name` may act as the client.
    pub fn allows_service_account(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts
            .iter()
            .any(|(ns, n)| ns == namespace && n == name)
    }

    /// Whether the client accepts private_key_jwt (its own keys).
    pub fn has_client_keys(&self) -> bool {
        self.jwks.is_some() || self.jwks_uri.is_some() || self.jwks_from.is_some()
    }

    /// The federated identity for `issuer`, if the client trusts it.
    pub fn federated_for(&self, issuer: &str) -> Option<&FederatedIdentity> {
        self.federated.iter().find(|f| f.issuer == issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn ed_pair() -> (EncodingKey, JwkSet) {
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use aws_lc_rs::signature::KeyPair;
        let x = B64.encode(pair.public_key().as_ref());
        let jwks = jwks_from_value(
            &json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]}),
        )
        .unwrap();
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwks)
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn sign(key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        encode(&h, &claims, key).unwrap()
    }

    fn good_claims() -> serde_json::Value {
        json!({"iss": "c", "sub": "c", "aud": "https://idp/token", "iat": 1_800_000_000u64,
               "exp": 1_800_000_060u64, "jti": "j1"})
    }

    fn expect(aud: &[String]) -> Expect<'_> {
        Expect {
            issuer: "c",
            subject: "c",
            audiences: aud,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            require_jti: true,
        }
    }

    #[test]
    fn a_good_assertion_passes_every_step() {
        let (key, jwks) = ed_pair();
        let token = sign(&key, good_claims());
        let p = peek(&token).unwrap();
        assert_eq!(verify_signature(&token, &p, &jwks), SignatureCheck::Valid);
        let aud = vec!["https://idp/token".to_string()];
        assert_eq!(
            check_claims(&p.claims, &expect(&aud), now()).unwrap(),
            1_800_000_060
        );
    }

    #[test]
    fn none_hmac_oversize_and_garbage_are_refused_before_any_key() {
        let body = B64.encode(good_claims().to_string());
        for header in [
            json!({"alg": "none"}),
            json!({"alg": "HS256"}),
            json!({"alg": "PS256"}),
        ] {
            let t = format!("{}.{body}.", B64.encode(header.to_string()));
            assert!(peek(&t).is_err(), "{header}");
        }
        assert!(peek(&"a".repeat(MAX_ASSERTION_BYTES + 1)).is_err());
        assert!(peek("a.b").is_err());
        assert!(peek("a.b.c.d").is_err());
    }

    #[test]
    fn a_wrong_key_or_unknown_kid_is_not_valid() {
        let (key, _) = ed_pair();
        let (_, other) = ed_pair();
        let token = sign(&key, good_claims());
        let p = peek(&token).unwrap();
        assert_eq!(
            verify_signature(&token, &p, &other),
            SignatureCheck::Invalid
        );
        let mut renamed = other.clone();
        renamed.keys[0].common.key_id = Some("k2".into());
        assert_eq!(
            verify_signature(&token, &p, &renamed),
            SignatureCheck::NoKey
        );
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let aud = vec!["https://idp/token".to_string()];
        let mut cases = vec![];
        for (k, v) in [
            ("iss", json!("x")),
            ("sub", json!("x")),
            ("aud", json!("https://elsewhere")),
            ("exp", json!(1_799_999_000u64)),
            ("nbf", json!(1_800_000_100u64)),
            ("iat", json!(1_800_000_100u64)),
            ("jti", json!("")),
        ] {
            let mut c = good_claims();
            c[k] = v;
            cases.push(c);
        }
        let mut long = good_claims();
        long["exp"] = json!(1_800_000_000u64 + 3600);
        cases.push(long);
        let mut no_exp = good_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        cases.push(no_exp);
        for c in cases {
            let claims: Claims = serde_json::from_value(c.clone()).unwrap();
            assert!(check_claims(&claims, &expect(&aud), now()).is_err(), "{c}");
        }
        let mut many = good_claims();
        many["aud"] = json!(["a", "https://idp/token"]);
        let claims: Claims = serde_json::from_value(many).unwrap();
        assert!(check_claims(&claims, &expect(&aud), now()).is_ok());
    }

    #[test]
    fn jwks_accept_public_asymmetric_keys_only() {
        assert!(jwks_from_value(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err());
        assert!(
            jwks_from_value(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519",
            "x": B64.encode([1u8; 32]), "d": B64.encode([2u8; 32])}]}))
            .is_err()
        );
        let small = json!({"keys": [{"kty": "RSA", "n": B64.encode([0xffu8; 128]), "e": "AQAB"}]});
        assert!(jwks_from_value(&small).is_err(), "1024-bit RSA");
        let big = json!({"keys": [{"kty": "RSA", "n": B64.encode([0xffu8; 256]), "e": "AQAB"}]});
        assert!(jwks_from_value(&big).is_ok());
        assert!(parse_jwks(b"[]").is_err());
    }

    #[test]
    fn a_jti_is_admitted_once_until_it_expires_and_the_cache_is_bounded() {
        let cache = ReplayCache::new(SHARDS);
        let exp = 1_800_000_060;
        cache.admit("c", "c", "j1", exp, now()).unwrap();
        assert!(cache.admit("c", "c", "j1", exp, now()).is_err());
        assert!(
            cache.admit("other", "other", "j1", exp, now()).is_ok(),
            "per client"
        );
        let later = now() + Duration::from_secs(60) + CLOCK_SKEW + Duration::from_secs(1);
        assert!(
            cache.admit("c", "c", "j1", exp + 600, later).is_ok(),
            "expired entries go"
        );
        // One entry per shard: a full shard of live entries refuses instead of forgetting.
        let full = ReplayCache::new(1);
        let mut refused = 0;
        for i in 0..64 {
            if full.admit("c", "c", &format!("j{i}"), exp, now()).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert!(full.len() <= SHARDS);
    }
}
