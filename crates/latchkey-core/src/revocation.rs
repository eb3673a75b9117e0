//! Issue 13: the revocation list (RFC 7009 for access tokens): the `jti` of every revoked
//! access token with its `exp`, kept only until then. One document per deployment, written
//! through a [`crate::store::DocumentStore`] (a Secret in a cluster, a file standalone); every
//! replica holds the last snapshot it read and introspection consults it.

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::{
    CoreError,
    store::{DocumentStore, StoreError},
    token::unix_seconds,
};

/// Most revoked tokens held at once. An entry lives at most one token lifetime (24 h at most),
/// so this bounds the revocations per day; beyond it a revocation is refused, not dropped.
/// 10,000 entries of a UUID and a time stay under 800 KB of JSON, inside the 1 MiB a
/// Kubernetes Secret holds.
pub const MAX_REVOKED: usize = 10_000;

/// Longest `jti` kept (Latchkey's are 36-character UUIDs).
pub const MAX_JTI_LEN: usize = 64;

/// Attempts of a revocation against concurrent writers (other replicas) before giving up.
const ATTEMPTS: usize = 8;

/// Why a revocation was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Record that the token `jti` is revoked until `exp`: read the list, add it (dropping expired
/// entries), write it back conditional on the version read, and on a conflict (another replica
/// wrote first) read again and retry. Returns the list as stored afterwards.
pub async fn record<S: DocumentStore<Revocations>>(
    store: &S,
    jti: &str,
    exp: u64,
    now: SystemTime,
) -> Result<Revocations, RecordError> {
    for _ in 0..ATTEMPTS {
        let stored = store.load().await?;
        let current = stored
            .as_ref()
            .map(|v| &v.value)
            .cloned()
            .unwrap_or_default();
        let Some(next) = current.with(jti, exp, now)? else {
            return Ok(current);
        };
        let written = match &stored {
            None => store.create(&next).await,
            Some(v) => store.replace(&next, &v.version).await,
        };
        match written {
            Ok(_) => return Ok(next),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

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
    use crate::store::{Version, Versioned};
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

    /// A store in memory whose first `conflicts` writes lose to another writer.
    struct Memory {
        doc: std::sync::Mutex<Option<(Revocations, u64)>>,
        conflicts: std::sync::Mutex<usize>,
    }

    impl DocumentStore<Revocations> for Memory {
        async fn load(&self) -> Result<Option<Versioned<Revocations>>, StoreError> {
            Ok(self
                .doc
                .lock()
                .unwrap()
                .clone()
                .map(|(value, v)| Versioned {
                    value,
                    version: Version(v.to_string()),
                }))
        }
        async fn create(&self, value: &Revocations) -> Result<Version, StoreError> {
            self.replace(value, &Version("0".into())).await
        }
        async fn replace(
            &self,
            value: &Revocations,
            version: &Version,
        ) -> Result<Version, StoreError> {
            let mut doc = self.doc.lock().unwrap();
            let mut conflicts = self.conflicts.lock().unwrap();
            let at = doc.as_ref().map_or(0, |d| d.1);
            if *conflicts > 0 {
                // Someone else revokes "other" first.
                *conflicts -= 1;
                let mut theirs = doc.as_ref().map(|d| d.0.clone()).unwrap_or_default();
                theirs.revoked.insert("other".into(), 10_000);
                *doc = Some((theirs, at + 1));
                return Err(StoreError::Conflict);
            }
            if version.0 != at.to_string() {
                return Err(StoreError::Conflict);
            }
            *doc = Some((value.clone(), at + 1));
            Ok(Version((at + 1).to_string()))
        }
    }

    #[tokio::test]
    async fn recording_retries_on_conflict_and_keeps_the_other_writers_entry() {
        let store = Memory {
            doc: Default::default(),
            conflicts: std::sync::Mutex::new(2),
        };
        let list = record(&store, "mine", 5_000, at(1)).await.unwrap();
        assert!(list.is_revoked("mine") && list.is_revoked("other"));
        let stored = store.load().await.unwrap().unwrap().value;
        assert_eq!(stored, list);
        // Revoking it again writes nothing.
        let again = record(&store, "mine", 5_000, at(2)).await.unwrap();
        assert_eq!(again, list);
        assert_eq!(
            store.load().await.unwrap().unwrap().version,
            Version("3".into())
        );
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
