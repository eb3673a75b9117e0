//! A collection of documents in a cluster, one ConfigMap per id in Latchkey's own namespace,
//! as a [`CollectionStore`] (the authorization grants: `lkgrant-<id>`). A create fails when
//! the name exists and a replace names the resourceVersion read, so of two replicas that race
//! on one grant only one write lands. The documents hold no usable secret (only SHA-256 of
//! code and refresh secrets), so a ConfigMap, not a Secret, keeps them: the RBAC to manage
//! them grants nothing on the namespace's Secrets (the signing keys).
//!
//! Cost: one object per sign-in, written twice per login (code issued, code redeemed) and once
//! per refresh; 10,000 users signed in are 10,000 ConfigMaps of about 1 KiB (~10 MiB in etcd).
//! The sweep deletes expired ones (codes never redeemed after 60 s, families at the end of
//! their refresh lifetime), each delete conditional on the resourceVersion it listed.

use std::marker::PhantomData;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions},
};
use latchkey_core::{
    authorization_grant::{CollectionStore, Expiring},
    store::{StoreError, Version, Versioned},
};
use serde::{Serialize, de::DeserializeOwned};

/// The key of the document in the ConfigMap's data.
pub const DOCUMENT_KEY: &str = "document.json";
/// Label on every collection ConfigMap, naming the collection.
pub const COLLECTION_LABEL: &str = "latchkey.dev/collection";
/// Annotation with the document's expiry (Unix seconds), for people reading the object.
pub const EXPIRES_ANNOTATION: &str = "latchkey.dev/expires-at";

/// Documents of type `T` in `namespace`, named `<prefix><id>` and labelled with `collection`.
pub struct CollectionConfigMaps<T> {
    api: Api<ConfigMap>,
    prefix: &'static str,
    collection: &'static str,
    _doc: PhantomData<fn() -> T>,
}

fn unavailable(e: kube::Error) -> StoreError {
    StoreError::Unavailable(format!("Kubernetes API: {e}"))
}

fn conflict_or(e: kube::Error) -> StoreError {
    match &e {
        kube::Error::Api(s) if s.code == 409 || s.code == 404 => StoreError::Conflict,
        _ => unavailable(e),
    }
}

/// Ids become object names: lowercase letters, digits and '-' only.
fn checked(id: &str) -> Result<&str, StoreError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(StoreError::Invalid("not a document id".into()))
    }
}

impl<T> CollectionConfigMaps<T>
where
    T: Serialize + DeserializeOwned + Expiring + Send + Sync,
{
    pub fn new(
        client: Client,
        namespace: &str,
        prefix: &'static str,
        collection: &'static str,
    ) -> Self {
        CollectionConfigMaps {
            api: Api::namespaced(client, namespace),
            prefix,
            collection,
            _doc: PhantomData,
        }
    }

    /// The authorization grants' collection.
    pub fn grants(client: Client, namespace: &str) -> Self {
        Self::new(client, namespace, "lkgrant-", "authorization-grants")
    }

    fn name(&self, id: &str) -> Result<String, StoreError> {
        Ok(format!("{}{}", self.prefix, checked(id)?))
    }

    fn object(
        &self,
        name: String,
        value: &T,
        version: Option<&Version>,
    ) -> Result<ConfigMap, StoreError> {
        let json = serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name),
                resource_version: version.map(|v| v.0.clone()),
                labels: Some(
                    [
                        (
                            "app.kubernetes.io/managed-by".to_owned(),
                            "latchkey".to_owned(),
                        ),
                        (COLLECTION_LABEL.to_owned(), self.collection.to_owned()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [(
                        EXPIRES_ANNOTATION.to_owned(),
                        value.expires_at().to_string(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            data: Some([(DOCUMENT_KEY.to_owned(), json)].into()),
            ..ConfigMap::default()
        })
    }

    fn parse(&self, cm: &ConfigMap) -> Result<T, StoreError> {
        let name = cm.metadata.name.as_deref().unwrap_or_default();
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(DOCUMENT_KEY))
            .ok_or_else(|| {
                StoreError::Invalid(format!("ConfigMap {name} has no {DOCUMENT_KEY}"))
            })?;
        serde_json::from_str(text)
            .map_err(|e| StoreError::Invalid(format!("ConfigMap {name}: {e}")))
    }
}

fn version_of(cm: &ConfigMap) -> Result<Version, StoreError> {
    cm.metadata
        .resource_version
        .clone()
        .map(Version)
        .ok_or_else(|| StoreError::Invalid("a ConfigMap without resourceVersion".into()))
}

impl<T> CollectionStore<T> for CollectionConfigMaps<T>
where
    T: Serialize + DeserializeOwned + Expiring + Send + Sync,
{
    async fn load(&self, id: &str) -> Result<Option<Versioned<T>>, StoreError> {
        let name = self.name(id)?;
        let Some(cm) = self.api.get_opt(&name).await.map_err(unavailable)? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: self.parse(&cm)?,
            version: version_of(&cm)?,
        }))
    }

    async fn create(&self, id: &str, value: &T) -> Result<Version, StoreError> {
        let cm = self.object(self.name(id)?, value, None)?;
        let made = self
            .api
            .create(&PostParams::default(), &cm)
            .await
            .map_err(conflict_or)?;
        version_of(&made)
    }

    async fn replace(&self, id: &str, value: &T, version: &Version) -> Result<Version, StoreError> {
        let name = self.name(id)?;
        let cm = self.object(name.clone(), value, Some(version))?;
        let written = self
            .api
            .replace(&name, &PostParams::default(), &cm)
            .await
            .map_err(conflict_or)?;
        version_of(&written)
    }

    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut params = ListParams::default()
            .labels(&format!("{COLLECTION_LABEL}={}", self.collection))
            .limit(500);
        loop {
            let page = self.api.list(&params).await.map_err(unavailable)?;
            for cm in &page.items {
                let expired = self.parse(cm).is_ok_and(|d| d.expires_at() <= now);
                let (Some(name), true) = (cm.metadata.name.as_deref(), expired) else {
                    continue;
                };
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: cm.metadata.resource_version.clone(),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.api.delete(name, &dp).await {
                    Ok(_) => removed += 1,
                    // Changed since listed (a refresh extended it) or already gone.
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_object_name_safe() {
        assert!(checked("0123abcdef").is_ok());
        for bad in ["", "A", "a_b", "a.b", "../x", &"a".repeat(201)] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
    }
}
