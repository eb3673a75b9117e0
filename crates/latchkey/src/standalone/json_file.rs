//! Small state documents standalone, one JSON file each in the state directory (mode 0600):
//! the revocation list (issue 13) and the session-cookie keys (issue 12), each a
//! [`DocumentStore`] for its one rule in core. Reads and writes happen under an exclusive lock
//! on the document's own lock file, and a write is conditional on the content read (its digest
//! is the version), as for the key ring, so a second process on one state directory can never
//! overwrite newer state.

use std::{
    fs::File,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use latchkey_core::{
    revocation::Revocations,
    session_keys::SessionKeys,
    store::{DocumentStore, StoreError, Version, Versioned},
};
use latchkey_server::file_read::read_bounded;

use super::key_file::{blocking, version_of};
use crate::files;

/// A document kept as one file: where, how large at most, and its encoding.
pub trait FileDocument: Clone + Send + Sync + Sized + 'static {
    const FILE: &'static str;
    const LOCK: &'static str;
    const MAX_BYTES: u64;
    fn decode(bytes: &[u8]) -> Result<Self, String>;
    fn encode(&self) -> Result<Vec<u8>, String>;
}

pub const REVOCATIONS_FILE: &str = "revocations.json";
pub const SESSION_KEYS_FILE: &str = "session-keys.json";

impl FileDocument for Revocations {
    const FILE: &'static str = REVOCATIONS_FILE;
    const LOCK: &'static str = "revocations.lock";
    /// The list is bounded ([`latchkey_core::revocation::MAX_REVOKED`]) well under this.
    const MAX_BYTES: u64 = 4 << 20;
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Revocations::from_json(bytes).map_err(|e| e.to_string())
    }
    fn encode(&self) -> Result<Vec<u8>, String> {
        Ok(self.to_json())
    }
}

impl FileDocument for SessionKeys {
    const FILE: &'static str = SESSION_KEYS_FILE;
    const LOCK: &'static str = "session-keys.lock";
    const MAX_BYTES: u64 = 64 << 10;
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
    fn encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }
}

/// The file of document `T` in a state directory.
#[derive(Debug)]
pub struct JsonFile<T> {
    dir: PathBuf,
    kind: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonFile<T> {
    fn clone(&self) -> Self {
        JsonFile {
            dir: self.dir.clone(),
            kind: PhantomData,
        }
    }
}

pub type RevocationFile = JsonFile<Revocations>;
pub type SessionKeyFile = JsonFile<SessionKeys>;

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl<T: FileDocument> JsonFile<T> {
    pub fn new(dir: &Path) -> JsonFile<T> {
        JsonFile {
            dir: dir.to_owned(),
            kind: PhantomData,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(T::FILE)
    }

    fn locked<R>(&self, f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
        files::ensure_private_dir(&self.dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let lock_path = self.dir.join(T::LOCK);
        let lock = File::create(&lock_path).map_err(|e| unavailable(&lock_path, e))?;
        lock.lock().map_err(|e| unavailable(&lock_path, e))?;
        let out = f();
        drop(lock);
        out
    }

    fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path();
        read_bounded(&path, T::MAX_BYTES).map_err(|e| unavailable(&path, e))
    }

    fn load_blocking(&self) -> Result<Option<Versioned<T>>, StoreError> {
        self.locked(|| {
            let Some(bytes) = self.read()? else {
                return Ok(None);
            };
            let value = T::decode(&bytes)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", self.path().display())))?;
            Ok(Some(Versioned {
                value,
                version: version_of(Some(&bytes)),
            }))
        })
    }

    fn write_if(&self, value: &T, expected: &Version) -> Result<Version, StoreError> {
        let bytes = value.encode().map_err(StoreError::Invalid)?;
        self.locked(|| {
            if version_of(self.read()?.as_deref()) != *expected {
                return Err(StoreError::Conflict);
            }
            files::write_atomic(&self.path(), &bytes, true)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(version_of(Some(&bytes)))
        })
    }
}

impl<T: FileDocument> DocumentStore<T> for JsonFile<T> {
    async fn load(&self) -> Result<Option<Versioned<T>>, StoreError> {
        let me = self.clone();
        blocking(move || me.load_blocking()).await
    }

    async fn create(&self, value: &T) -> Result<Version, StoreError> {
        let (me, value) = (self.clone(), value.clone());
        blocking(move || me.write_if(&value, &version_of(None))).await
    }

    async fn replace(&self, value: &T, version: &Version) -> Result<Version, StoreError> {
        let (me, value, version) = (self.clone(), value.clone(), version.clone());
        blocking(move || me.write_if(&value, &version)).await
    }
}

#[cfg(test)]
mod revocation_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::SystemTime;

    #[tokio::test]
    async fn revocations_survive_in_the_state_dir_and_stale_writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = RevocationFile::new(dir.path());
        assert!(store.load().await.unwrap().is_none());
        let exp = latchkey_core::token::unix_seconds(SystemTime::now()) + 60;
        let list = latchkey_core::revocation::record(&store, "j1", exp, SystemTime::now())
            .await
            .unwrap();
        assert!(list.is_revoked("j1"));
        let again = RevocationFile::new(dir.path())
            .load()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.value, list);
        let stale = version_of(None);
        assert_eq!(
            store.replace(&Revocations::default(), &stale).await,
            Err(StoreError::Conflict)
        );
    }
}

#[cfg(test)]
mod session_key_tests {
    use super::*;
    use latchkey_core::session_keys::{self, SessionKeyPolicy};
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn keys_are_made_once_kept_private_and_shared_by_every_process_on_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let a = SessionKeyFile::new(dir.path());
        let b = SessionKeyFile::new(dir.path());
        let policy = SessionKeyPolicy::default();
        let first = session_keys::pass(&a, &policy, 1_000).await.unwrap();
        let second = session_keys::pass(&b, &policy, 1_001).await.unwrap();
        assert_eq!(first, second);
        let sealed = first.seal("session", b"v", 1_001).unwrap();
        assert_eq!(second.open("session", &sealed).unwrap(), b"v");
        let mode = std::fs::metadata(dir.path().join(SESSION_KEYS_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let stale = a.load().await.unwrap().unwrap();
        session_keys::pass(&b, &policy, 1_000 + policy.rotate_every.as_secs())
            .await
            .unwrap();
        assert_eq!(
            a.replace(&stale.value, &stale.version).await.unwrap_err(),
            StoreError::Conflict
        );
    }
}
