//! Issue 11: whether the sources a client trusts for assertions can be resolved, checked off
//! the token path: each listed ServiceAccount exists, each federated issuer's discovery
//! document and keys can be fetched, and a `jwksUri`/`jwksFrom` key source can be read. One
//! [`Verdict`] per kind of source, naming the first entry that failed and why (never key
//! material or a token); `latchkey run` shows them as status conditions, standalone logs them.

/// Every entry of the kind resolved.
pub const RESOLVED: &str = "Resolved";
/// A listed ServiceAccount does not exist.
pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
/// Latchkey is not allowed to read what it needs (RBAC).
pub const FORBIDDEN: &str = "Forbidden";
/// The API server did not answer the lookup.
pub const LOOKUP_FAILED: &str = "LookupFailed";
/// The cluster's service-account issuer is not discovered yet.
pub const ISSUER_UNKNOWN: &str = "ServiceAccountIssuerUnknown";
/// A federated issuer's discovery document could not be had.
pub const DISCOVERY_FAILED: &str = "DiscoveryFailed";
/// A JWK Set could not be fetched or read, or holds no usable key.
pub const KEYS_UNAVAILABLE: &str = "KeysUnavailable";

/// What the check of one entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Resolved,
    /// The entry cannot be resolved: a reason (one of this module's constants) and why, in
    /// words safe to show.
    Unresolved {
        reason: &'static str,
        why: &'static str,
    },
}

/// The verdict on one kind of source: resolved or not, a reason and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub resolved: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The verdicts of one client; a kind it does not use is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustFindings {
    /// `spec.serviceAccounts`.
    pub service_accounts: Option<Verdict>,
    /// `spec.federatedIdentities`.
    pub issuers: Option<Verdict>,
    /// `spec.jwksUri` or `spec.jwksFrom` (inline `jwks` needs no check).
    pub keys: Option<Verdict>,
}

/// The verdict on `entries` (each named, e.g. `ServiceAccount apps/gateway`): resolved with
/// `resolved_message` when every entry is, else the first unresolved entry's reason and a
/// message naming it and saying why, with how many more are unresolved. `None` for no entry.
pub fn verdict(entries: &[(String, Finding)], resolved_message: &str) -> Option<Verdict> {
    if entries.is_empty() {
        return None;
    }
    let mut failed = entries.iter().filter_map(|(name, f)| match f {
        Finding::Resolved => None,
        Finding::Unresolved { reason, why } => Some((name, *reason, *why)),
    });
    Some(match failed.next() {
        None => Verdict {
            resolved: true,
            reason: RESOLVED,
            message: resolved_message.to_owned(),
        },
        Some((name, reason, why)) => {
            let more = failed.count();
            let mut message = format!("{name}: {why}");
            if more > 0 {
                message.push_str(&format!(" (and {more} more unresolved)"));
            }
            Verdict {
                resolved: false,
                reason,
                message,
            }
        }
    })
}

/// The name of a federated identity's entry in a message.
pub fn issuer_entry(issuer: &str, subject: &str) -> String {
    format!("issuer {issuer} (subject {subject:?})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_unresolved_entry_is_named_with_its_reason() {
        assert_eq!(verdict(&[], "ok"), None);
        let ok = |n: &str| (n.to_owned(), Finding::Resolved);
        let gone = |n: &str| {
            (
                n.to_owned(),
                Finding::Unresolved {
                    reason: SERVICE_ACCOUNT_NOT_FOUND,
                    why: "does not exist",
                },
            )
        };
        let all = verdict(&[ok("a"), ok("b")], "every listed ServiceAccount exists").unwrap();
        assert!(all.resolved);
        assert_eq!(all.reason, RESOLVED);
        assert_eq!(all.message, "every listed ServiceAccount exists");
        let one = verdict(&[ok("a"), gone("ServiceAccount apps/gw")], "x").unwrap();
        assert_eq!(
            (one.resolved, one.reason, one.message.as_str()),
            (
                false,
                SERVICE_ACCOUNT_NOT_FOUND,
                "ServiceAccount apps/gw: does not exist"
            )
        );
        let three = verdict(&[gone("s1"), gone("s2"), ok("s3"), gone("s4")], "x").unwrap();
        assert_eq!(three.message, "s1: does not exist (and 2 more unresolved)");
    }
}
