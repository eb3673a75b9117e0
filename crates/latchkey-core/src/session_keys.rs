//! The keys that seal browser session cookies (AES-256-GCM), shared by every replica and
//! rotated like the signing keys: a new key is stored a lead time before it seals, so every
//! replica has read it by then; the newest active key seals, every kept key opens; a key is
//! dropped once nothing it sealed can still be valid. One driver pass, for both run modes, keeps
//! the stored set current through a [`DocumentStore`] (a Secret in a cluster, a file standalone).

use std::time::Duration;

use aws_lc_rs::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde::{Deserialize, Serialize};

use crate::store::{DocumentStore, StoreError};

/// When keys rotate and how long they are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKeyPolicy {
    /// How long a key seals before the next one takes over.
    pub rotate_every: Duration,
    /// How long before it seals a new key is stored (longer than any replica takes to read it).
    pub lead: Duration,
    /// The longest a sealed cookie stays valid: a key is kept this long after it stops sealing.
    pub max_session: Duration,
}

impl Default for SessionKeyPolicy {
    fn default() -> Self {
        SessionKeyPolicy {
            rotate_every: Duration::from_secs(7 * 86_400),
            lead: Duration::from_secs(120),
            max_session: Duration::from_secs(86_400),
        }
    }
}

/// One key. Its `Debug` hides the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionKey {
    /// Short id, the prefix of what it seals.
    pub id: String,
    /// Base64url of the 32 key bytes.
    key: String,
    /// Unix seconds from which it seals.
    pub active_from: u64,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("id", &self.id)
            .field("active_from", &self.active_from)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StoreError::Unavailable("no randomness".into()))?;
    Ok(b)
}

impl SessionKey {
    fn generate(active_from: u64) -> Result<SessionKey, StoreError> {
        let id: String = random::<4>()?.iter().map(|b| format!("{b:02x}")).collect();
        Ok(SessionKey {
            id,
            key: B64.encode(random::<32>()?),
            active_from,
        })
    }

    fn aead(&self) -> Option<LessSafeKey> {
        let bytes = B64.decode(&self.key).ok()?;
        UnboundKey::new(&AES_256_GCM, &bytes)
            .ok()
            .map(LessSafeKey::new)
    }
}

/// The stored set of keys, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionKeys {
    pub keys: Vec<SessionKey>,
}

impl SessionKeys {
    /// The key that seals at `now`: the newest already active.
    fn sealer(&self, now: u64) -> Option<&SessionKey> {
        self.keys.iter().rev().find(|k| k.active_from <= now)
    }

    /// Seal `plaintext` for `purpose` (bound as associated data, so a value sealed for one
    /// purpose never opens for another): `key-id.base64url(nonce ‖ ciphertext ‖ tag)`.
    pub fn seal(&self, purpose: &str, plaintext: &[u8], now: u64) -> Result<String, StoreError> {
        let key = self
            .sealer(now)
            .ok_or_else(|| StoreError::Invalid("no active session key".into()))?;
        let aead = key
            .aead()
            .ok_or_else(|| StoreError::Invalid(format!("session key {} is malformed", key.id)))?;
        let nonce_bytes = random::<NONCE_LEN>()?;
        let mut data = plaintext.to_vec();
        aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(purpose.as_bytes()),
            &mut data,
        )
        .map_err(|_| StoreError::Invalid("sealing failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{}.{}", key.id, B64.encode(out)))
    }

    /// What `sealed` holds, if a kept key sealed it for `purpose` and it was not altered.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let (id, body) = sealed.split_once('.')?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let mut data = B64.decode(body).ok()?;
        if data.len() < NONCE_LEN {
            return None;
        }
        let rest = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).ok()?;
        let mut rest = rest;
        let plain = key
            .aead()?
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut rest)
            .ok()?;
        Some(plain.to_vec())
    }

    /// Bring the set up to date at `now`: a first key (active at once), a next key stored
    /// `lead` before the sealing one is due for rotation, and keys dropped once the key after
    /// them has sealed for `max_session`. Returns whether anything changed.
    pub fn advance(&mut self, policy: &SessionKeyPolicy, now: u64) -> Result<bool, StoreError> {
        let mut changed = false;
        if self.keys.is_empty() {
            self.keys.push(SessionKey::generate(now)?);
            changed = true;
        }
        let newest = self.keys.last().map_or(now, |k| k.active_from);
        let due = newest + policy.rotate_every.as_secs();
        if now + policy.lead.as_secs() >= due {
            self.keys
                .push(SessionKey::generate(due.max(now + policy.lead.as_secs()))?);
            changed = true;
        }
        // A key stopped sealing when its successor became active; it opens cookies for
        // `max_session` after that.
        let keep_after = now.saturating_sub(policy.max_session.as_secs());
        let successors: Vec<u64> = self.keys.iter().skip(1).map(|k| k.active_from).collect();
        let before = self.keys.len();
        let mut index = 0;
        self.keys.retain(|_| {
            let stopped = successors.get(index).copied();
            index += 1;
            stopped.is_none_or(|at| at > now || at >= keep_after)
        });
        Ok(changed || self.keys.len() != before)
    }
}

/// One pass of the driver: read the stored keys, advance them at `now`, write them back at the
/// version read if they changed. A writer that loses a race returns what the winner stored.
pub async fn pass<S: DocumentStore<SessionKeys>>(
    store: &S,
    policy: &SessionKeyPolicy,
    now: u64,
) -> Result<SessionKeys, StoreError> {
    for _ in 0..3 {
        match store.load().await? {
            None => {
                let mut keys = SessionKeys::default();
                keys.advance(policy, now)?;
                match store.create(&keys).await {
                    Ok(_) => return Ok(keys),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            Some(read) => {
                let mut keys = read.value.clone();
                if !keys.advance(policy, now)? {
                    return Ok(keys);
                }
                match store.replace(&keys, &read.version).await {
                    Ok(_) => return Ok(keys),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(StoreError::Conflict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Version, Versioned};
    use std::sync::Mutex;

    const DAY: u64 = 86_400;

    fn policy() -> SessionKeyPolicy {
        SessionKeyPolicy {
            rotate_every: Duration::from_secs(7 * DAY),
            lead: Duration::from_secs(120),
            max_session: Duration::from_secs(DAY),
        }
    }

    #[test]
    fn sealed_values_open_only_unaltered_for_their_purpose() {
        let mut keys = SessionKeys::default();
        keys.advance(&policy(), 1_000).unwrap();
        let sealed = keys.seal("session", b"user=alice", 1_000).unwrap();
        assert_eq!(keys.open("session", &sealed).unwrap(), b"user=alice");
        assert!(keys.open("csrf", &sealed).is_none());
        let (id, body) = sealed.split_once('.').unwrap();
        let mut raw = B64.decode(body).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(
            keys.open("session", &format!("{id}.{}", B64.encode(&raw)))
                .is_none()
        );
        assert!(keys.open("session", "nope").is_none());
        assert!(keys.open("session", &format!("{id}.AAAA")).is_none());
        // Two seals of one value differ (random nonces).
        assert_ne!(sealed, keys.seal("session", b"user=alice", 1_000).unwrap());
        assert!(!format!("{keys:?}").contains(&keys.keys[0].key));
    }

    #[test]
    fn rotation_stores_the_next_key_a_lead_ahead_and_drops_old_ones_late() {
        let p = policy();
        let mut keys = SessionKeys::default();
        assert!(keys.advance(&p, 0).unwrap());
        assert!(!keys.advance(&p, DAY).unwrap(), "nothing due");
        let old = keys.seal("s", b"x", DAY).unwrap();
        // Two minutes before the rotation is due, the next key is stored but does not seal.
        let due = 7 * DAY;
        assert!(keys.advance(&p, due - 120).unwrap());
        assert_eq!(keys.keys.len(), 2);
        assert_eq!(keys.keys[1].active_from, due);
        assert!(
            keys.seal("s", b"x", due - 1)
                .unwrap()
                .starts_with(&keys.keys[0].id)
        );
        assert!(
            keys.seal("s", b"x", due)
                .unwrap()
                .starts_with(&keys.keys[1].id)
        );
        // The old key still opens for a session's length after it stopped sealing…
        assert!(!keys.advance(&p, due + DAY - 1).unwrap());
        assert!(keys.open("s", &old).is_some());
        // …and then it is gone.
        assert!(keys.advance(&p, due + DAY + 1).unwrap());
        assert_eq!(keys.keys.len(), 1);
        assert!(keys.open("s", &old).is_none());
    }

    #[derive(Default)]
    struct Memory(Mutex<Option<(SessionKeys, u64)>>);

    impl DocumentStore<SessionKeys> for Memory {
        async fn load(&self) -> Result<Option<Versioned<SessionKeys>>, StoreError> {
            Ok(self.0.lock().unwrap().clone().map(|(value, v)| Versioned {
                value,
                version: Version(v.to_string()),
            }))
        }
        async fn create(&self, value: &SessionKeys) -> Result<Version, StoreError> {
            let mut d = self.0.lock().unwrap();
            if d.is_some() {
                return Err(StoreError::Conflict);
            }
            *d = Some((value.clone(), 1));
            Ok(Version("1".into()))
        }
        async fn replace(
            &self,
            value: &SessionKeys,
            version: &Version,
        ) -> Result<Version, StoreError> {
            let mut d = self.0.lock().unwrap();
            let current = d.as_ref().map(|(_, v)| *v);
            match current {
                Some(v) if v.to_string() == version.0 => {
                    *d = Some((value.clone(), v + 1));
                    Ok(Version((v + 1).to_string()))
                }
                _ => Err(StoreError::Conflict),
            }
        }
    }

    #[test]
    fn passes_create_once_and_every_reader_gets_the_same_keys() {
        let store = Memory::default();
        let p = policy();
        let block_on = crate::authorization_grant::tests::block_on;
        let first = block_on(pass(&store, &p, 0)).unwrap();
        let second = block_on(pass(&store, &p, 10)).unwrap();
        assert_eq!(first, second);
        let sealed = first.seal("s", b"v", 10).unwrap();
        assert_eq!(second.open("s", &sealed).unwrap(), b"v");
        let rotated = block_on(pass(&store, &p, 7 * DAY)).unwrap();
        assert_eq!(rotated.keys.len(), 2);
        assert!(rotated.open("s", &sealed).is_some());
    }
}
