//! Issue 13: the revocation list on disk: `revocations.json` in the state directory, as a
//! [`DocumentStore`] for the one revocation rule ([`latchkey_core::revocation::record`]).
//! Reads and writes happen under an exclusive lock on `revocations.lock`, and a write is
//! conditional on the content read (its digest is the version), as for the key ring.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use latchkey_core::{
    revocation::Revocations,
    store::{DocumentStore, StoreError, Version, Versioned},
};
use latchkey_server::file_read::read_bounded;

use super::key_file::{blocking, version_of};
use crate::files;

pub const REVOCATIONS_FILE: &str = "revocations.json";
const LOCK_FILE: &str = "revocations.lock";
/// The list is bounded ([`latchkey_core::revocation::MAX_REVOKED`]) well under this.
const MAX_BYTES: u64 = 4 << 20;

/// The revocation list file of a state directory.
#[derive(Debug, Clone)]
pub struct RevocationFile {
    dir: PathBuf,
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl RevocationFile {
    pub fn new(dir: &Path) -> RevocationFile {
        RevocationFile {
            dir: dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(REVOCATIONS_FILE)
    }

    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        files::ensure_private_dir(&self.dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|e| unavailable(&lock_path, e))?;
        lock.lock().map_err(|e| unavailable(&lock_path, e))?;
        let out = f();
        drop(lock);
        out
    }

    fn read_current(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path();
        read_bounded(&path, MAX_BYTES).map_err(|e| unavailable(&path, e))
    }

    fn load_blocking(&self) -> Result<Option<Versioned<Revocations>>, StoreError> {
        self.locked(|| {
            let Some(bytes) = self.read_current()? else {
                return Ok(None);
            };
            let value = Revocations::from_json(&bytes)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", self.path().display())))?;
            Ok(Some(Versioned {
                value,
                version: version_of(Some(&bytes)),
            }))
        })
    }

    fn write_if(&self, list: &Revocations, expected: &Version) -> Result<Version, StoreError> {
        self.locked(|| {
            if version_of(self.read_current()?.as_deref()) != *expected {
                return Err(StoreError::Conflict);
            }
            let bytes = list.to_json();
            files::write_atomic(&self.path(), &bytes, true)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(version_of(Some(&bytes)))
        })
    }
}

impl DocumentStore<Revocations> for RevocationFile {
    async fn load(&self) -> Result<Option<Versioned<Revocations>>, StoreError> {
        let me = self.clone();
        blocking(move || me.load_blocking()).await
    }

    async fn create(&self, value: &Revocations) -> Result<Version, StoreError> {
        let (me, list) = (self.clone(), value.clone());
        blocking(move || me.write_if(&list, &version_of(None))).await
    }

    async fn replace(&self, value: &Revocations, version: &Version) -> Result<Version, StoreError> {
        let (me, list, version) = (self.clone(), value.clone(), version.clone());
        blocking(move || me.write_if(&list, &version)).await
    }
}

#[cfg(test)]
mod tests {
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
