//! The signing keys in a Kubernetes Secret: one `keyring.json` entry holding every key and its
//! state. Every replica watches it; only the Lease holder writes it, always with a
//! resourceVersion precondition (create, or replace of exactly the version it read), so a
//! stale writer cannot overwrite a newer key set.
//!
//! Requests from `latchkey keys rotate|revoke` arrive as annotations that the key driver
//! carries out and removes. A Secret annotated as externally managed (cert-manager, a vault
//! operator) is read, never written: `keyring.json`, or a `tls.key` (+ `tls.crt`) pair.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Resource, ResourceExt,
    api::PostParams,
    runtime::{
        WatchStreamExt,
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};
use latchkey_api::resolve::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use latchkey_core::{
    CoreError, KeyMaterial,
    key_driver::{KeyRequests, Pass, StoredKeys},
    keyring::{KeyEvent, KeyRing, KidStrategy, kid_for},
    store::{DocumentStore, StoreError, Version, Versioned},
};
use tokio::sync::watch;

use crate::{key_driver::KeyHome, observe::Observer};

/// The data key of the key ring document.
pub const KEYRING_KEY: &str = "keyring.json";
/// Annotation asking the leader to start a rotation (any value).
pub const ROTATE_ANNOTATION: &str = "latchkey.dev/rotate";
/// Annotation asking the leader to revoke the key with this kid.
pub const REVOKE_ANNOTATION: &str = "latchkey.dev/revoke";
/// Annotation (`"true"`) marking a keys Secret that Latchkey must never write.
pub const EXTERNAL_ANNOTATION: &str = "latchkey.dev/externally-managed";

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

/// Whether Latchkey must leave this Secret alone.
pub fn is_external(secret: &Secret) -> bool {
    secret
        .annotations()
        .get(EXTERNAL_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The key ring a Secret holds. An external `tls.key` becomes a one-key ring whose kid
/// follows `kid` (its thumbprint, or the static id).
pub fn read(secret: &Secret, kid: &KidStrategy) -> Result<KeyRing, CoreError> {
    if let Some(bytes) = data(secret, KEYRING_KEY) {
        return KeyRing::from_json(bytes);
    }
    if is_external(secret)
        && let Some(key) = data(secret, "tls.key")
    {
        let text = std::str::from_utf8(key)
            .map_err(|_| CoreError::Key("tls.key is not PEM text".into()))?;
        let material = KeyMaterial::from_any_pem(text)?;
        let kid = kid_for(&material, kid)?;
        let created = secret.metadata.creation_timestamp.as_ref().map_or(
            std::time::SystemTime::UNIX_EPOCH,
            |t| {
                std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(t.0.as_second().max(0) as u64)
            },
        );
        let mut ring = KeyRing::import(&kid, &material, created)?;
        if let Some(cert) = data(secret, "tls.crt").and_then(|c| std::str::from_utf8(c).ok()) {
            ring.keys[0].certificate_pem = Some(cert.to_owned());
        }
        return Ok(ring);
    }
    Err(CoreError::KeySet(format!(
        "the Secret has no {KEYRING_KEY:?} key"
    )))
}

/// The requests pending on a keys Secret.
pub fn requests(secret: &Secret) -> KeyRequests {
    let a = secret.annotations();
    KeyRequests {
        rotate: a.contains_key(ROTATE_ANNOTATION),
        revoke: a.get(REVOKE_ANNOTATION).cloned(),
    }
}

/// A Secret holding `ring`, with the given annotations; `resource_version` makes a replace
/// conditional on exactly that version.
pub fn secret(
    name: &str,
    namespace: &str,
    ring: &KeyRing,
    annotations: BTreeMap<String, String>,
    resource_version: Option<String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY_VALUE.to_owned(),
            )])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            resource_version,
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEYRING_KEY.to_owned(),
            ByteString(ring.to_json()),
        )])),
        ..Secret::default()
    }
}

/// Replace the keys Secret, but only if it is still at `resource_version`: a writer that
/// read an older version gets a 409 Conflict and writes nothing.
pub async fn replace(
    api: &Api<Secret>,
    name: &str,
    ring: &KeyRing,
    annotations: BTreeMap<String, String>,
    resource_version: String,
) -> Result<Secret, kube::Error> {
    let namespace = api.namespace().unwrap_or_default().to_owned();
    let new = secret(name, &namespace, ring, annotations, Some(resource_version));
    api.replace(name, &PostParams::default(), &new).await
}

/// Where the keys Secret stands, as this replica last saw it.
#[derive(Debug, Clone)]
pub enum Seen {
    /// Not listed yet: nothing may be concluded (in particular, not that it is missing).
    Unknown,
    Absent,
    Present(Arc<Secret>),
}

/// The keys Secret as a [`DocumentStore`]: reads come from the watch (no API call), writes go
/// to the API server with a resourceVersion precondition.
#[derive(Clone)]
pub struct SecretKeyStore {
    api: Api<Secret>,
    name: String,
    kid: KidStrategy,
    seen: watch::Receiver<Seen>,
    recorder: Recorder,
}

impl SecretKeyStore {
    /// Watch the keys Secret (a field selector on its name, so RBAC can limit list and watch
    /// to it) and serve it as a store. The returned future runs the watch until dropped.
    pub fn watch(
        api: Api<Secret>,
        name: &str,
        kid: KidStrategy,
        reporter: Reporter,
        observer: Arc<dyn Observer>,
    ) -> (SecretKeyStore, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(Seen::Unknown);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher::watcher(api.clone(), config).backoff(crate::backoff::watch_backoff());
        let task = follow(stream, tx, observer);
        (SecretKeyStore::new(api, name, kid, reporter, rx), task)
    }

    /// A store over a Secret whose state someone else follows (the watch above, or a test).
    pub fn new(
        api: Api<Secret>,
        name: &str,
        kid: KidStrategy,
        reporter: Reporter,
        seen: watch::Receiver<Seen>,
    ) -> SecretKeyStore {
        let recorder = Recorder::new(api.clone().into(), reporter);
        SecretKeyStore {
            api,
            name: name.to_owned(),
            kid,
            seen,
            recorder,
        }
    }

    fn namespace(&self) -> String {
        self.api.namespace().unwrap_or_default().to_owned()
    }

    fn seen_secret(&self) -> Option<Arc<Secret>> {
        match &*self.seen.borrow() {
            Seen::Present(s) => Some(s.clone()),
            _ => None,
        }
    }
}

async fn follow(
    stream: impl futures::Stream<Item = Result<watcher::Event<Secret>, watcher::Error>> + Send,
    state: watch::Sender<Seen>,
    observer: Arc<dyn Observer>,
) {
    let mut stream = std::pin::pin!(stream);
    let mut seen_in_relist = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(ev) => {
                observer.api_contact();
                match ev {
                    watcher::Event::Init => seen_in_relist = false,
                    watcher::Event::InitApply(s) | watcher::Event::Apply(s) => {
                        seen_in_relist = true;
                        state.send_replace(Seen::Present(Arc::new(s)));
                    }
                    watcher::Event::InitDone => {
                        if !seen_in_relist {
                            state.send_replace(Seen::Absent);
                        }
                    }
                    watcher::Event::Delete(_) => {
                        tracing::warn!(
                            "signing keys Secret deleted; signing on with the keys in memory until it is written again"
                        );
                        state.send_replace(Seen::Absent);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the signing keys failed; retrying"),
        }
    }
}

fn conflict_or(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Conflict,
        other => StoreError::Unavailable(format!("Kubernetes API: {other}")),
    }
}

impl DocumentStore<StoredKeys> for SecretKeyStore {
    async fn load(&self) -> Result<Option<Versioned<StoredKeys>>, StoreError> {
        let seen = self.seen.borrow().clone();
        let secret = match seen {
            Seen::Unknown => return Err(StoreError::NotYetKnown),
            Seen::Absent => return Ok(None),
            Seen::Present(s) => s,
        };
        let ring = read(&secret, &self.kid).map_err(|e| {
            StoreError::Invalid(format!("Secret {}/{}: {e}", self.namespace(), self.name))
        })?;
        Ok(Some(Versioned {
            value: StoredKeys {
                ring,
                requests: requests(&secret),
                external: is_external(&secret),
            },
            version: Version(secret.resource_version().unwrap_or_default()),
        }))
    }

    async fn create(&self, value: &StoredKeys) -> Result<Version, StoreError> {
        let new = secret(
            &self.name,
            &self.namespace(),
            &value.ring,
            BTreeMap::new(),
            None,
        );
        let created = self
            .api
            .create(&PostParams::default(), &new)
            .await
            .map_err(conflict_or)?;
        Ok(Version(created.resource_version().unwrap_or_default()))
    }

    async fn replace(&self, value: &StoredKeys, version: &Version) -> Result<Version, StoreError> {
        // Keep the annotations of the version read, less the requests now carried out.
        let mut annotations = match self.seen_secret() {
            Some(s) if s.resource_version().as_deref() == Some(version.0.as_str()) => {
                s.annotations().clone()
            }
            _ => return Err(StoreError::Conflict),
        };
        annotations.remove(ROTATE_ANNOTATION);
        annotations.remove(REVOKE_ANNOTATION);
        if value.requests.rotate {
            annotations.insert(ROTATE_ANNOTATION.into(), "pending".into());
        }
        if let Some(kid) = &value.requests.revoke {
            annotations.insert(REVOKE_ANNOTATION.into(), kid.clone());
        }
        let written = replace(
            &self.api,
            &self.name,
            &value.ring,
            annotations,
            version.0.clone(),
        )
        .await
        .map_err(conflict_or)?;
        Ok(Version(written.resource_version().unwrap_or_default()))
    }
}

/// The Event an operator sees for a key change: Normal for the routine lifecycle, Warning for
/// a revocation (verifiers that cache the JWKS reject the new key's tokens until they refetch).
pub fn describe(ev: &KeyEvent) -> (EventType, &'static str, String) {
    match ev {
        KeyEvent::Created { kid, state } => (
            EventType::Normal,
            "KeyCreated",
            format!("key {kid} created as {}", state.as_str()),
        ),
        KeyEvent::Activated { kid } => (
            EventType::Normal,
            "KeyActivated",
            format!("key {kid} signs from now"),
        ),
        KeyEvent::Retired { kid } => (
            EventType::Normal,
            "KeyRetired",
            format!("key {kid} no longer signs; still published"),
        ),
        KeyEvent::Removed { kid } => (
            EventType::Normal,
            "KeyRemoved",
            format!("key {kid} is no longer published"),
        ),
        KeyEvent::Revoked { kid } => (
            EventType::Warning,
            "KeyRevoked",
            latchkey_core::keyring::revocation_note(kid),
        ),
    }
}

impl KeyHome for SecretKeyStore {
    async fn changed(&mut self) {
        if self.seen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn report(&self, pass: &Pass) {
        let Some(secret) = self.seen_secret() else {
            return;
        };
        let reference = secret.object_ref(&());
        let notes = pass.events.iter().map(describe).chain(
            pass.refused
                .iter()
                .map(|note| (EventType::Warning, "KeyRequestRefused", note.clone())),
        );
        for (type_, reason, note) in notes {
            match type_ {
                EventType::Warning => tracing::warn!(reason, note = %note, "signing keys"),
                EventType::Normal => tracing::info!(reason, note = %note, "signing keys"),
            }
            let event = Event {
                type_,
                reason: reason.into(),
                note: Some(note),
                action: "RotateKeys".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "event not recorded");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::{SigningAlgorithm, keyring::RotationPolicy};
    use std::time::Duration;

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

    #[test]
    fn a_ring_survives_the_secret() {
        let ring = KeyRing::bootstrap(&policy(), std::time::SystemTime::UNIX_EPOCH).unwrap();
        let s = secret("keys", "ns", &ring, BTreeMap::new(), Some("7".into()));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(read(&s, &KidStrategy::Thumbprint).unwrap(), ring);
        assert!(read(&Secret::default(), &KidStrategy::Thumbprint).is_err());
    }

    #[test]
    fn an_external_tls_secret_is_one_key() {
        let m = KeyMaterial::generate(SigningAlgorithm::ES256, 2048).unwrap();
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([(
            EXTERNAL_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        s.data = Some(BTreeMap::from([(
            "tls.key".to_owned(),
            ByteString(m.to_pem().into_bytes()),
        )]));
        assert!(is_external(&s));
        let ring = read(&s, &KidStrategy::Static("pinned".into())).unwrap();
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.keys[0].kid, "pinned");
        assert_eq!(
            ring.key_set().unwrap().active().alg(),
            SigningAlgorithm::ES256
        );
        // Without the annotation, a tls.key is not read as keys.
        s.metadata.annotations = None;
        assert!(read(&s, &KidStrategy::Thumbprint).is_err());
    }

    #[test]
    fn requests_come_from_annotations() {
        let mut s = Secret::default();
        assert!(requests(&s).is_empty());
        s.metadata.annotations = Some(BTreeMap::from([
            (ROTATE_ANNOTATION.to_owned(), "1".to_owned()),
            (REVOKE_ANNOTATION.to_owned(), "kid-1".to_owned()),
        ]));
        assert_eq!(
            requests(&s),
            KeyRequests {
                rotate: true,
                revoke: Some("kid-1".into())
            }
        );
    }

    #[test]
    fn only_a_revocation_warns() {
        assert_eq!(
            describe(&KeyEvent::Revoked { kid: "k".into() }).0,
            EventType::Warning
        );
        assert_eq!(
            describe(&KeyEvent::Activated { kid: "k".into() }).0,
            EventType::Normal
        );
    }
}
