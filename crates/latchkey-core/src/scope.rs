//! Which scopes a client may ask for and what it gets when it asks for none.
//!
//! Rules: `default` is always allowed; an entry ending in `*` allows every scope that starts
//! with what precedes the `*` (a lone `*` allows any scope); anything else is an exact name.
//! Requested scopes are space-separated (RFC 6749 §3.3); a request naming a scope that is not
//! allowed is refused whole rather than silently narrowed, so a gateway never gets less than
//! it thinks.

use crate::{CoreError, OAuthError, oauth::ErrorCode};

/// The scope every client may always ask for and that clients get by default.
pub const DEFAULT_SCOPE: &str = "default";

/// Whether `s` is a scope token of RFC 6749 §3.3 (`%x21 / %x23-5B / %x5D-7E`, at least one).
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(entry: &str) -> Result<Pattern, CoreError> {
        if !is_scope_token(entry) {
            return Err(CoreError::InvalidScope(format!(
                "{entry:?} is not a scope (printable ASCII without space, '\"' or '\\')"
            )));
        }
        match entry.find('*') {
            None => Ok(Pattern::Exact(entry.to_owned())),
            Some(i) if i == entry.len() - 1 => Ok(Pattern::Prefix(entry[..i].to_owned())),
            Some(_) => Err(CoreError::InvalidScope(format!(
                "{entry:?}: '*' is only allowed at the end"
            ))),
        }
    }

    fn allows(&self, scope: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == scope,
            Pattern::Prefix(prefix) => scope.len() > prefix.len() && scope.starts_with(prefix),
        }
    }
}

/// A client's scope rules, checked once when the client is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePolicy {
    allowed: Vec<Pattern>,
    /// The granted string for a request without `scope`, joined once.
    default_grant: String,
}

impl ScopePolicy {
    /// Build a policy. Every default scope must be a concrete scope the policy allows.
    pub fn new<S: AsRef<str>>(allowed: &[S], defaults: &[S]) -> Result<ScopePolicy, CoreError> {
        let allowed = allowed
            .iter()
            .map(|s| Pattern::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = ScopePolicy {
            allowed,
            default_grant: String::new(),
        };
        let mut grant: Vec<&str> = Vec::new();
        for d in defaults {
            let d = d.as_ref();
            if !is_scope_token(d) || d.contains('*') {
                return Err(CoreError::InvalidScope(format!(
                    "default scope {d:?} must be a plain scope name"
                )));
            }
            if !policy.allows(d) {
                return Err(CoreError::InvalidScope(format!(
                    "default scope {d:?} is not among the allowed scopes"
                )));
            }
            if !grant.contains(&d) {
                grant.push(d);
            }
        }
        Ok(ScopePolicy {
            default_grant: grant.join(" "),
            ..policy
        })
    }

    /// Whether a single requested scope is allowed.
    pub fn allows(&self, scope: &str) -> bool {
        scope == DEFAULT_SCOPE || self.allowed.iter().any(|p| p.allows(scope))
    }

    /// The scope string to grant for a request's `scope` parameter (absent or empty: the
    /// defaults). Duplicates are dropped, order kept.
    pub fn grant(&self, requested: Option<&str>) -> Result<String, OAuthError> {
        let Some(requested) = requested.filter(|r| !r.is_empty()) else {
            return Ok(self.default_grant.clone());
        };
        let mut granted: Vec<&str> = Vec::new();
        for scope in requested.split(' ') {
            if scope.is_empty() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scopes must be separated by exactly one space",
                ));
            }
            if !is_scope_token(scope) || scope.contains('*') {
                // Never echoed: it may hold anything a caller sent.
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a requested scope is malformed: scopes are printable ASCII without \
                     double quote, backslash or '*'",
                ));
            }
            if !self.allows(scope) {
                // A scope token is within the error_description charset, so it can be named.
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {} is not allowed for this client", truncate(scope)),
                ));
            }
            if !granted.contains(&scope) {
                granted.push(scope);
            }
        }
        Ok(granted.join(" "))
    }
}

/// Keep error descriptions short whatever a caller sends.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], defaults: &[&str]) -> ScopePolicy {
        ScopePolicy::new(allowed, defaults).unwrap()
    }

    #[test]
    fn no_scope_gets_the_defaults() {
        let p = policy(&["orders:read"], &["default"]);
        assert_eq!(p.grant(None).unwrap(), "default");
        assert_eq!(p.grant(Some("")).unwrap(), "default");
        let p = policy(&["orders:read"], &["orders:read", "default", "orders:read"]);
        assert_eq!(p.grant(None).unwrap(), "orders:read default");
    }

    #[test]
    fn default_is_always_allowed() {
        let p = policy(&[], &["default"]);
        assert_eq!(p.grant(Some("default")).unwrap(), "default");
    }

    #[test]
    fn trailing_star_matches_a_prefix() {
        let p = policy(&["apk:*", "orders:read"], &["default"]);
        assert_eq!(
            p.grant(Some("apk:api_create orders:read")).unwrap(),
            "apk:api_create orders:read"
        );
        assert_eq!(p.grant(Some("apk:x apk:x")).unwrap(), "apk:x");
        assert_eq!(
            p.grant(Some("apk:")).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        assert_eq!(
            p.grant(Some("apkx")).unwrap_err().code,
            ErrorCode::InvalidScope
        );
        let any = policy(&["*"], &["default"]);
        assert_eq!(any.grant(Some("anything")).unwrap(), "anything");
    }

    #[test]
    fn one_disallowed_scope_refuses_the_request() {
        let p = policy(&["orders:read"], &["default"]);
        let e = p.grant(Some("orders:read orders:write")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description().contains("orders:write"));
    }

    #[test]
    fn malformed_requests_are_invalid_scope() {
        let p = policy(&["*"], &["default"]);
        for bad in ["a  b", " a", "a ", "a\"b", "a\\b", "apk:*", "é"] {
            assert_eq!(
                p.grant(Some(bad)).unwrap_err().code,
                ErrorCode::InvalidScope,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn property_descriptions_never_leave_the_charset() {
        let p = policy(&["*"], &["default"]);
        let narrow = policy(&["a"], &["default"]);
        let mut arb = crate::oauth::tests::Arbitrary::new(7);
        for _ in 0..5000 {
            let raw = arb.string(100);
            for policy in [&p, &narrow] {
                if let Err(e) = policy.grant(Some(&raw)) {
                    assert!(
                        e.description()
                            .bytes()
                            .all(crate::oauth::is_description_byte),
                        "{raw:?}"
                    );
                    assert!(!raw.contains('"') || !e.description().contains(&raw));
                }
            }
        }
    }

    #[test]
    fn patterns_and_defaults_are_checked() {
        assert!(ScopePolicy::new(&["a*b"], &[]).is_err());
        assert!(ScopePolicy::new(&["a b"], &[]).is_err());
        assert!(ScopePolicy::new(&["orders:read"], &["orders:write"]).is_err());
        assert!(ScopePolicy::new(&["apk:*"], &["apk:*"]).is_err());
        assert!(ScopePolicy::new(&["apk:*"], &["apk:read"]).is_ok());
    }
}
