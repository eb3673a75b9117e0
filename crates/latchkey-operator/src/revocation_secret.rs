//! Issue 13: the revocation list in a Kubernetes Secret (`revocations.json`), one per
//! deployment in Latchkey's namespace. A Secret rather than a ConfigMap: Latchkey's Role
//! already names the Secrets it owns there (`resourceNames`), so this adds one name and no new
//! kind of access, and token ids stay with the other credentials-like state. Any replica
//! writes it (a revocation arrives at whichever replica the client reached), always as a
//! create or a replace at the resourceVersion read, retried on Conflict by the one rule
//! ([`latchkey_core::revocation::record`]); every replica watches it and swaps the list its
//! introspection reads, so a revocation reaches all of them within a watch event.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, ResourceExt,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};
use latchkey_api::resolve::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use latchkey_core::{
    introspection::Introspector,
    revocation::Revocations,
    store::{DocumentStore, StoreError, Version, Versioned},
};

/// The data key of the list.
pub const REVOCATIONS_KEY: &str = "revocations.json";

/// The revocation list Secret, read directly (only a revocation reads it: never on the token
/// path).
#[derive(Clone)]
pub struct SecretRevocationStore {
    api: Api<Secret>,
    name: String,
}

fn conflict_or(e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(s) if s.code == 409 => StoreError::Conflict,
        other => StoreError::Unavailable(format!("Kubernetes API: {other}")),
    }
}

/// The list a Secret holds (none yet: empty).
pub fn read(secret: &Secret) -> Result<Revocations, String> {
    match secret.data.as_ref().and_then(|d| d.get(REVOCATIONS_KEY)) {
        None => Ok(Revocations::default()),
        Some(b) => Revocations::from_json(&b.0).map_err(|e| e.to_string()),
    }
}

impl SecretRevocationStore {
    pub fn new(api: Api<Secret>, name: &str) -> SecretRevocationStore {
        SecretRevocationStore {
            api,
            name: name.to_owned(),
        }
    }

    fn secret(&self, list: &Revocations, version: Option<&Version>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: version.map(|v| v.0.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_owned(),
                    MANAGED_BY_VALUE.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                REVOCATIONS_KEY.to_owned(),
                ByteString(list.to_json()),
            )])),
            ..Secret::default()
        }
    }

    /// Follow the Secret (a field selector on its name, so RBAC can limit list and watch to
    /// it) and swap each version's list into `introspector`. Runs until dropped.
    pub async fn follow(self, introspector: Arc<Introspector>) {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let stream =
            watcher::watcher(self.api.clone(), config).backoff(crate::backoff::watch_backoff());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitApply(s) | watcher::Event::Apply(s)) => match read(&s) {
                    Ok(list) => introspector.replace_revocations(list),
                    Err(e) => {
                        tracing::warn!(secret = %s.name_any(), error = %e, "unreadable revocation list; keeping the last one")
                    }
                },
                Ok(watcher::Event::Delete(_)) => {
                    introspector.replace_revocations(Revocations::default())
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "watching the revocation list failed; retrying")
                }
            }
        }
    }
}

impl DocumentStore<Revocations> for SecretRevocationStore {
    async fn load(&self) -> Result<Option<Versioned<Revocations>>, StoreError> {
        let Some(secret) = self.api.get_opt(&self.name).await.map_err(conflict_or)? else {
            return Ok(None);
        };
        let value = read(&secret).map_err(StoreError::Invalid)?;
        Ok(Some(Versioned {
            value,
            version: Version(secret.resource_version().unwrap_or_default()),
        }))
    }

    async fn create(&self, value: &Revocations) -> Result<Version, StoreError> {
        let created = self
            .api
            .create(&PostParams::default(), &self.secret(value, None))
            .await
            .map_err(conflict_or)?;
        Ok(Version(created.resource_version().unwrap_or_default()))
    }

    async fn replace(&self, value: &Revocations, version: &Version) -> Result<Version, StoreError> {
        let written = self
            .api
            .replace(
                &self.name,
                &PostParams::default(),
                &self.secret(value, Some(version)),
            )
            .await
            .map_err(conflict_or)?;
        Ok(Version(written.resource_version().unwrap_or_default()))
    }
}
