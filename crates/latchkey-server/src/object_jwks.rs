//! A client's JWK Set kept in a Secret or ConfigMap key (`jwksFrom`, `latchkey run`): read
//! through the API server with Latchkey's own credentials when first needed, then from a
//! cache that is fresh for [`MAX_AGE`]; an assertion naming an unknown `kid` (a rotated key)
//! reads it again, at most once per floor. A key removed from the object stops verifying
//! within [`MAX_AGE`]; a key added works at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use latchkey_core::assertion::{JwkSet, ObjectKeyRef, parse_jwks};

use crate::service_account::BoxFuture;

/// How long a read JWK Set is used without reading it again.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Most objects remembered (they come from client definitions).
const MAX_ENTRIES: usize = 4096;

/// What a reader answers when Latchkey may not read the object (RBAC).
pub const FORBIDDEN: &str = "Latchkey is not allowed to read the client's key object";
/// The answer for an object or key that does not exist.
pub const NOT_FOUND: &str = "the client's key object or key does not exist";

/// Reads a key of a Secret or ConfigMap.
pub trait ObjectReader: Send + Sync {
    /// The value, or `Ok(None)` when the object or key does not exist.
    fn read<'a>(
        &'a self,
        object: &'a ObjectKeyRef,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, &'static str>>;
}

struct Cached {
    jwks: Arc<JwkSet>,
    read_at: Instant,
}

#[derive(Default)]
struct Entry {
    cached: Mutex<Option<Arc<Cached>>>,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

/// The cache of JWK Sets read from objects.
pub struct ObjectJwks {
    reader: Arc<dyn ObjectReader>,
    refetch_floor: Duration,
    entries: Mutex<HashMap<ObjectKeyRef, Arc<Entry>>>,
}

impl std::fmt::Debug for ObjectJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectJwks").finish_non_exhaustive()
    }
}

impl ObjectJwks {
    pub fn new(reader: Arc<dyn ObjectReader>, refetch_floor: Duration) -> ObjectJwks {
        ObjectJwks {
            reader,
            refetch_floor: refetch_floor.min(MAX_AGE),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The JWK Set in `object`, holding `kid` if it can.
    pub async fn jwks(
        &self,
        object: &ObjectKeyRef,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, &'static str> {
        let entry = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(object) {
                Some(e) => e.clone(),
                None if map.len() >= MAX_ENTRIES => return Err("too many key objects"),
                None => map.entry(object.clone()).or_default().clone(),
            }
        };
        let load = || {
            entry
                .cached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let usable = |c: &Cached, now: Instant| {
            now.duration_since(c.read_at) < MAX_AGE && kid.is_none_or(|k| c.jwks.find(k).is_some())
        };
        if let Some(c) = load().filter(|c| usable(c, Instant::now())) {
            return Ok(c.jwks.clone());
        }
        let mut last = entry.last_attempt.lock().await;
        let now = Instant::now();
        let cached = load();
        if let Some(c) = cached.as_ref().filter(|c| usable(c, now)) {
            return Ok(c.jwks.clone());
        }
        let fresh = cached
            .as_ref()
            .filter(|c| now.duration_since(c.read_at) < MAX_AGE);
        if let (Some(c), Some(t)) = (fresh, *last)
            && now.duration_since(t) < self.refetch_floor
        {
            return Ok(c.jwks.clone());
        }
        *last = Some(now);
        let value = match self.reader.read(object).await {
            Ok(v) => v.ok_or(NOT_FOUND)?,
            Err(why) => {
                // While the API server is away, the keys read before stay in use (as the
                // rest of the registry does).
                tracing::warn!(reason = why, "a client's key object could not be read");
                return cached.map(|c| c.jwks.clone()).ok_or(why);
            }
        };
        let jwks = Arc::new(
            parse_jwks(&value).map_err(|_| "the client's key object holds no usable JWK Set")?,
        );
        *entry.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Cached {
            jwks: jwks.clone(),
            read_at: now,
        }));
        Ok(jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        reads: AtomicUsize,
        kid: Mutex<&'static str>,
    }

    impl ObjectReader for Fake {
        fn read<'a>(
            &'a self,
            _object: &'a ObjectKeyRef,
        ) -> BoxFuture<'a, Result<Option<Vec<u8>>, &'static str>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let kid = *self.kid.lock().unwrap();
            let jwks = format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}]}}"#
            );
            Box::pin(async move { Ok(Some(jwks.into_bytes())) })
        }
    }

    #[tokio::test]
    async fn read_once_then_again_for_an_unknown_kid_after_the_floor() {
        let fake = Arc::new(Fake {
            reads: AtomicUsize::new(0),
            kid: Mutex::new("k1"),
        });
        let cache = ObjectJwks::new(fake.clone(), Duration::from_millis(200));
        let object = ObjectKeyRef {
            kind: "ConfigMap",
            namespace: "apps".into(),
            name: "keys".into(),
            key: "jwks".into(),
        };
        assert!(
            cache
                .jwks(&object, Some("k1"))
                .await
                .unwrap()
                .find("k1")
                .is_some()
        );
        cache.jwks(&object, Some("k1")).await.unwrap();
        assert_eq!(fake.reads.load(Ordering::SeqCst), 1, "cached");
        *fake.kid.lock().unwrap() = "k2";
        cache.jwks(&object, Some("k2")).await.unwrap();
        assert_eq!(fake.reads.load(Ordering::SeqCst), 1, "not within the floor");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let keys = cache.jwks(&object, Some("k2")).await.unwrap();
        assert!(keys.find("k2").is_some(), "the rotated key is read");
        assert_eq!(fake.reads.load(Ordering::SeqCst), 2);
    }
}
