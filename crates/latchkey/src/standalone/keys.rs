//! The standalone key ring: `keyring.json` in the state directory, made on first start, so a
//! restart keeps every key and its state. The server and `latchkey keys --state-dir` change
//! it only under an exclusive lock on `keyring.lock`, reading and writing it whole.

use std::{fs::File, path::Path, time::SystemTime};

use latchkey_core::{
    KeyMaterial,
    keyring::{KeyRing, KidStrategy, RotationPolicy},
};

use crate::{error::Error, files};

pub const KEYRING_FILE: &str = "keyring.json";
/// The single key of earlier versions, imported into a ring once.
pub const LEGACY_KEY_FILE: &str = "signing-key.pem";
const LOCK_FILE: &str = "keyring.lock";

/// The stored ring, if there is one.
pub fn read(dir: &Path) -> Result<Option<KeyRing>, Error> {
    let path = dir.join(KEYRING_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => KeyRing::from_json(&bytes)
            .map(Some)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

/// The ring to start from when none is stored: the legacy key, or a new one.
fn first_ring(dir: &Path, policy: &RotationPolicy, now: SystemTime) -> Result<KeyRing, Error> {
    let legacy = dir.join(LEGACY_KEY_FILE);
    match std::fs::read_to_string(&legacy) {
        Ok(pem) => {
            let material = KeyMaterial::from_any_pem(&pem)
                .map_err(|e| Error::Config(format!("{}: {e}", legacy.display())))?;
            let kid = match &policy.kid {
                KidStrategy::Static(kid) => kid.clone(),
                KidStrategy::Thumbprint => {
                    latchkey_core::SigningKey::new("t", &material)?.thumbprint()?
                }
            };
            tracing::info!(path = %legacy.display(), kid = %kid, "imported the signing key into the key ring");
            Ok(KeyRing::import(&kid, &material, now)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = KeyRing::bootstrap(policy, now)?;
            tracing::info!(kid = ?ring.active().map(|k| &k.kid), alg = %policy.alg, "signing key made");
            Ok(ring)
        }
        Err(e) => Err(Error::Io {
            path: legacy,
            source: e,
        }),
    }
}

/// Change the ring under the lock and write it back when `change` altered it (or it was
/// just made). Returns the ring as stored afterwards and what `change` returned.
pub fn update<T>(
    dir: &Path,
    policy: &RotationPolicy,
    change: impl FnOnce(&mut KeyRing) -> Result<T, Error>,
) -> Result<(KeyRing, T), Error> {
    files::ensure_private_dir(dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(Error::io(&lock_path))?;
    lock.lock().map_err(Error::io(&lock_path))?;
    let now = SystemTime::now();
    let stored = read(dir)?;
    let mut ring = match &stored {
        Some(r) => r.clone(),
        None => first_ring(dir, policy, now)?,
    };
    let out = change(&mut ring)?;
    if stored.as_ref() != Some(&ring) {
        files::write_atomic(&dir.join(KEYRING_FILE), &ring.to_json(), true)?;
    }
    drop(lock);
    Ok((ring, out))
}

/// With a static kid, keys never rotate, so asking for another algorithm than the stored
/// key's cannot be honoured without breaking verifiers: refuse with a clear message.
pub fn check_static_alg(dir: &Path, ring: &KeyRing, policy: &RotationPolicy) -> Result<(), Error> {
    if policy.rotates() {
        return Ok(());
    }
    match ring.active() {
        Some(active) if active.alg != policy.alg => Err(Error::Config(format!(
            "{} holds a {} key but --key-alg is {}; keep {} or use --kid-strategy thumbprint to rotate to {}",
            dir.join(KEYRING_FILE).display(),
            active.alg,
            policy.alg,
            active.alg,
            policy.alg
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::SigningAlgorithm;
    use std::time::Duration;

    fn policy(alg: SigningAlgorithm, kid: KidStrategy) -> RotationPolicy {
        RotationPolicy {
            alg,
            rsa_bits: 2048,
            kid,
            rotation_period: Duration::from_secs(3600),
            verifier_cache: Duration::from_secs(120),
            clock_skew: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(600),
        }
    }

    #[test]
    fn kept_across_starts_and_static_alg_changes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(SigningAlgorithm::ES256, KidStrategy::Static("k".into()));
        let (first, ()) = update(dir.path(), &p, |_| Ok(())).unwrap();
        let (again, ()) = update(dir.path(), &p, |_| Ok(())).unwrap();
        assert_eq!(first, again);
        let other = policy(SigningAlgorithm::EdDSA, KidStrategy::Static("k".into()));
        let err = check_static_alg(dir.path(), &again, &other).unwrap_err();
        assert!(err.to_string().contains("holds a ES256 key"), "{err}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEYRING_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_legacy_key_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let m = KeyMaterial::generate(SigningAlgorithm::ES256, 2048).unwrap();
        std::fs::write(dir.path().join(LEGACY_KEY_FILE), m.to_pem()).unwrap();
        let p = policy(
            SigningAlgorithm::ES256,
            KidStrategy::Static("gateway_certificate_alias".into()),
        );
        let (ring, ()) = update(dir.path(), &p, |_| Ok(())).unwrap();
        assert_eq!(ring.active().unwrap().private_key_pem, m.to_pem());
        assert_eq!(ring.active().unwrap().kid, "gateway_certificate_alias");
    }

    #[test]
    fn a_corrupt_ring_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEYRING_FILE), "junk").unwrap();
        let p = policy(SigningAlgorithm::RS256, KidStrategy::Thumbprint);
        let err = update(dir.path(), &p, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains(KEYRING_FILE), "{err}");
    }
}
