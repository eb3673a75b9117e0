//! A collection of documents on disk, one JSON file per id under a directory of the state dir,
//! as a [`CollectionStore`] (standalone's authorization grants live in `grants/`). Every read
//! and write happens under an exclusive lock on the collection's lock file, and a write is
//! conditional on the content read (its digest is the version), like the key ring's file.

use std::{
    fs::File,
    marker::PhantomData,
    path::{Path, PathBuf},
};

use latchkey_core::{
    authorization_grant::{CollectionStore, Expiring},
    store::{StoreError, Version, Versioned},
};
use latchkey_server::file_read::read_bounded;
use serde::{Serialize, de::DeserializeOwned};

use super::key_file::version_of;
use crate::files;

/// A grant is well under a KiB: anything larger is not one.
const MAX_DOC_BYTES: u64 = 64 << 10;

/// Documents of type `T` under `dir`, one `<id>.json` each.
#[derive(Debug)]
pub struct CollectionFiles<T> {
    dir: PathBuf,
    _doc: PhantomData<fn() -> T>,
}

impl<T> Clone for CollectionFiles<T> {
    fn clone(&self) -> Self {
        CollectionFiles {
            dir: self.dir.clone(),
            _doc: PhantomData,
        }
    }
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// Ids are file names: letters, digits, '-' and '_' only, so none can leave the directory.
fn checked(id: &str) -> Result<&str, StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(StoreError::Invalid("not a document id".into()))
    }
}

impl<T> CollectionFiles<T>
where
    T: Serialize + DeserializeOwned + Expiring + Send + Sync + 'static,
{
    pub fn new(dir: &Path) -> CollectionFiles<T> {
        CollectionFiles {
            dir: dir.to_owned(),
            _doc: PhantomData,
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn locked<R>(&self, f: impl FnOnce() -> Result<R, StoreError>) -> Result<R, StoreError> {
        files::ensure_private_dir(&self.dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let lock_path = self.dir.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| unavailable(&lock_path, e))?;
        lock.lock().map_err(|e| unavailable(&lock_path, e))?;
        let out = f();
        drop(lock);
        out
    }

    fn read(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(id);
        read_bounded(&path, MAX_DOC_BYTES).map_err(|e| unavailable(&path, e))
    }

    fn parse(&self, id: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", self.path(id).display())))
    }

    fn load_blocking(&self, id: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let id = checked(id)?;
        self.locked(|| {
            let Some(bytes) = self.read(id)? else {
                return Ok(None);
            };
            Ok(Some(Versioned {
                value: self.parse(id, &bytes)?,
                version: version_of(Some(&bytes)),
            }))
        })
    }

    fn write_if(&self, id: &str, value: &T, expected: &Version) -> Result<Version, StoreError> {
        let id = checked(id)?;
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.locked(|| {
            if version_of(self.read(id)?.as_deref()) != *expected {
                return Err(StoreError::Conflict);
            }
            files::write_atomic(&self.path(id), &bytes, true)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(version_of(Some(&bytes)))
        })
    }

    /// Delete the documents that expired by `now`, and any that cannot be read as one (a
    /// crash never leaves a half-written file, so those are not ours).
    fn sweep_blocking(&self, now: u64) -> Result<usize, StoreError> {
        if !self.dir.exists() {
            return Ok(0);
        }
        self.locked(|| {
            let entries = std::fs::read_dir(&self.dir).map_err(|e| unavailable(&self.dir, e))?;
            let mut removed = 0;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| checked(n).ok())
                else {
                    continue;
                };
                let expired = match self.read(id) {
                    Ok(Some(bytes)) => self.parse(id, &bytes).is_ok_and(|d| d.expires_at() <= now),
                    _ => false,
                };
                if expired && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("collection task: {e}")))?
}

impl<T> CollectionStore<T> for CollectionFiles<T>
where
    T: Serialize + DeserializeOwned + Expiring + Clone + Send + Sync + 'static,
{
    async fn load(&self, id: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let (me, id) = (self.clone(), id.to_owned());
        blocking(move || me.load_blocking(&id)).await
    }

    async fn create(&self, id: &str, value: &T) -> Result<Version, StoreError> {
        let (me, id, value) = (self.clone(), id.to_owned(), value.clone());
        blocking(move || me.write_if(&id, &value, &version_of(None))).await
    }

    async fn replace(&self, id: &str, value: &T, version: &Version) -> Result<Version, StoreError> {
        let (me, id, value, version) =
            (self.clone(), id.to_owned(), value.clone(), version.clone());
        blocking(move || me.write_if(&id, &value, &version)).await
    }

    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        let me = self.clone();
        blocking(move || me.sweep_blocking(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::authorization_grant::{
        self as grants, GrantPhase, GrantRecord, NewGrant, Refusal,
    };
    use std::{os::unix::fs::PermissionsExt, time::Duration};

    fn new_grant() -> NewGrant {
        NewGrant {
            client_id: "web".into(),
            user_id: "u".into(),
            scope: "openid".into(),
            auth_time: 100,
            nonce: None,
            organization: None,
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: None,
        }
    }

    #[tokio::test]
    async fn the_rules_hold_on_files_and_a_stale_write_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = CollectionFiles::<GrantRecord>::new(&dir.path().join("grants"));
        let (id, code, record) = grants::issue(new_grant(), 100).unwrap();
        store.create(&id, &record).await.unwrap();
        assert_eq!(
            store.create(&id, &record).await.unwrap_err(),
            StoreError::Conflict
        );
        let file = dir.path().join("grants").join(format!("{id}.json"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stale = store.load(&id).await.unwrap().unwrap();
        let day = Duration::from_secs(86_400);
        let granted = grants::redeem(
            &store,
            &code,
            "web",
            "https://app.example/cb",
            None,
            110,
            day,
        )
        .await
        .unwrap();
        assert_eq!(
            store
                .replace(&id, &stale.value, &stale.version)
                .await
                .unwrap_err(),
            StoreError::Conflict
        );
        // A second process on the same directory sees the same state: the code is spent.
        let other = CollectionFiles::<GrantRecord>::new(&dir.path().join("grants"));
        assert_eq!(
            grants::redeem(
                &other,
                &code,
                "web",
                "https://app.example/cb",
                None,
                111,
                day
            )
            .await
            .unwrap_err(),
            Refusal::Replayed
        );
        assert!(matches!(
            other.load(&id).await.unwrap().unwrap().value.phase,
            GrantPhase::Revoked { .. }
        ));
        assert_eq!(
            grants::refresh(&store, &granted.refresh_token, "web", 112)
                .await
                .unwrap_err(),
            Refusal::Revoked
        );
    }

    #[tokio::test]
    async fn sweep_removes_expired_documents_only_and_ids_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = CollectionFiles::<GrantRecord>::new(&dir.path().join("grants"));
        let (a, _, ra) = grants::issue(new_grant(), 100).unwrap();
        let (b, _, rb) = grants::issue(new_grant(), 200).unwrap();
        store.create(&a, &ra).await.unwrap();
        store.create(&b, &rb).await.unwrap();
        assert_eq!(store.sweep(ra.expires_at).await.unwrap(), 1);
        assert!(store.load(&a).await.unwrap().is_none());
        assert!(store.load(&b).await.unwrap().is_some());
        for bad in ["../x", "", "a/b", "a.json", &"a".repeat(129)] {
            assert!(matches!(
                store.load(bad).await.unwrap_err(),
                StoreError::Invalid(_)
            ));
        }
    }
}
