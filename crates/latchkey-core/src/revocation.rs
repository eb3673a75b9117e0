//! Issue 13: the revocation list (RFC 7009 for access tokens): the `jti` of every revoked
//! access token with its `exp`, kept only until then. One document per deployment, written
//! through a [`crate::store::DocumentStore`] (a Secret in a cluster, a file standalone); every
//! replica holds the last snapshot it read and introspection consults it.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{CoreError, token::unix_seconds};

/// Most revoked tokens held at once. An entry lives at most one token lifetime (24 h at most),
/// so this bounds the revocations per day; beyond it a revocation is refused, not dropped.
pub const MAX_REVOKED: usize = 50_000;

/// Longest `jti` kept (Latchkey's are 36-character UUIDs).
pub const MAX_JTI_LEN: usize = 128;

/// Revoked access tokens: `jti` → `exp` (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    #[serde(default)]
    revoked: BTreeMap<String, u64>,
}

impl Revocations {
    /// Whether the token with this `jti` is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// This list plus `jti` (revoked until `exp`), without the entries expired at `now`.
    /// `None` when nothing changes (already revoked, or already expired).
    pub fn with(
        &self,
        jti: &str,
        exp: u64,
        now: SystemTime,
    ) -> Result<Option<Revocations>, CoreError> {
        let now = unix_seconds(now);
        if exp <= now || self.revoked.contains_key(jti) {
            return Ok(None);
        }
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(CoreError::Revocation(
                "the token's jti is not one Latchkey makes".into(),
            ));
        }
        let mut revoked: BTreeMap<String, u64> = self
            .revoked
            .iter()
            .filter(|(_, e)| **e > now)
            .map(|(j, e)| (j.clone(), *e))
            .collect();
        if revoked.len() >= MAX_REVOKED {
            return Err(CoreError::Revocation(format!(
                "the revocation list is full ({MAX_REVOKED} unexpired tokens)"
            )));
        }
        revoked.insert(jti.to_owned(), exp);
        Ok(Some(Revocations { revoked }))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Revocations, CoreError> {
        let list: Revocations = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::Revocation(format!("revocation list: {e}")))?;
        if list.revoked.len() > MAX_REVOKED {
            return Err(CoreError::Revocation(
                "revocation list: too many entries".into(),
            ));
        }
        Ok(list)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings to integers always encodes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn entries_live_until_their_exp_and_are_dropped_on_the_next_write() {
        let l = Revocations::default();
        let l = l.with("a", 100, at(10)).unwrap().unwrap();
        assert!(l.is_revoked("a"));
        assert!(l.with("a", 100, at(20)).unwrap().is_none(), "already there");
        assert!(l.with("x", 5, at(10)).unwrap().is_none(), "already expired");
        let l = l.with("b", 300, at(150)).unwrap().unwrap();
        assert!(!l.is_revoked("a"), "expired entries are dropped on a write");
        assert!(l.is_revoked("b"));
        let back = Revocations::from_json(&l.to_json()).unwrap();
        assert_eq!(back, l);
        assert!(l.with("", 300, at(1)).is_err());
        assert!(l.with(&"j".repeat(MAX_JTI_LEN + 1), 300, at(1)).is_err());
    }

    #[test]
    fn a_full_list_refuses_rather_than_forgets() {
        let mut l = Revocations::default();
        for i in 0..MAX_REVOKED {
            l.revoked.insert(format!("{i}"), 1_000);
        }
        assert!(l.with("new", 1_000, at(1)).is_err());
        // Once they expire, there is room again.
        assert!(l.with("new", 2_000, at(1_000)).unwrap().is_some());
    }
}
