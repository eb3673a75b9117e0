//! The rules an `OAuthClient` spec follows, stated once. The CRD schema carries them (OpenAPI
//! patterns, bounds and `not`, CEL `x-kubernetes-validations`) so the API server refuses what
//! Latchkey would refuse, and `convert::validate` enforces the same rules on documents
//! that never met an API server, with the CEL rules' messages.
//!
//! Every pattern here is an RE2 pattern (Kubernetes' dialect) that is also a valid ECMA-262 one;
//! every CEL rule uses only the standard library and Kubernetes' `strings` extension.
//! The bounds exist so that Kubernetes' CEL cost estimation can prove the rules cheap: the
//! API server refuses a CRD whose rules it estimates too costly. [`DEFAULT_SCOPES_ALLOWED`]
//! compares every default scope with every scope, so its estimate grows with
//! `MAX_DEFAULT_SCOPES * MAX_SCOPES * MAX_SCOPE_LEN`; kube-apiserver 1.37 takes the bounds
//! below at about half its per-rule budget, and refuses 256 default scopes (2.1x over).

/// A client id: RFC 6749 Appendix A `VSCHAR` (`%x20-7E`), so ':', spaces and URL-shaped ids
/// too (HTTP Basic form-encodes them, RFC 6749 §2.3.1).
pub const CLIENT_ID_PATTERN: &str = "^[ -~]+$";
/// Longest client id, in characters (ASCII, so also bytes).
pub const MAX_CLIENT_ID_LEN: usize = latchkey_core::client::MAX_CLIENT_ID_LEN;

/// A Secret name: a DNS subdomain name (RFC 1123), as Kubernetes names objects.
pub const SECRET_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Longest DNS subdomain name.
pub const MAX_SECRET_NAME_LEN: usize = 253;
/// A key of a Secret's `data`.
pub const SECRET_KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";
/// Longest key of a Secret's `data`.
pub const MAX_SECRET_KEY_LEN: usize = 253;

/// A scope token of RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub const SCOPE_PATTERN: &str = r"^[\x21\x23-\x5B\x5D-\x7E]+$";
/// Longest scope, in characters.
pub const MAX_SCOPE_LEN: usize = 256;
/// Most entries in `scopes`.
pub const MAX_SCOPES: usize = 256;
/// Most entries in `defaultScopes`.
pub const MAX_DEFAULT_SCOPES: usize = 64;
// A tripwire: raising these bounds can make the API server refuse the CRD (see the module
// doc); check the CRD against a real API server before changing this product.
const _: () = assert!(MAX_DEFAULT_SCOPES * MAX_SCOPES * MAX_SCOPE_LEN <= 64 * 256 * 256);
/// On each `scopes` entry: a '*' may only end a scope (it makes the entry a prefix match).
pub const SCOPE_STAR_LAST: &str = "self.indexOf('*') < 0 || self.indexOf('*') == size(self) - 1";
pub const SCOPE_STAR_LAST_MESSAGE: &str = "'*' is only allowed as the last character of a scope";
/// On each `defaultScopes` entry: a concrete scope, never a pattern.
pub const DEFAULT_SCOPE_PLAIN: &str = "!self.contains('*')";
pub const DEFAULT_SCOPE_PLAIN_MESSAGE: &str =
    "a default scope must be a plain scope name, without '*'";
/// On the spec: every default scope is allowed by `scopes` ("default" always is; an entry `p*`
/// allows the scopes that start with `p` and are longer than `p`).
pub const DEFAULT_SCOPES_ALLOWED: &str = "!has(self.defaultScopes) || self.defaultScopes.all(d, \
     d == 'default' || (has(self.scopes) && self.scopes.exists(s, s == d || (s.endsWith('*') \
     && size(d) >= size(s) && d.startsWith(s.substring(0, size(s) - 1))))))";
pub const DEFAULT_SCOPES_ALLOWED_MESSAGE: &str = "every default scope must be allowed by scopes \
     (\"default\" always is; an entry \"p*\" allows the scopes that start with \"p\" and are longer)";
/// Where the API server reports a [`DEFAULT_SCOPES_ALLOWED`] failure, relative to the spec.
pub const DEFAULT_SCOPES_ALLOWED_FIELD: &str = ".defaultScopes";

/// Longest audience, in characters.
pub const MAX_AUDIENCE_LEN: usize = 1024;
/// Most audiences.
pub const MAX_AUDIENCES: usize = 64;

/// Names `claims` may not have: Latchkey's own claims (refused by a CEL rule) and the empty
/// name (refused with OpenAPI; see `types::claims_schema`).
pub fn forbidden_claim_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("").chain(latchkey_core::client::RESERVED_CLAIMS)
}
pub const RESERVED_CLAIMS_MESSAGE: &str = "iss, sub, aud, exp, nbf, iat, jti, clientId and \
     scope are set by Latchkey and cannot be static claims";
pub const EMPTY_CLAIM_NAME_MESSAGE: &str = "a claim name must not be empty";

// Issue 11: the caller's identity in tokens issued on an assertion.
/// An `assertionIdentityClaim`: a letter, then letters, digits and `_ - . : /` (so a
/// collision-resistant URI name such as `https://example.com/caller` fits too).
pub const IDENTITY_CLAIM_PATTERN: &str = "^[A-Za-z][-A-Za-z0-9_.:/]*$";
/// Longest `assertionIdentityClaim`, in characters.
pub const MAX_IDENTITY_CLAIM_LEN: usize = 256;
/// On `assertionIdentityClaim`: none of [`latchkey_core::client::IDENTITY_CLAIM_TAKEN`].
pub const IDENTITY_CLAIM_FREE: &str = "!(self in ['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', \
     'jti', 'scope', 'clientId', 'client_id', 'organization', 'groups', 'azp'])";
pub const IDENTITY_CLAIM_FREE_MESSAGE: &str = "iss, sub, aud, exp, nbf, iat, jti, scope, \
     clientId, client_id, organization, groups and azp are set by Latchkey or the token \
     contract and cannot name the caller";
/// The identity claim is not one of the client's static claims too. Not a CEL rule: `claims`
/// is an object of free names, whose keys CEL cannot look up by a value; checked when the
/// client is loaded (`SpecValid=False` in a cluster).
pub const IDENTITY_CLAIM_NOT_STATIC_MESSAGE: &str =
    "assertionIdentityClaim must not also be one of the static claims";

/// Whether `name` may be an `assertionIdentityClaim` ([`IDENTITY_CLAIM_PATTERN`], its length
/// bound and [`IDENTITY_CLAIM_FREE`]).
pub fn is_identity_claim(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=MAX_IDENTITY_CLAIM_LEN).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':' | b'/'))
        && !latchkey_core::client::IDENTITY_CLAIM_TAKEN.contains(&name)
}

/// Longest duration string.
pub const MAX_DURATION_LEN: usize = 64;
/// On `accessTokenLifetime`: between one second and `latchkey_core::client::MAX_TOKEN_LIFETIME`.
pub const LIFETIME_RANGE: &str =
    "duration(self) >= duration('1s') && duration(self) <= duration('24h')";
pub const LIFETIME_RANGE_MESSAGE: &str = "must be between 1s and 24h";

/// Whether `id` matches [`CLIENT_ID_PATTERN`] and its length bound.
pub fn is_client_id(id: &str) -> bool {
    latchkey_core::client::is_client_id(id)
}

/// Whether `name` matches [`SECRET_NAME_PATTERN`] and its length bound.
pub fn is_secret_name(name: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-')
    };
    name.len() <= MAX_SECRET_NAME_LEN && name.split('.').all(label)
}

/// Whether `key` matches [`SECRET_KEY_PATTERN`] and its length bound.
pub fn is_secret_key(key: &str) -> bool {
    (1..=MAX_SECRET_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

// Issue 13: secret rotation with a grace period.
/// On the spec: the previous secret's key differs from the current one's, and in a generated
/// Secret it is none of the keys Latchkey writes there.
pub const PREVIOUS_SECRET_KEY_DISTINCT: &str = "!has(self.previousSecret) || \
     (has(self.secretRef) ? self.previousSecret.key != self.secretRef.key \
     : !(self.previousSecret.key in ['clientSecret', 'clientId', 'tokenUrl']))";
pub const PREVIOUS_SECRET_KEY_DISTINCT_MESSAGE: &str = "previousSecret.key must differ from the \
     current secret's key (and from clientId and tokenUrl in a generated Secret)";
/// Where the API server reports a [`PREVIOUS_SECRET_KEY_DISTINCT`] failure.
pub const PREVIOUS_SECRET_KEY_FIELD: &str = ".previousSecret.key";

// Issue 12: browser clients.
/// A redirect URI (also a post-logout one): `https` with a host name or IP literal, or plain
/// `http` only to a loopback IP literal (RFC 8252 §7.3; not "localhost", which DNS may send
/// elsewhere). No user info, no fragment (RFC 6749 §3.1.2), and path and query made only of
/// RFC 3986 characters, so the one string the client registers is the one it is compared
/// with. A query needs a path ("https://a.example/?x").
pub const REDIRECT_URI_PATTERN: &str = r"^(https://[-.A-Za-z0-9]+|https://\[[0-9A-Fa-f:.]+\]|http://127\.0\.0\.1|http://\[::1\])(:[0-9]{1,5})?(/[!$-;=?-Z_a-z~]*)?$";
/// Longest redirect URI, in characters.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;
/// Most redirect URIs (and most post-logout redirect URIs).
pub const MAX_REDIRECT_URIS: usize = 32;
pub const REDIRECT_URI_MESSAGE: &str = "must be an https URI, or http to 127.0.0.1 or [::1], \
     without user info or fragment, whose path and query use only RFC 3986 characters";

/// Whether `uri` matches [`REDIRECT_URI_PATTERN`] and its length bound.
pub fn is_redirect_uri(uri: &str) -> bool {
    if uri.is_empty() || uri.len() > MAX_REDIRECT_URI_LEN {
        return false;
    }
    let (rest, https) = if let Some(r) = uri.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = uri.strip_prefix("http://") {
        (r, false)
    } else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path_ok = path
        .bytes()
        .all(|b| matches!(b, b'!' | b'$'..=b';' | b'=' | b'?'..=b'Z' | b'_' | b'a'..=b'z' | b'~'));
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => authority.split_at(end + 1),
            None => return false,
        }
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if https {
        let name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            });
        name || literal
    } else {
        host == "127.0.0.1" || host == "[::1]"
    };
    path_ok && port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::client::{MAX_TOKEN_LIFETIME, RESERVED_CLAIMS};

    #[test]
    fn rules_agree_with_the_core_constants() {
        for name in RESERVED_CLAIMS {
            assert!(RESERVED_CLAIMS_MESSAGE.contains(name), "{name}");
        }
        assert_eq!(MAX_TOKEN_LIFETIME.as_secs(), 24 * 3600);
        // Issue 11
        for name in latchkey_core::client::IDENTITY_CLAIM_TAKEN {
            assert!(IDENTITY_CLAIM_FREE.contains(&format!("'{name}'")), "{name}");
            assert!(IDENTITY_CLAIM_FREE_MESSAGE.contains(name), "{name}");
            assert!(!is_identity_claim(name), "{name}");
        }
        for name in RESERVED_CLAIMS {
            assert!(
                latchkey_core::client::IDENTITY_CLAIM_TAKEN.contains(&name),
                "{name}"
            );
        }
        assert!(LIFETIME_RANGE.contains("duration('24h')"));
        assert!(
            DEFAULT_SCOPES_ALLOWED.contains(&format!("'{}'", latchkey_core::scope::DEFAULT_SCOPE))
        );
        assert_eq!(MAX_CLIENT_ID_LEN, 256);
    }

    #[test]
    fn client_ids() {
        for ok in [
            "a",
            "orders-gateway",
            "45f1c5c8-a92e-11ed-afa1-0242ac120002",
            "!~;9",
            "a b",
            "a:b",
            " ",
            "https://app.example.com/client.json",
        ] {
            assert!(is_client_id(ok), "{ok:?}");
        }
        let long = "a".repeat(MAX_CLIENT_ID_LEN + 1);
        for bad in ["", "é", "a\tb", "\x7f", "a\nb", long.as_str()] {
            assert!(!is_client_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn secret_names_and_keys() {
        for ok in ["a", "orders-gateway-secret", "a.b-c.d0", "0a"] {
            assert!(is_secret_name(ok), "{ok:?}");
        }
        let long = "a".repeat(MAX_SECRET_NAME_LEN + 1);
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            long.as_str(),
        ] {
            assert!(!is_secret_name(bad), "{bad:?}");
        }
        for ok in ["clientSecret", "client-secret.txt", "_a", "a.b", "A9"] {
            assert!(is_secret_key(ok), "{ok:?}");
        }
        let long = "a".repeat(MAX_SECRET_KEY_LEN + 1);
        for bad in ["", "a b", "a/b", "a:b", long.as_str()] {
            assert!(!is_secret_key(bad), "{bad:?}");
        }
    }

    // Issue 12: browser clients.
    #[test]
    fn redirect_uris_agree_with_the_pattern() {
        let pattern = regex::Regex::new(REDIRECT_URI_PATTERN).unwrap();
        let long = format!("https://a.example/{}", "a".repeat(MAX_REDIRECT_URI_LEN));
        let cases: [(&str, bool); 31] = [
            ("https://app.example.com/callback", true),
            ("https://app.example.com", true),
            ("https://app.example.com:8443/cb?x=1&y=%20", true),
            ("https://[2001:db8::1]/cb", true),
            ("https://[2001:db8::1]:443/cb", true),
            ("http://127.0.0.1/cb", true),
            ("http://127.0.0.1:53117/cb", true),
            ("http://[::1]:8080/", true),
            ("https://a.example/?x", true),
            ("https://a.example/p/'()*+,;=:@!$~_.-", true),
            ("http://localhost/cb", false),
            ("http://app.example.com/cb", false),
            ("http://127.0.0.2/cb", false),
            ("http://127.0.0.1.evil.example/cb", false),
            ("https://app.example.com/cb#frag", false),
            ("https://app.example.com/cb#", false),
            ("https://user@app.example.com/cb", false),
            ("https://app.example.com?x=1", false),
            ("https://app.example.com/a b", false),
            ("https://app.example.com/a\\b", false),
            ("https://app.example.com/<script>", false),
            ("https://app.example.com/é", false),
            ("https://app.example.com:/cb", false),
            ("https://app.example.com:123456/cb", false),
            ("https://[2001:db8::1/cb", false),
            ("https://[]/cb", false),
            ("https:///cb", false),
            ("HTTPS://app.example.com/cb", false),
            ("javascript:alert(1)", false),
            ("com.example.app:/cb", false),
            ("", false),
        ];
        for (uri, ok) in cases {
            assert_eq!(is_redirect_uri(uri), ok, "{uri:?}");
            assert_eq!(pattern.is_match(uri), ok, "pattern: {uri:?}");
        }
        assert!(pattern.is_match(&long) && !is_redirect_uri(&long));
    }
}
