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
    Ok(IssuedToken {
        access_token: key.sign_compact(&json)?,
        expires_in: lifetime,
        scope: scope.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyMaterial, SigningAlgorithm, client::tests::spec};
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};

    fn claims_of(token: &str) -> serde_json::Map<String, serde_json::Value> {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn claims_follow_the_contract() {
        let key = SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap();
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
        let key = SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap();
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
}
