//! What an access token contains, and minting one at a given time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{ClientRecord, CoreError, SigningKey, apk};

/// Issuer-wide token settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// The `iss` claim.
    pub issuer: String,
    /// Lifetime for clients that do not set their own.
    pub default_lifetime: Duration,
}

impl Default for TokenSettings {
    /// APK's: issuer `https://idp.am.wso2.com/token`, one hour.
    fn default() -> Self {
        TokenSettings {
            issuer: apk::ISSUER.to_owned(),
            default_lifetime: Duration::from_secs(apk::TOKEN_LIFETIME_SECS),
        }
    }
}

/// A minted token and what the token response says about it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The claims every token carries, in the contract's order.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: &'a str,
    #[serde(rename = "clientId")]
    client_id: &'a str,
    scope: &'a str,
}

/// Seconds since the Unix epoch (a clock before 1970 counts as 1970).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Mint a token for `client` with the granted `scope` at time `now`.
pub fn mint(
    key: &SigningKey,
    settings: &TokenSettings,
    client: &ClientRecord,
    scope: &str,
    now: SystemTime,
) -> Result<IssuedToken, CoreError> {
    mint_for_caller(key, settings, client, scope, None, now)
}

// Issue 11: the caller's identity in tokens issued on an assertion.
/// [`mint`], naming `caller` (who authenticated by assertion) in the client's
/// `assertionIdentityClaim` when it sets one; without either, exactly [`mint`]'s claims.
pub fn mint_for_caller(
    key: &SigningKey,
    settings: &TokenSettings,
    client: &ClientRecord,
    scope: &str,
    caller: Option<&str>,
    now: SystemTime,
) -> Result<IssuedToken, CoreError> {
    let lifetime = client
        .token_lifetime()
        .unwrap_or(settings.default_lifetime)
        .as_secs();
    let iat = unix_seconds(now);
    let mut jti = uuid::Uuid::encode_buffer();
    let jti = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut jti);
    let claims = Claims {
        iss: &settings.issuer,
        sub: client.client_id(),
        exp: iat + lifetime,
        nbf: iat,
        iat,
        jti,
        client_id: client.client_id(),
        scope,
    };
    let mut json = Vec::with_capacity(384);
    serde_json::to_writer(&mut json, &claims).map_err(|_| CoreError::Signing)?;
    let extra = client.extra_claims_json();
    if !extra.is_empty() {
        json.pop(); // the closing brace
        json.extend_from_slice(extra.as_bytes());
        json.push(b'}');
    }
    if let (Some(name), Some(caller)) = (&client.assertion_trust().identity_claim, caller) {
        json.pop();
        json.push(b',');
        serde_json::to_writer(&mut json, name).map_err(|_| CoreError::Signing)?;
        json.push(b':');
        serde_json::to_writer(&mut json, caller).map_err(|_| CoreError::Signing)?;
        json.push(b'}');
    }
    Ok(IssuedToken {
        access_token: key.sign_compact(&json)?,
        expires_in: lifetime,
        scope: scope.to_owned(),
    })
}

// Issue 12: tokens for people.
/// Who a person's token is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims<'a> {
    /// The user's stable id.
    pub sub: &'a str,
    /// APK's `organization` claim (its gateway maps it to `x-wso2-organization`).
    pub organization: Option<&'a str>,
    pub groups: &'a [String],
}

/// The claims of a person's access token: the client contract's, with the user as `sub`, then
/// `organization` and `groups`.
#[derive(Serialize)]
struct UserTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: &'a str,
    #[serde(rename = "clientId")]
    client_id: &'a str,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
}

/// Mint an access token for a person signed in to `client`, with the granted `scope`, at
/// `now`. The client's lifetime, audience and static claims apply as for its own tokens; a
/// static claim never overrides the user's (the contract's names come first, and a JSON
/// object's later duplicate is what a careless parser takes, so static claims that collide
/// with `organization` or `groups` are left out).
pub fn mint_for_user(
    key: &SigningKey,
    settings: &TokenSettings,
    client: &ClientRecord,
    user: &UserClaims<'_>,
    scope: &str,
    now: SystemTime,
) -> Result<IssuedToken, CoreError> {
    let lifetime = client
        .token_lifetime()
        .unwrap_or(settings.default_lifetime)
        .as_secs();
    let iat = unix_seconds(now);
    let mut jti = uuid::Uuid::encode_buffer();
    let jti = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut jti);
    let claims = UserTokenClaims {
        iss: &settings.issuer,
        sub: user.sub,
        exp: iat + lifetime,
        nbf: iat,
        iat,
        jti,
        client_id: client.client_id(),
        scope,
        organization: user.organization,
        groups: user.groups,
    };
    let mut value = serde_json::to_value(&claims).map_err(|_| CoreError::Signing)?;
    let extra = client.extra_claims_json();
    if !extra.is_empty()
        && let (Some(obj), Ok(serde_json::Value::Object(more))) = (
            value.as_object_mut(),
            serde_json::from_str::<serde_json::Value>(&format!("{{{}}}", &extra[1..])),
        )
    {
        for (k, v) in more {
            obj.entry(k).or_insert(v);
        }
    }
    let json = serde_json::to_vec(&value).map_err(|_| CoreError::Signing)?;
    Ok(IssuedToken {
        access_token: key.sign_compact(&json)?,
        expires_in: lifetime,
        scope: scope.to_owned(),
    })
}

/// What an ID token says beyond who the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenFacts<'a> {
    pub client_id: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: u64,
    /// The access token issued with it, for `at_hash`.
    pub access_token: &'a str,
    /// `email` (with `email_verified`) and `name`, when the user has them.
    pub email: Option<(&'a str, bool)>,
    pub name: Option<&'a str>,
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    at_hash: String,
    azp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of the access token's hash, with
/// the hash of the signing algorithm (SHA-256 for RS256 and ES256, SHA-512 for Ed25519).
pub fn at_hash(alg: crate::SigningAlgorithm, access_token: &str) -> String {
    use aws_lc_rs::digest;
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let algorithm = match alg {
        crate::SigningAlgorithm::EdDSA => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let d = digest::digest(algorithm, access_token.as_bytes());
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Mint an OpenID Connect ID token for `sub`, valid as long as the access token.
pub fn mint_id_token(
    key: &SigningKey,
    settings: &TokenSettings,
    sub: &str,
    facts: &IdTokenFacts<'_>,
    lifetime: u64,
    now: SystemTime,
) -> Result<String, CoreError> {
    let iat = unix_seconds(now);
    let claims = IdTokenClaims {
        iss: &settings.issuer,
        sub,
        aud: facts.client_id,
        exp: iat + lifetime,
        iat,
        auth_time: facts.auth_time,
        nonce: facts.nonce,
        at_hash: at_hash(key.alg(), facts.access_token),
        azp: facts.client_id,
        email: facts.email.map(|e| e.0),
        email_verified: facts.email.map(|e| e.1),
        name: facts.name,
    };
    let json = serde_json::to_vec(&claims).map_err(|_| CoreError::Signing)?;
    key.sign_compact(&json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyMaterial, SigningAlgorithm, client::tests::spec};
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};

    fn ed_key() -> SigningKey {
        SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap()
    }

    fn claims_of(token: &str) -> serde_json::Map<String, serde_json::Value> {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
    }

    // Issue 12
    #[test]
    fn a_persons_tokens_carry_the_user_and_the_id_token_binds_the_access_token() {
        let key = SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::ES256, 0).unwrap(),
        )
        .unwrap();
        let mut s = spec("web", "s");
        s.audience = vec!["orders-api".into()];
        s.claims.insert("organization".into(), "static".into());
        s.claims.insert("tier".into(), "gold".into());
        let client = ClientRecord::new(s).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let groups = vec!["admins".to_string()];
        let user = UserClaims {
            sub: "user-id",
            organization: Some("org1"),
            groups: &groups,
        };
        let settings = TokenSettings::default();
        let t = mint_for_user(&key, &settings, &client, &user, "openid default", now).unwrap();
        let c = claims_of(&t.access_token);
        assert_eq!(c["sub"], "user-id");
        assert_eq!(c["clientId"], "web");
        assert_eq!(c["scope"], "openid default");
        assert_eq!(
            c["organization"], "org1",
            "the user's, not the static claim"
        );
        assert_eq!(c["groups"], serde_json::json!(["admins"]));
        assert_eq!(c["aud"], "orders-api");
        assert_eq!(c["tier"], "gold");
        let facts = IdTokenFacts {
            client_id: "web",
            nonce: Some("n"),
            auth_time: 1_699_999_000,
            access_token: &t.access_token,
            email: Some(("a@example.com", true)),
            name: None,
        };
        let id = mint_id_token(&key, &settings, "user-id", &facts, 3600, now).unwrap();
        let c = claims_of(&id);
        assert_eq!(c["aud"], "web");
        assert_eq!(c["azp"], "web");
        assert_eq!(c["nonce"], "n");
        assert_eq!(c["auth_time"], 1_699_999_000u64);
        assert_eq!(c["exp"], 1_700_003_600u64);
        assert_eq!(c["email_verified"], true);
        assert!(!c.contains_key("name"));
        // at_hash: left half of SHA-256 of the access token, base64url.
        let full = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.access_token.as_bytes());
        assert_eq!(c["at_hash"], B64.encode(&full.as_ref()[..16]));
        assert_eq!(
            at_hash(SigningAlgorithm::EdDSA, "x").len(),
            43,
            "32 of SHA-512's bytes"
        );
    }

    #[test]
    fn claims_follow_the_contract() {
        let key = ed_key();
        let client = ClientRecord::new(spec("c1", "s")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = mint(&key, &TokenSettings::default(), &client, "default", now).unwrap();
        assert_eq!(t.expires_in, 3600);
        let c = claims_of(&t.access_token);
        let names: Vec<&str> = c.keys().map(String::as_str).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "clientId", "exp", "iat", "iss", "jti", "nbf", "scope", "sub"
            ]
        );
        assert_eq!(c["iss"], apk::ISSUER);
        assert_eq!(c["sub"], "c1");
        assert_eq!(c["clientId"], "c1");
        assert_eq!(c["iat"], 1_700_000_000u64);
        assert_eq!(c["nbf"], 1_700_000_000u64);
        assert_eq!(c["exp"], 1_700_003_600u64);
        assert_eq!(c["scope"], "default");
        assert!(uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn client_lifetime_audience_and_claims_apply() {
        let key = ed_key();
        let mut s = spec("c1", "s");
        s.token_lifetime = Some(Duration::from_secs(60));
        s.audience = vec!["orders-api".into()];
        s.claims.insert("organization".into(), "apps".into());
        let client = ClientRecord::new(s).unwrap();
        let t = mint(&key, &TokenSettings::default(), &client, "a b", UNIX_EPOCH).unwrap();
        assert_eq!(t.expires_in, 60);
        let c = claims_of(&t.access_token);
        assert_eq!(c["exp"], 60);
        assert_eq!(c["aud"], "orders-api");
        assert_eq!(c["organization"], "apps");
        assert_eq!(c["scope"], "a b");
    }

    #[test]
    fn debug_hides_the_token() {
        let t = IssuedToken {
            access_token: "eyJ.secret".into(),
            expires_in: 1,
            scope: "x".into(),
        };
        assert!(!format!("{t:?}").contains("eyJ"));
    }

    // Issue 11: the caller's identity in tokens issued on an assertion.
    #[test]
    fn the_identity_claim_names_the_caller_only_when_both_are_given() {
        let key = ed_key();
        let settings = TokenSettings::default();
        let mut s = spec("c1", "s");
        s.claims.insert("tier".into(), "gold".into());
        s.assertion.identity_claim = Some("caller".into());
        let named = ClientRecord::new(s).unwrap();
        let caller = "system:serviceaccount:apps:gateway";
        let t =
            mint_for_caller(&key, &settings, &named, "default", Some(caller), UNIX_EPOCH).unwrap();
        let c = claims_of(&t.access_token);
        assert_eq!(c["caller"], caller);
        assert_eq!(c["tier"], "gold");
        let payload = t.access_token.split('.').nth(1).unwrap();
        let raw = String::from_utf8(B64.decode(payload).unwrap()).unwrap();
        assert!(
            raw.ends_with(r#","tier":"gold","caller":"system:serviceaccount:apps:gateway"}"#),
            "after the static claims: {raw}"
        );
        let plain = mint_for_caller(&key, &settings, &named, "default", None, UNIX_EPOCH).unwrap();
        assert!(!claims_of(&plain.access_token).contains_key("caller"));
        let unnamed = ClientRecord::new(spec("c2", "s")).unwrap();
        let t = mint_for_caller(
            &key,
            &settings,
            &unnamed,
            "default",
            Some(caller),
            UNIX_EPOCH,
        )
        .unwrap();
        assert!(!claims_of(&t.access_token).contains_key("caller"));
        for taken in ["sub", "client_id", "organization", "azp", "tier"] {
            let mut s = spec("c3", "s");
            s.claims.insert("tier".into(), "gold".into());
            s.assertion.identity_claim = Some(taken.into());
            assert!(ClientRecord::new(s).is_err(), "{taken}");
        }
    }
}
