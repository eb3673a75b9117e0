//! The one driver of the signing keys, for both run modes: read the stored ring, carry out
//! what was asked (rotate, revoke), advance the lifecycle at `now`, and write it back only if it
//! changed, conditional on the version read. Where the ring lives (a Secret, a file) is the
//! store's business; the cluster runs a pass on the Lease holder only, standalone always.

use std::time::SystemTime;

use crate::{
    CoreError,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
    store::{DocumentStore, StoreError},
};

/// What has been asked of the keys and not carried out yet (in a cluster: annotations on the
/// keys Secret that `latchkey keys` sets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRequests {
    pub rotate: bool,
    pub revoke: Option<String>,
}

impl KeyRequests {
    pub fn is_empty(&self) -> bool {
        !self.rotate && self.revoke.is_none()
    }
}

/// The stored keys: the ring, pending requests, and whether someone else manages them (then
/// they are read and never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeys {
    pub ring: KeyRing,
    pub requests: KeyRequests,
    pub external: bool,
}

impl StoredKeys {
    /// Keys Latchkey manages, with nothing pending.
    pub fn managed(ring: KeyRing) -> StoredKeys {
        StoredKeys {
            ring,
            requests: KeyRequests::default(),
            external: false,
        }
    }
}

/// The outcome of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// The ring as stored afterwards.
    pub ring: KeyRing,
    pub events: Vec<KeyEvent>,
    /// Requests that could not be carried out, each with why.
    pub refused: Vec<String>,
    /// Whether the store was written.
    pub written: bool,
}

/// Why a pass did nothing. A [`StoreError::Conflict`] means another writer was first: the
/// next pass reads its version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// One pass over the stored keys. `asked` adds requests to those stored (the standalone
/// `latchkey keys` command passes its own); stored requests are cleared once handled.
pub async fn pass<S: DocumentStore<StoredKeys>>(
    store: &S,
    policy: &RotationPolicy,
    asked: KeyRequests,
    now: SystemTime,
) -> Result<Pass, DriverError> {
    let Some(stored) = store.load().await? else {
        let mut ring = KeyRing::bootstrap(policy, now)?;
        let mut events = ring
            .keys
            .iter()
            .map(|k| KeyEvent::Created {
                kid: k.kid.clone(),
                state: k.state,
            })
            .collect::<Vec<_>>();
        events.extend(ring.advance(policy, now)?);
        store.create(&StoredKeys::managed(ring.clone())).await?;
        return Ok(Pass {
            ring,
            events,
            refused: Vec::new(),
            written: true,
        });
    };
    let StoredKeys {
        ring: original,
        requests: stored_requests,
        external,
    } = stored.value;
    if external {
        let refused = refusals(&asked, "the keys are managed externally: change them there");
        return Ok(Pass {
            ring: original,
            events: Vec::new(),
            refused,
            written: false,
        });
    }
    let mut ring = original.clone();
    let mut events = Vec::new();
    let mut refused = Vec::new();
    let revoke = asked.revoke.or(stored_requests.revoke.clone());
    if let Some(kid) = revoke {
        match ring.revoke(&kid, policy, now) {
            Ok(ev) => events.extend(ev),
            Err(e) => refused.push(format!("revoke {kid}: {e}")),
        }
    }
    if (asked.rotate || stored_requests.rotate)
        && let Err(e) = ring.request_rotation(policy, now)
    {
        refused.push(format!("rotate: {e}"));
    }
    events.extend(ring.advance(policy, now)?);
    if ring == original && stored_requests.is_empty() {
        return Ok(Pass {
            ring,
            events,
            refused,
            written: false,
        });
    }
    store
        .replace(&StoredKeys::managed(ring.clone()), &stored.version)
        .await?;
    Ok(Pass {
        ring,
        events,
        refused,
        written: true,
    })
}

fn refusals(asked: &KeyRequests, why: &str) -> Vec<String> {
    let mut out = Vec::new();
    if asked.rotate {
        out.push(format!("rotate: {why}"));
    }
    if let Some(kid) = &asked.revoke {
        out.push(format!("revoke {kid}: {why}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        SigningAlgorithm,
        keyring::{KeyState, KidStrategy},
        store::{Version, Versioned},
    };
    use std::{
        sync::Mutex,
        time::{Duration, UNIX_EPOCH},
    };

    /// A store in memory with a version counter, and a way to make the next write lose a race.
    #[derive(Default)]
    struct Memory {
        doc: Mutex<Option<(StoredKeys, u64)>>,
        writes: Mutex<u32>,
    }

    impl DocumentStore<StoredKeys> for Memory {
        async fn load(&self) -> Result<Option<Versioned<StoredKeys>>, StoreError> {
            Ok(self
                .doc
                .lock()
                .unwrap()
                .clone()
                .map(|(value, v)| Versioned {
                    value,
                    version: Version(v.to_string()),
                }))
        }
        async fn create(&self, value: &StoredKeys) -> Result<Version, StoreError> {
            let mut doc = self.doc.lock().unwrap();
            if doc.is_some() {
                return Err(StoreError::Conflict);
            }
            *doc = Some((value.clone(), 1));
            *self.writes.lock().unwrap() += 1;
            Ok(Version("1".into()))
        }
        async fn replace(
            &self,
            value: &StoredKeys,
            version: &Version,
        ) -> Result<Version, StoreError> {
            let mut doc = self.doc.lock().unwrap();
            match doc.as_mut() {
                Some((d, v)) if v.to_string() == version.0 => {
                    *d = value.clone();
                    *v += 1;
                    *self.writes.lock().unwrap() += 1;
                    Ok(Version(v.to_string()))
                }
                _ => Err(StoreError::Conflict),
            }
        }
    }

    fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlgorithm::EdDSA,
            rsa_bits: 2048,
            kid: KidStrategy::Thumbprint,
            rotation_period: Duration::from_secs(3600),
            verifier_cache: Duration::from_secs(120),
            clock_skew: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(600),
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The memory store never waits, so polling once completes every future here.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the memory store does not wait"),
        }
    }

    #[test]
    fn the_first_pass_creates_and_later_passes_write_only_on_change() {
        let store = Memory::default();
        let p = policy();
        let first = block_on(pass(&store, &p, KeyRequests::default(), at(0))).unwrap();
        assert!(first.written);
        assert_eq!(first.ring.keys.len(), 1);
        let again = block_on(pass(&store, &p, KeyRequests::default(), at(1))).unwrap();
        assert!(!again.written);
        assert_eq!(*store.writes.lock().unwrap(), 1);
        // Due for the next key: one write.
        let t = 3600 - 120;
        let next = block_on(pass(&store, &p, KeyRequests::default(), at(t))).unwrap();
        assert!(next.written);
        assert_eq!(next.ring.next().map(|k| k.state), Some(KeyState::Next));
    }

    #[test]
    fn a_stale_version_writes_nothing() {
        let store = Memory::default();
        let p = policy();
        block_on(pass(&store, &p, KeyRequests::default(), at(0))).unwrap();
        // Another writer moves the version on after our read: simulate by bumping it.
        let stale = block_on(store.load()).unwrap().unwrap();
        store.doc.lock().unwrap().as_mut().unwrap().1 += 1;
        let err = block_on(store.replace(&stale.value, &stale.version)).unwrap_err();
        assert_eq!(err, StoreError::Conflict);
    }

    #[test]
    fn a_stored_revoke_promotes_at_once_and_is_cleared() {
        let store = Memory::default();
        let p = policy();
        let first = block_on(pass(&store, &p, KeyRequests::default(), at(0))).unwrap();
        let old = first.ring.active().unwrap().kid.clone();
        store
            .doc
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .0
            .requests
            .revoke = Some(old.clone());
        let after = block_on(pass(&store, &p, KeyRequests::default(), at(5))).unwrap();
        assert!(after.written);
        assert_ne!(after.ring.active().unwrap().kid, old);
        assert!(after.events.contains(&KeyEvent::Revoked { kid: old }));
        let stored = block_on(store.load()).unwrap().unwrap().value;
        assert!(
            stored.requests.is_empty(),
            "the request is cleared once done"
        );
    }

    #[test]
    fn externally_managed_keys_are_never_written() {
        let store = Memory::default();
        let p = policy();
        let ring = KeyRing::bootstrap(&p, at(0)).unwrap();
        *store.doc.lock().unwrap() = Some((
            StoredKeys {
                ring: ring.clone(),
                requests: KeyRequests::default(),
                external: true,
            },
            7,
        ));
        let asked = KeyRequests {
            rotate: true,
            revoke: None,
        };
        // Even long past its rotation period.
        let out = block_on(pass(&store, &p, asked, at(10 * 3600))).unwrap();
        assert!(!out.written);
        assert_eq!(out.ring, ring);
        assert_eq!(out.refused.len(), 1);
        assert_eq!(*store.writes.lock().unwrap(), 0);
    }

    #[test]
    fn a_refused_request_is_reported_and_still_cleared() {
        let store = Memory::default();
        let mut p = policy();
        p.kid = KidStrategy::Static("k".into());
        block_on(pass(&store, &p, KeyRequests::default(), at(0))).unwrap();
        store
            .doc
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .0
            .requests
            .rotate = true;
        let out = block_on(pass(&store, &p, KeyRequests::default(), at(1))).unwrap();
        assert_eq!(out.refused.len(), 1, "{:?}", out.refused);
        assert!(out.written);
        assert!(
            block_on(store.load())
                .unwrap()
                .unwrap()
                .value
                .requests
                .is_empty()
        );
    }
}
