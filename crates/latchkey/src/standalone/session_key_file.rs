//! The session-cookie keys standalone: `session-keys.json` in the state directory (mode 0600),
//! read and written under a lock and written only at the digest read, as a [`DocumentStore`]
//! for the one driver pass.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use latchkey_core::{
    session_keys::SessionKeys,
    store::{DocumentStore, StoreError, Version, Versioned},
};
use latchkey_server::file_read::read_bounded;

use super::key_file::version_of;
use crate::files;

pub const SESSION_KEYS_FILE: &str = "session-keys.json";
const LOCK_FILE: &str = "session-keys.lock";
const MAX_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone)]
pub struct SessionKeyFile {
    dir: PathBuf,
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl SessionKeyFile {
    pub fn new(dir: &Path) -> SessionKeyFile {
        SessionKeyFile {
            dir: dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(SESSION_KEYS_FILE)
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

    fn read(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path();
        read_bounded(&path, MAX_BYTES).map_err(|e| unavailable(&path, e))
    }

    fn load_blocking(&self) -> Result<Option<Versioned<SessionKeys>>, StoreError> {
        self.locked(|| {
            let Some(bytes) = self.read()? else {
                return Ok(None);
            };
            let value = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", self.path().display())))?;
            Ok(Some(Versioned {
                value,
                version: version_of(Some(&bytes)),
            }))
        })
    }

    fn write_if(&self, keys: &SessionKeys, expected: &Version) -> Result<Version, StoreError> {
        let bytes = serde_json::to_vec(keys).map_err(|e| StoreError::Invalid(e.to_string()))?;
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("session keys task: {e}")))?
}

impl DocumentStore<SessionKeys> for SessionKeyFile {
    async fn load(&self) -> Result<Option<Versioned<SessionKeys>>, StoreError> {
        let me = self.clone();
        blocking(move || me.load_blocking()).await
    }

    async fn create(&self, value: &SessionKeys) -> Result<Version, StoreError> {
        let (me, keys) = (self.clone(), value.clone());
        blocking(move || me.write_if(&keys, &version_of(None))).await
    }

    async fn replace(&self, value: &SessionKeys, version: &Version) -> Result<Version, StoreError> {
        let (me, keys, version) = (self.clone(), value.clone(), version.clone());
        blocking(move || me.write_if(&keys, &version)).await
    }
}

#[cfg(test)]
mod tests {
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
