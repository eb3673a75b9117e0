//! The standalone signing key: made on first start, kept in the state directory, so a restart
//! keeps verifying the tokens issued before it.

use std::path::Path;

use latchkey_core::{KeyMaterial, SigningAlgorithm};

use crate::{error::Error, files};

pub const KEY_FILE: &str = "signing-key.pem";

/// The algorithm a stored PKCS#8 key signs for, found by parsing it.
fn detect(pem: &str) -> Result<KeyMaterial, Error> {
    [
        SigningAlgorithm::RS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
    ]
    .into_iter()
    .find_map(|alg| KeyMaterial::from_pem(alg, pem).ok())
    .ok_or_else(|| Error::Config("is not an RSA (2048-4096), P-256 or Ed25519 PKCS#8 key".into()))
}

/// The key in `dir`, or a new one of `alg` written there first.
pub fn load_or_create(
    dir: &Path,
    alg: SigningAlgorithm,
    rsa_bits: u32,
) -> Result<KeyMaterial, Error> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            let material =
                detect(&pem).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            if material.alg() != alg {
                return Err(Error::Config(format!(
                    "{} holds a {} key but --key-alg is {alg}; keep {} or move the key away to start \
                     a new one (tokens signed with the old key then stop verifying)",
                    path.display(),
                    material.alg(),
                    material.alg()
                )));
            }
            tracing::info!(path = %path.display(), alg = %alg, "signing key loaded");
            Ok(material)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let material = KeyMaterial::generate(alg, rsa_bits)?;
            files::write_atomic(&path, material.to_pem().as_bytes(), true)?;
            tracing::info!(path = %path.display(), alg = %alg, "signing key made");
            Ok(material)
        }
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_starts_and_alg_changes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), SigningAlgorithm::ES256, 2048).unwrap();
        let again = load_or_create(dir.path(), SigningAlgorithm::ES256, 2048).unwrap();
        assert_eq!(first, again);
        let err = load_or_create(dir.path(), SigningAlgorithm::EdDSA, 2048).unwrap_err();
        assert!(err.to_string().contains("holds a ES256 key"), "{err}");
    }

    #[test]
    fn a_corrupt_key_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "junk").unwrap();
        let err = load_or_create(dir.path(), SigningAlgorithm::RS256, 2048).unwrap_err();
        assert!(err.to_string().contains(KEY_FILE), "{err}");
    }
}
