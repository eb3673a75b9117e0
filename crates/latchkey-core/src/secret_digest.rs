//! Client secrets are held only as keyed digests and compared in constant time.
//!
//! The digest is HMAC-SHA-256 under a key drawn at random once per process: a memory dump or a
//! debug print of a registry reveals nothing that could be checked offline, and a comparison
//! costs the same whatever the presented secret is.

use std::sync::OnceLock;

use aws_lc_rs::{hmac, rand::SystemRandom};
use subtle::ConstantTimeEq;

fn process_key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        // Generation only fails if the OS random source is broken, and then nothing is safe.
        #[allow(clippy::expect_used)]
        hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the operating system's random source failed")
    })
}

/// A keyed digest of a client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Digest a secret.
    pub fn of(secret: &[u8]) -> SecretDigest {
        let tag = hmac::sign(process_key(), secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretDigest(out)
    }

    /// Digest a client secret, refusing an empty one (it would authenticate anybody who sends
    /// no secret).
    pub fn of_secret(secret: &[u8]) -> Result<SecretDigest, crate::CoreError> {
        if secret.is_empty() {
            return Err(crate::CoreError::InvalidClient(
                "client secret is empty".into(),
            ));
        }
        Ok(SecretDigest::of(secret))
    }

    /// Whether `presented` is the secret this digest was made from, in time independent of
    /// where the two differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let other = SecretDigest::of(presented);
        bool::from(self.0.ct_eq(&other.0))
    }

    /// Whether two digests are equal, in constant time: one presented secret, digested once,
    /// checks against a current and a previous secret at the cost of one comparison more.
    pub fn ct_eq(&self, other: &SecretDigest) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }

    /// A digest of 32 random bytes: stands in for unknown clients so they cost the same work.
    pub fn decoy() -> SecretDigest {
        let mut bytes = [0u8; 32];
        // Same reasoning as for the process key.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut bytes).expect("the operating system's random source failed");
        SecretDigest::of(&bytes)
    }
}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_secret() {
        let d = SecretDigest::of(b"s3cr:t %+ x");
        assert!(d.matches(b"s3cr:t %+ x"));
        assert!(!d.matches(b"s3cr:t %+ y"));
        assert!(!d.matches(b""));
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SecretDigest::of(b"x")),
            "SecretDigest(<redacted>)"
        );
    }

    #[test]
    fn decoys_differ() {
        assert_ne!(SecretDigest::decoy(), SecretDigest::decoy());
    }
}
