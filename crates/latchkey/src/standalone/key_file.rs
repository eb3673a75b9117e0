//! The signing keys on disk: `keyring.json` in the state directory, as a
//! [`DocumentStore`] for the one key driver. Every read and write happens under an exclusive
//! lock on `keyring.lock`, and a write is conditional on the content read (its digest is the
//! version), so the server and `latchkey keys --state-dir` never overwrite each other.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::SystemTime,
};

use latchkey_core::{
    KeyMaterial,
    key_driver::{Pass, StoredKeys},
    keyring::{KeyRing, RotationPolicy, kid_for},
    store::{DocumentStore, StoreError, Version, Versioned},
};
use latchkey_operator::key_driver::KeyHome;
use latchkey_server::file_read::read_bounded;

use crate::files;

pub const KEYRING_FILE: &str = "keyring.json";
/// The single key of earlier versions, imported into a ring once.
pub const LEGACY_KEY_FILE: &str = "signing-key.pem";
const LOCK_FILE: &str = "keyring.lock";
/// A key ring is a few keys of a few KiB: anything larger is not one.
const MAX_RING_BYTES: u64 = 1 << 20;

/// The key ring file of a state directory.
#[derive(Debug, Clone)]
pub struct KeyFile {
    dir: PathBuf,
    /// Used to import a legacy key (its kid and algorithm rules).
    policy: RotationPolicy,
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// The version of a file's content: a digest of its bytes (an absent file has its own).
pub(crate) fn version_of(bytes: Option<&[u8]>) -> Version {
    match bytes {
        None => Version("absent".into()),
        Some(b) => {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
            Version(
                d.as_ref()[..16]
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect(),
            )
        }
    }
}

impl KeyFile {
    pub fn new(dir: &Path, policy: &RotationPolicy) -> KeyFile {
        KeyFile {
            dir: dir.to_owned(),
            policy: policy.clone(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(KEYRING_FILE)
    }

    /// Hold the lock for the duration of `f`. The lock file is never truncated: once a ring
    /// has been written it holds a marker, so a ring missing later means keys lost (a first
    /// start, which only creates the empty lock file, does not).
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut File) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        files::ensure_private_dir(&self.dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| unavailable(&lock_path, e))?;
        lock.lock().map_err(|e| unavailable(&lock_path, e))?;
        let out = f(&mut lock);
        drop(lock);
        out
    }

    /// Whether a ring was ever written in this directory (the lock file's marker).
    fn ring_written_before(lock: &File) -> bool {
        lock.metadata().is_ok_and(|m| m.len() > 0)
    }

    fn read_current(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path();
        read_bounded(&path, MAX_RING_BYTES).map_err(|e| unavailable(&path, e))
    }

    fn parse(&self, bytes: &[u8]) -> Result<KeyRing, StoreError> {
        KeyRing::from_json(bytes)
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", self.path().display())))
    }

    /// The ring made from a key of earlier versions, if there is one.
    fn legacy(&self, now: SystemTime) -> Result<Option<KeyRing>, StoreError> {
        let path = self.dir.join(LEGACY_KEY_FILE);
        let Some(bytes) = read_bounded(&path, MAX_RING_BYTES).map_err(|e| unavailable(&path, e))?
        else {
            return Ok(None);
        };
        let invalid =
            |e: &dyn std::fmt::Display| StoreError::Invalid(format!("{}: {e}", path.display()));
        let text = std::str::from_utf8(&bytes).map_err(|e| invalid(&e))?;
        let material = KeyMaterial::from_any_pem(text).map_err(|e| invalid(&e))?;
        let kid = kid_for(&material, &self.policy.kid).map_err(|e| invalid(&e))?;
        let ring = KeyRing::import(&kid, &material, now).map_err(|e| invalid(&e))?;
        tracing::info!(path = %path.display(), kid = %kid, "imported the signing key into the key ring");
        Ok(Some(ring))
    }

    fn write(&self, ring: &KeyRing, lock: &mut File) -> Result<Version, StoreError> {
        let bytes = ring.to_json();
        files::write_atomic(&self.path(), &bytes, true)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.mark(lock)?;
        Ok(version_of(Some(&bytes)))
    }

    /// Leave the marker that a ring is kept here (once).
    fn mark(&self, lock: &mut File) -> Result<(), StoreError> {
        if Self::ring_written_before(lock) {
            return Ok(());
        }
        use std::io::Write as _;
        let lock_path = self.dir.join(LOCK_FILE);
        lock.write_all(b"a key ring is kept here\n")
            .map_err(|e| unavailable(&lock_path, e))
    }

    fn load_blocking(&self) -> Result<Option<Versioned<StoredKeys>>, StoreError> {
        self.locked(|lock| {
            let current = self.read_current()?;
            let Some(bytes) = current else {
                // A ring of earlier versions becomes the stored one at once.
                if let Some(ring) = self.legacy(SystemTime::now())? {
                    let version = self.write(&ring, lock)?;
                    return Ok(Some(Versioned {
                        value: StoredKeys::managed(ring),
                        version,
                    }));
                }
                // A ring was written here before: a missing one means keys lost.
                if Self::ring_written_before(lock) {
                    tracing::warn!(
                        path = %self.path().display(),
                        "no key ring in a state directory that had one: a new signing key is made, and tokens signed before no longer verify"
                    );
                }
                return Ok(None);
            };
            let ring = self.parse(&bytes)?;
            // A ring kept by an earlier version, whose lock file has no marker yet.
            self.mark(lock)?;
            Ok(Some(Versioned {
                value: StoredKeys::managed(ring),
                version: version_of(Some(&bytes)),
            }))
        })
    }

    fn write_if(&self, ring: &KeyRing, expected: &Version) -> Result<Version, StoreError> {
        self.locked(|lock| {
            let current = self.read_current()?;
            if version_of(current.as_deref()) != *expected {
                return Err(StoreError::Conflict);
            }
            self.write(ring, lock)
        })
    }

    /// The stored ring as it is, or `None`.
    pub fn read(&self) -> Result<Option<KeyRing>, StoreError> {
        Ok(self.load_blocking()?.map(|v| v.value.ring))
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("key ring task: {e}")))?
}

impl DocumentStore<StoredKeys> for KeyFile {
    async fn load(&self) -> Result<Option<Versioned<StoredKeys>>, StoreError> {
        let me = self.clone();
        blocking(move || me.load_blocking()).await
    }

    async fn create(&self, value: &StoredKeys) -> Result<Version, StoreError> {
        let (me, ring) = (self.clone(), value.ring.clone());
        blocking(move || me.write_if(&ring, &version_of(None))).await
    }

    async fn replace(&self, value: &StoredKeys, version: &Version) -> Result<Version, StoreError> {
        let (me, ring, version) = (self.clone(), value.ring.clone(), version.clone());
        blocking(move || me.write_if(&ring, &version)).await
    }
}

impl KeyHome for KeyFile {
    async fn changed(&mut self) {
        // Polled by the driver's tick: `latchkey keys --state-dir` writes under the same lock.
        std::future::pending::<()>().await
    }

    async fn report(&self, pass: &Pass) {
        for ev in &pass.events {
            match ev {
                latchkey_core::keyring::KeyEvent::Revoked { kid } => tracing::warn!(
                    kid = %kid,
                    "signing key revoked: tokens it signed no longer verify"
                ),
                other => tracing::info!(event = ?other, "signing keys"),
            }
        }
        for note in &pass.refused {
            tracing::warn!(note = %note, "a key request could not be carried out");
        }
    }
}

/// With a static kid, keys never rotate, so asking for another algorithm than the stored
/// key's cannot be honoured without breaking verifiers: refuse with a clear message.
pub fn check_static_alg(
    path: &Path,
    ring: &KeyRing,
    policy: &RotationPolicy,
) -> Result<(), String> {
    if policy.rotates() {
        return Ok(());
    }
    match ring.active() {
        Some(active) if active.alg != policy.alg => Err(format!(
            "{} holds a {} key but --key-alg is {}; keep {} or use --kid-strategy thumbprint to rotate to {}",
            path.display(),
            active.alg,
            policy.alg,
            active.alg,
            policy.alg
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::{
        SigningAlgorithm,
        key_driver::{KeyRequests, pass},
        keyring::KidStrategy,
    };
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

    fn run_pass(store: &KeyFile, p: &RotationPolicy) -> Pass {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(pass(store, p, KeyRequests::default(), SystemTime::now()))
            .unwrap()
    }

    #[test]
    fn kept_across_starts_and_static_alg_changes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(SigningAlgorithm::ES256, KidStrategy::Static("k".into()));
        let store = KeyFile::new(dir.path(), &p);
        let first = run_pass(&store, &p).ring;
        let again = run_pass(&store, &p).ring;
        assert_eq!(first, again);
        let other = policy(SigningAlgorithm::EdDSA, KidStrategy::Static("k".into()));
        let err = check_static_alg(&store.path(), &again, &other).unwrap_err();
        assert!(err.contains("holds a ES256 key"), "{err}");
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
        let ring = run_pass(&KeyFile::new(dir.path(), &p), &p).ring;
        assert_eq!(ring.active().unwrap().private_key_pem, m.to_pem());
        assert_eq!(ring.active().unwrap().kid, "gateway_certificate_alias");
    }

    #[test]
    fn a_corrupt_ring_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEYRING_FILE), "junk").unwrap();
        let p = policy(SigningAlgorithm::RS256, KidStrategy::Thumbprint);
        let err = KeyFile::new(dir.path(), &p).read().unwrap_err();
        assert!(err.to_string().contains(KEYRING_FILE), "{err}");
        // An empty file is not a ring either: never silently replaced.
        std::fs::write(dir.path().join(KEYRING_FILE), "").unwrap();
        assert!(KeyFile::new(dir.path(), &p).read().is_err());
    }

    #[test]
    fn a_write_conditional_on_a_stale_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(SigningAlgorithm::EdDSA, KidStrategy::Thumbprint);
        let store = KeyFile::new(dir.path(), &p);
        run_pass(&store, &p);
        let read = store.load_blocking().unwrap().unwrap();
        // Someone else changes the file after our read.
        let mut other = read.value.ring.clone();
        other.rotation_requested_at = Some(1);
        store.write_if(&other, &read.version).unwrap();
        assert_eq!(
            store.write_if(&read.value.ring, &read.version).unwrap_err(),
            StoreError::Conflict
        );
    }

    #[test]
    fn a_fifo_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(KEYRING_FILE);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let p = policy(SigningAlgorithm::EdDSA, KidStrategy::Thumbprint);
        let err = KeyFile::new(dir.path(), &p).read().unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
