//! The stored form of the signing keys: every key's private material and metadata, as one
//! document that a cluster keeps in a Secret and standalone mode in its state directory.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{CoreError, KeyMaterial, KeySet, SigningAlgorithm, SigningKey, token::unix_seconds};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet.
    Next,
    /// Signing.
    Active,
    /// Published, no longer signing.
    Retired,
}

/// One stored key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: u64,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// All stored keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    pub keys: Vec<KeyRecord>,
}

impl KeyRing {
    /// A ring with one new active key.
    pub fn bootstrap(
        kid: &str,
        alg: SigningAlgorithm,
        rsa_bits: u32,
        now: SystemTime,
    ) -> Result<KeyRing, CoreError> {
        let material = KeyMaterial::generate(alg, rsa_bits)?;
        Ok(KeyRing {
            keys: vec![KeyRecord {
                kid: kid.to_owned(),
                alg,
                state: KeyState::Active,
                created_at: unix_seconds(now),
                private_key_pem: material.to_pem(),
            }],
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<KeyRing, CoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| CoreError::KeySet(format!("stored key ring is not valid: {e}")))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A ring is plain strings and numbers: encoding cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The key set to serve: exactly one active key, every key published.
    pub fn key_set(&self) -> Result<KeySet, CoreError> {
        let mut active = None;
        let mut published = Vec::with_capacity(self.keys.len());
        for record in &self.keys {
            let material = KeyMaterial::from_pem(record.alg, &record.private_key_pem)
                .map_err(|e| CoreError::KeySet(format!("key {:?}: {e}", record.kid)))?;
            let key = std::sync::Arc::new(SigningKey::new(record.kid.clone(), &material)?);
            if record.state == KeyState::Active {
                if active.is_some() {
                    return Err(CoreError::KeySet("more than one active key".into()));
                }
                active = Some(key.clone());
            }
            published.push(key);
        }
        let active = active.ok_or_else(|| CoreError::KeySet("no active key".into()))?;
        KeySet::new(active, published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_round_trips_and_serves_one_active_key() {
        let ring =
            KeyRing::bootstrap("k1", SigningAlgorithm::EdDSA, 0, SystemTime::UNIX_EPOCH).unwrap();
        let back = KeyRing::from_json(&ring.to_json()).unwrap();
        assert_eq!(ring, back);
        let set = back.key_set().unwrap();
        assert_eq!(set.active().kid(), "k1");
        assert!(!format!("{ring:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_ring_needs_exactly_one_active_key() {
        let mut ring =
            KeyRing::bootstrap("k1", SigningAlgorithm::EdDSA, 0, SystemTime::UNIX_EPOCH).unwrap();
        ring.keys[0].state = KeyState::Next;
        assert!(ring.key_set().is_err());
        let mut two =
            KeyRing::bootstrap("k1", SigningAlgorithm::EdDSA, 0, SystemTime::UNIX_EPOCH).unwrap();
        let mut second = two.keys[0].clone();
        second.kid = "k2".into();
        two.keys.push(second);
        assert!(two.key_set().is_err());
    }
}
