//! Issue 13: registration access tokens (RFC 7592 §1.2) and the secrets of registered clients.
//! A token is 32 random bytes, base64url; only its SHA-256 digest (hex) is stored, so a copy
//! of the stored registrations lets no one manage them. The comparison is constant-time.

use aws_lc_rs::digest;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq;

use crate::CoreError;

/// A new random credential: 32 bytes, base64url without padding (43 characters).
pub fn random_credential() -> Result<String, CoreError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CoreError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a registration access token: its SHA-256, lowercase hex.
pub fn token_digest(token: &str) -> String {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is the token whose digest is `stored` (constant-time in the digest).
pub fn token_matches(presented: &str, stored: &str) -> bool {
    let computed = token_digest(presented);
    computed.len() == stored.len() && bool::from(computed.as_bytes().ct_eq(stored.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_digest_verifies_them() {
        let a = random_credential().unwrap();
        let b = random_credential().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let stored = token_digest(&a);
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(&a));
        assert!(token_matches(&a, &stored));
        assert!(!token_matches(&b, &stored));
        assert!(!token_matches("", &stored));
        assert!(!token_matches(&a, ""));
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
