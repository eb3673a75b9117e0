//! One registered client, checked and pre-rendered when it is loaded so that issuing a token
//! only reads it.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::{
    CoreError, GrantType, ScopePolicy, SecretDigest, assertion::AssertionTrust,
    token_endpoint_auth::TokenEndpointAuthMethod,
};

/// Claim names a client's static claims may not set: RFC 7519's registered names and the ones
/// the token contract fills itself.
pub const RESERVED_CLAIMS: [&str; 9] = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "clientId", "scope",
];

// Issue 11: the caller's identity in tokens issued on an assertion.
/// Names `assertionIdentityClaim` may not take: the contract's and RFC 7519's, the ones
/// people's tokens and the APK profile set (`organization`, `groups`), and OAuth's for the
/// client (`client_id`, `azp`).
pub const IDENTITY_CLAIM_TAKEN: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "scope",
    "clientId",
    "client_id",
    "organization",
    "groups",
    "azp",
];

/// The longest token lifetime a client may ask for. Key rotation keeps a retired key published
/// for at least this long, so it bounds how long a compromised key stays trusted.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Longest client id accepted, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 256;

/// What a client definition says, before it is checked. The secret arrives as a keyed digest
/// ([`SecretDigest::of_secret`]), so no store keeps a raw secret longer than it takes to read it.
#[derive(Clone)]
pub struct ClientSpec {
    pub client_id: String,
    pub secret: SecretDigest,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audience: Vec<String>,
    pub token_lifetime: Option<Duration>,
    pub claims: Map<String, Value>,
    pub disabled: bool,
    /// Where the definition came from (`namespace/name`, `file#doc`), for logs and errors.
    pub origin: String,
    // Issue 11: client authentication by assertion.
    /// Who may authenticate as this client with a signed assertion (RFC 7523).
    pub assertion: AssertionTrust,
    // Issue 13: a previous secret, still accepted until a time, so a secret rotates without
    // downtime.
    /// The digest of the previous secret and the instant it stops being accepted.
    pub previous_secret: Option<(SecretDigest, SystemTime)>,
    /// Whether the client may call the introspection endpoint.
    pub may_introspect: bool,
    /// Tokens issued to the client before this instant are revoked (bulk revocation).
    pub tokens_not_before: Option<SystemTime>,
    // Issue 12: browser clients.
    /// Where the authorization endpoint may send the user back: compared exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the user back: compared exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// A first-party client signs users in without a consent page.
    pub first_party: bool,
    /// Organizations whose users may sign in to the client; empty: any.
    pub allowed_organizations: Vec<String>,
    /// The one method the client authenticates with; `None`: any it has credentials for.
    /// `Some(TokenEndpointAuthMethod::None)` is a public client.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            client_id: String::new(),
            // Matches no presented secret: a spec whose secret was never set cannot authenticate.
            secret: SecretDigest::decoy(),
            grant_types: Vec::new(),
            scopes: Vec::new(),
            default_scopes: Vec::new(),
            audience: Vec::new(),
            token_lifetime: None,
            claims: Map::new(),
            disabled: false,
            origin: String::new(),
            // Issue 11: client authentication by assertion.
            assertion: AssertionTrust::default(),
            // Issue 13
            previous_secret: None,
            may_introspect: false,
            tokens_not_before: None,
            // Issue 12
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
            allowed_organizations: Vec::new(),
            token_endpoint_auth_method: None,
        }
    }
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A checked client, as the token endpoint reads it.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    client_id: String,
    secret: SecretDigest,
    grant_types: Vec<GrantType>,
    scopes: ScopePolicy,
    token_lifetime: Option<Duration>,
    disabled: bool,
    origin: String,
    /// `,"aud":…,"claim":…` ready to close a token's claims object; empty when none.
    extra_claims_json: String,
    // Issue 11: client authentication by assertion.
    assertion: AssertionTrust,
    // Issue 13: the previous secret and when it stops being accepted. Without one, a decoy
    // that expired at the epoch: checking it costs the same, so nothing tells the two apart.
    previous_secret: SecretDigest,
    previous_until: SystemTime,
    may_introspect: bool,
    tokens_not_before: Option<SystemTime>,
    // Issue 12: browser clients.
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    first_party: bool,
    allowed_organizations: Vec<String>,
    token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
}

/// Whether `id` is a client id of RFC 6749 Appendix A: `VSCHAR` (%x20-7E), spaces and ':'
/// included (HTTP Basic form-encodes both, so they are unambiguous), up to 256 characters.
pub fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&id.len()) && id.bytes().all(|b| (0x20..=0x7E).contains(&b))
}

/// [`is_client_id`], with the reason when not.
fn check_client_id(id: &str) -> Result<(), CoreError> {
    if id.is_empty() {
        return Err(CoreError::InvalidClient("client id is empty".into()));
    }
    if id.len() > MAX_CLIENT_ID_LEN {
        return Err(CoreError::InvalidClient(format!(
            "client id is longer than {MAX_CLIENT_ID_LEN} bytes"
        )));
    }
    if !is_client_id(id) {
        return Err(CoreError::InvalidClient(format!(
            "client id {id:?} must be printable ASCII (spaces included)"
        )));
    }
    Ok(())
}

impl ClientRecord {
    /// Check a definition and prepare it for issuing.
    pub fn new(spec: ClientSpec) -> Result<ClientRecord, CoreError> {
        check_client_id(&spec.client_id)?;
        if let Some(lifetime) = spec.token_lifetime
            && (lifetime < Duration::from_secs(1) || lifetime > MAX_TOKEN_LIFETIME)
        {
            return Err(CoreError::InvalidClient(format!(
                "token lifetime must be between 1s and {}s",
                MAX_TOKEN_LIFETIME.as_secs()
            )));
        }
        let scopes = ScopePolicy::new(&spec.scopes, &spec.default_scopes)?;
        let extra_claims_json = render_extra_claims(&spec.audience, &spec.claims)?;
        // Issue 11: the caller's identity claim.
        if let Some(name) = &spec.assertion.identity_claim
            && (name.is_empty()
                || IDENTITY_CLAIM_TAKEN.contains(&name.as_str())
                || spec.claims.contains_key(name))
        {
            return Err(CoreError::InvalidClient(format!(
                "assertionIdentityClaim {name:?} is a claim Latchkey or the client's static                  claims already set"
            )));
        }
        let mut grant_types = spec.grant_types;
        grant_types.dedup();
        let previous = spec
            .previous_secret
            .unwrap_or_else(|| (SecretDigest::decoy(), SystemTime::UNIX_EPOCH));
        Ok(ClientRecord {
            client_id: spec.client_id,
            secret: spec.secret,
            grant_types,
            scopes,
            token_lifetime: spec.token_lifetime,
            disabled: spec.disabled,
            origin: spec.origin,
            extra_claims_json,
            // Issue 11: client authentication by assertion.
            assertion: spec.assertion,
            // Issue 13
            previous_secret: previous.0,
            previous_until: previous.1,
            may_introspect: spec.may_introspect,
            tokens_not_before: spec.tokens_not_before,
            // Issue 12
            redirect_uris: spec.redirect_uris,
            post_logout_redirect_uris: spec.post_logout_redirect_uris,
            first_party: spec.first_party,
            allowed_organizations: spec.allowed_organizations,
            token_endpoint_auth_method: spec.token_endpoint_auth_method,
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn secret_digest(&self) -> &SecretDigest {
        &self.secret
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    pub fn scopes(&self) -> &ScopePolicy {
        &self.scopes
    }

    /// The client's own lifetime, if it sets one.
    pub fn token_lifetime(&self) -> Option<Duration> {
        self.token_lifetime
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The pre-rendered `aud` and static claims, each preceded by a comma.
    pub fn extra_claims_json(&self) -> &str {
        &self.extra_claims_json
    }

    // Issue 11: client authentication by assertion.
    /// Who may authenticate as this client with an assertion.
    pub fn assertion_trust(&self) -> &AssertionTrust {
        &self.assertion
    }

    // Issue 13: secret rotation.
    /// Whether `presented` (a digest of the presented secret) is the current secret, or the
    /// previous one before it stops at `now`. Both comparisons always run, in constant time.
    pub fn secret_matches(&self, presented: &SecretDigest, now: SystemTime) -> bool {
        let current = self.secret.ct_eq(presented);
        let previous = self.previous_secret.ct_eq(presented);
        current | (previous & (now < self.previous_until))
    }

    /// Whether the client may call the introspection endpoint.
    pub fn may_introspect(&self) -> bool {
        self.may_introspect
    }

    /// Tokens issued to the client before this instant are revoked.
    pub fn tokens_not_before(&self) -> Option<SystemTime> {
        self.tokens_not_before
    }

    /// When the previous secret stops being accepted, if the client has one.
    pub fn previous_secret_until(&self) -> Option<SystemTime> {
        (self.previous_until > SystemTime::UNIX_EPOCH).then_some(self.previous_until)
    }

    // Issue 12: browser clients.
    /// Whether `uri` is one of the client's redirect URIs, character for character (no
    /// prefix, case or percent-decoding leeway: anything else is an open redirect).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `uri` is one of the client's post-logout redirect URIs, exactly.
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// The client's only redirect URI, which a request may then leave out (RFC 6749 §3.1.2.3).
    pub fn sole_redirect_uri(&self) -> Option<&str> {
        match self.redirect_uris.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// Whether the client signs users in without asking for consent.
    pub fn is_first_party(&self) -> bool {
        self.first_party
    }

    /// Whether a user of `organization` may sign in to the client (any, when the client
    /// names none).
    pub fn allows_organization(&self, organization: &str) -> bool {
        self.allowed_organizations.is_empty()
            || self.allowed_organizations.iter().any(|o| o == organization)
    }

    /// The organizations the client names (empty: any).
    pub fn allowed_organizations(&self) -> &[String] {
        &self.allowed_organizations
    }

    /// The one method the client authenticates with, if it names one.
    pub fn token_endpoint_auth_method(&self) -> Option<TokenEndpointAuthMethod> {
        self.token_endpoint_auth_method
    }

    /// Whether the client is public (RFC 6749 §2.1): no credentials, `client_id` only, PKCE
    /// required.
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == Some(TokenEndpointAuthMethod::None)
    }
}

fn render_extra_claims(
    audience: &[String],
    claims: &Map<String, Value>,
) -> Result<String, CoreError> {
    let mut out = String::new();
    let push = |out: &mut String, name: &str, value: &Value| {
        out.push(',');
        out.push_str(&Value::String(name.to_owned()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    };
    if audience.iter().any(|a| a.is_empty()) {
        return Err(CoreError::InvalidClient(
            "audience entries must not be empty".into(),
        ));
    }
    match audience {
        [] => {}
        [one] => push(&mut out, "aud", &Value::String(one.clone())),
        many => push(&mut out, "aud", &Value::from(many.to_vec())),
    }
    for (name, value) in claims {
        if RESERVED_CLAIMS.contains(&name.as_str()) {
            return Err(CoreError::InvalidClient(format!(
                "claim {name:?} is set by Latchkey and cannot be a static claim"
            )));
        }
        if name.is_empty() {
            return Err(CoreError::InvalidClient(
                "claim names must not be empty".into(),
            ));
        }
        push(&mut out, name, value);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(id: &str, secret: &str) -> ClientSpec {
        ClientSpec {
            client_id: id.into(),
            secret: SecretDigest::of_secret(secret.as_bytes()).unwrap(),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["apk:*".into()],
            default_scopes: vec!["default".into()],
            origin: "test".into(),
            ..ClientSpec::default()
        }
    }

    #[test]
    fn renders_audience_then_claims_by_name() {
        let mut s = spec("a", "b");
        s.audience = vec!["orders-api".into()];
        s.claims.insert("organization".into(), "apps".into());
        s.claims
            .insert("groups".into(), serde_json::json!(["x", "y"]));
        let c = ClientRecord::new(s).unwrap();
        assert_eq!(
            c.extra_claims_json(),
            r#","aud":"orders-api","groups":["x","y"],"organization":"apps""#
        );
        let mut s = spec("a", "b");
        s.audience = vec!["x".into(), "y".into()];
        assert_eq!(
            ClientRecord::new(s).unwrap().extra_claims_json(),
            r#","aud":["x","y"]"#
        );
    }

    #[test]
    fn rejects_reserved_claims_and_bad_fields() {
        for name in RESERVED_CLAIMS {
            let mut s = spec("a", "b");
            s.claims.insert(name.into(), "x".into());
            assert!(ClientRecord::new(s).is_err(), "{name}");
        }
        assert!(ClientRecord::new(spec("", "b")).is_err());
        for bad in ["a\tb", "caf\u{e9}", "a\x7f", "\n"] {
            assert!(ClientRecord::new(spec(bad, "b")).is_err(), "{bad:?}");
        }
        assert!(ClientRecord::new(spec(&"a".repeat(MAX_CLIENT_ID_LEN + 1), "b")).is_err());
        assert!(
            SecretDigest::of_secret(b"").is_err(),
            "an empty secret is refused"
        );
        let mut s = spec("a", "b");
        s.token_lifetime = Some(Duration::from_secs(0));
        assert!(ClientRecord::new(s).is_err());
        let mut s = spec("a", "b");
        s.token_lifetime = Some(MAX_TOKEN_LIFETIME + Duration::from_secs(1));
        assert!(ClientRecord::new(s).is_err());
    }

    #[test]
    fn client_ids_are_any_vschar_up_to_256() {
        for ok in [
            "a",
            "a b",
            "a:b",
            " ",
            "https://app.example.com/client.json",
            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            &"x".repeat(MAX_CLIENT_ID_LEN),
        ] {
            assert!(ClientRecord::new(spec(ok, "b")).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn previous_secret_is_accepted_until_it_stops() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut s = spec("a", "new");
        s.previous_secret = Some((SecretDigest::of_secret(b"old").unwrap(), at));
        let c = ClientRecord::new(s).unwrap();
        let old = SecretDigest::of(b"old");
        let new = SecretDigest::of(b"new");
        let before = at - Duration::from_secs(1);
        assert!(c.secret_matches(&new, before));
        assert!(c.secret_matches(&old, before));
        assert!(c.secret_matches(&new, at));
        assert!(
            !c.secret_matches(&old, at),
            "refused from the stated instant"
        );
        assert!(!c.secret_matches(&SecretDigest::of(b"other"), before));
        assert_eq!(c.previous_secret_until(), Some(at));
        let plain = ClientRecord::new(spec("a", "new")).unwrap();
        assert!(!plain.secret_matches(&old, SystemTime::UNIX_EPOCH));
        assert_eq!(plain.previous_secret_until(), None);
    }

    #[test]
    fn redirect_uris_match_exactly_and_organizations_filter() {
        let mut s = spec("web", "pw");
        s.redirect_uris = vec!["https://app.example.com/cb".into()];
        s.post_logout_redirect_uris = vec!["https://app.example.com/bye".into()];
        s.allowed_organizations = vec!["org1".into()];
        let c = ClientRecord::new(s.clone()).unwrap();
        assert!(c.has_redirect_uri("https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb/",
            "https://app.example.com/c",
            "https://app.example.com/cb?x=1",
            "https://APP.example.com/cb",
            "https://app.example.com/%63b",
            "https://app.example.com/cb#f",
            "",
        ] {
            assert!(!c.has_redirect_uri(bad), "{bad}");
        }
        assert!(!c.has_redirect_uri("https://app.example.com/bye"));
        assert!(c.has_post_logout_redirect_uri("https://app.example.com/bye"));
        assert!(!c.has_post_logout_redirect_uri("https://app.example.com/cb"));
        assert_eq!(c.sole_redirect_uri(), Some("https://app.example.com/cb"));
        assert!(c.allows_organization("org1"));
        assert!(!c.allows_organization("org2"));
        assert!(!c.is_first_party());

        s.redirect_uris.push("http://127.0.0.1/cb".into());
        s.allowed_organizations.clear();
        s.first_party = true;
        let c = ClientRecord::new(s).unwrap();
        assert_eq!(c.sole_redirect_uri(), None);
        assert!(c.allows_organization("org2"));
        assert!(c.is_first_party());
        let none = ClientRecord::new(spec("m2m", "pw")).unwrap();
        assert!(!none.has_redirect_uri(""));
        assert_eq!(none.sole_redirect_uri(), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = spec("a", "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let c = ClientRecord::new(s).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
