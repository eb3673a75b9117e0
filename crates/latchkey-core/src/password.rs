//! Argon2id password hashes in PHC string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`):
//! made with the parameters OWASP recommends, checked when a user is loaded, verified in
//! constant time, and a decoy that an unknown user's password is checked against so that a
//! login for a name that does not exist costs the same work as one that does.

use std::sync::OnceLock;

use argon2::{
    Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version,
    password_hash::{self, SaltString},
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::CoreError;

/// OWASP Password Storage Cheat Sheet, Argon2id: 19 MiB of memory, 2 iterations, 1 lane.
pub const OWASP_MEMORY_KIB: u32 = 19 * 1024;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_PARALLELISM: u32 = 1;

/// Bounds on a stored hash's parameters: a hash is verified on every login, so one written
/// with absurd parameters must not let a login attempt take a replica's memory or minutes.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
pub const MAX_ITERATIONS: u32 = 16;
pub const MAX_PARALLELISM: u32 = 16;
/// The longest password accepted, in bytes (longer ones only cost hashing time).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The longest PHC string accepted.
const MAX_PHC_LEN: usize = 512;

/// A checked Argon2id PHC string. Its `Debug` hides it: a hash is not a password, but it is
/// what an offline guesser needs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    phc: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

fn invalid(m: impl Into<String>) -> CoreError {
    CoreError::InvalidPassword(m.into())
}

impl PasswordHash {
    /// Accept an Argon2id (version 19) PHC string whose parameters are within the bounds.
    /// The message never repeats the string.
    pub fn parse(phc: &str) -> Result<PasswordHash, CoreError> {
        let phc = phc.trim();
        if phc.len() > MAX_PHC_LEN {
            return Err(invalid("longer than a PHC string"));
        }
        let parsed = password_hash::PasswordHash::new(phc)
            .map_err(|_| invalid("not a PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)"))?;
        if parsed.algorithm != argon2::ARGON2ID_IDENT {
            return Err(invalid(format!(
                "the algorithm is {}, not argon2id",
                parsed.algorithm.as_str()
            )));
        }
        if parsed.version != Some(Version::V0x13.into()) {
            return Err(invalid("the Argon2 version must be 19"));
        }
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err(invalid("the salt or the hash is missing"));
        }
        let params = Params::try_from(&parsed)
            .map_err(|_| invalid("the m, t and p parameters are invalid"))?;
        if params.m_cost() > MAX_MEMORY_KIB
            || params.t_cost() > MAX_ITERATIONS
            || params.p_cost() > MAX_PARALLELISM
        {
            return Err(invalid(format!(
                "parameters above m={MAX_MEMORY_KIB},t={MAX_ITERATIONS},p={MAX_PARALLELISM}"
            )));
        }
        Ok(PasswordHash {
            phc: phc.to_owned(),
        })
    }

    /// Hash a password with the OWASP parameters and a fresh random salt.
    pub fn new(password: &[u8]) -> Result<PasswordHash, CoreError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(invalid(format!(
                "a password may have at most {MAX_PASSWORD_LEN} bytes"
            )));
        }
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| invalid("no randomness for a salt"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|_| invalid("salt encoding"))?;
        let params = Params::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM, None)
            .map_err(|_| invalid("parameters"))?;
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password, &salt)
            .map_err(|_| invalid("hashing failed"))?
            .to_string();
        Ok(PasswordHash { phc })
    }

    /// Whether `password` is the one hashed. Argon2 runs with the hash's own parameters and
    /// the outputs are compared in constant time; a password over the length bound is still
    /// hashed (truncated) so its answer takes as long, and is refused.
    pub fn verify(&self, password: &[u8]) -> bool {
        let Ok(parsed) = password_hash::PasswordHash::new(&self.phc) else {
            return false;
        };
        let within = password.len() <= MAX_PASSWORD_LEN;
        let input = &password[..password.len().min(MAX_PASSWORD_LEN)];
        let matched = Argon2::default().verify_password(input, &parsed).is_ok();
        matched && within
    }

    /// The PHC string, to write into a Secret.
    pub fn as_phc(&self) -> &str {
        &self.phc
    }
}

/// A hash with the OWASP parameters of a random password nobody knows: an unknown user's
/// login verifies against it and fails after the same work as a known user's. Made on first
/// use (call it when users are loaded, so no login pays for it).
pub fn decoy() -> &'static PasswordHash {
    static DECOY: OnceLock<PasswordHash> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut secret = [0u8; 32];
        let hashed = SystemRandom::new()
            .fill(&mut secret)
            .ok()
            .and_then(|()| PasswordHash::new(&secret).ok());
        // Unparseable, so it verifies nothing; only reached when the system has no
        // randomness, where nothing else works either.
        hashed.unwrap_or(PasswordHash { phc: String::new() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_hash_has_owasp_parameters_and_verifies_only_its_password() {
        let h = PasswordHash::new(b"correct horse").unwrap();
        assert!(
            h.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.as_phc()
        );
        assert!(h.verify(b"correct horse"));
        assert!(!h.verify(b"correct hors"));
        assert!(!h.verify(b""));
        assert_eq!(PasswordHash::parse(h.as_phc()).unwrap(), h);
        // Two hashes of one password differ by their salt.
        assert_ne!(PasswordHash::new(b"correct horse").unwrap(), h);
        assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn parse_refuses_other_algorithms_and_unbounded_parameters() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let ok = format!("$argon2id$v=19$m=19456,t=2,p=1${salt}${out}");
        PasswordHash::parse(&ok).unwrap();
        PasswordHash::parse(&format!(" {ok}\n")).unwrap();
        for bad in [
            format!("$argon2i$v=19$m=19456,t=2,p=1${salt}${out}"),
            format!("$argon2d$v=19$m=19456,t=2,p=1${salt}${out}"),
            format!("$argon2id$v=16$m=19456,t=2,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"),
            format!("$argon2id$v=19$m=1048576,t=2,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=19456,t=100,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=19456,t=2,p=64${salt}${out}"),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
            "admin".to_owned(),
            String::new(),
            format!("$argon2id$v=19$m=19456,t=2,p=1${salt}${}", "A".repeat(600)),
        ] {
            let e = PasswordHash::parse(&bad).unwrap_err().to_string();
            assert!(!e.contains(salt), "{e}");
        }
    }

    #[test]
    fn an_overlong_password_is_refused_even_when_its_prefix_matches() {
        let long = vec![b'a'; MAX_PASSWORD_LEN];
        let h = PasswordHash::new(&long).unwrap();
        assert!(h.verify(&long));
        let mut longer = long.clone();
        longer.push(b'a');
        assert!(!h.verify(&longer));
        assert!(PasswordHash::new(&longer).is_err());
    }

    #[test]
    fn decoy_matches_nothing_typed() {
        let d = decoy();
        assert!(d.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        for guess in [&b""[..], b"admin", &[0u8; 32]] {
            assert!(!d.verify(guess));
        }
        assert!(std::ptr::eq(d, decoy()));
    }
}
