//! The session-cookie keys in a cluster: one Secret in Latchkey's namespace (`keys.json`),
//! created once and replaced only at the resourceVersion read, as a [`DocumentStore`] for the
//! one driver pass. The chart's Role names it, so the rights reach no other Secret.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use latchkey_core::{
    session_keys::SessionKeys,
    store::{DocumentStore, StoreError, Version, Versioned},
};

/// The Secret's name.
pub const SECRET_NAME: &str = "latchkey-session-keys";
/// Its one data key.
pub const DATA_KEY: &str = "keys.json";

pub struct SessionKeySecret {
    api: Api<Secret>,
}

impl SessionKeySecret {
    pub fn new(client: Client, namespace: &str) -> SessionKeySecret {
        SessionKeySecret {
            api: Api::namespaced(client, namespace),
        }
    }

    fn object(keys: &SessionKeys, version: Option<&Version>) -> Result<Secret, StoreError> {
        let json = serde_json::to_vec(keys).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Secret {
            metadata: ObjectMeta {
                name: Some(SECRET_NAME.to_owned()),
                resource_version: version.map(|v| v.0.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "latchkey".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_owned(), ByteString(json))])),
            ..Secret::default()
        })
    }
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

fn version_of(s: &Secret) -> Result<Version, StoreError> {
    s.metadata
        .resource_version
        .clone()
        .map(Version)
        .ok_or_else(|| StoreError::Invalid("a Secret without resourceVersion".into()))
}

impl DocumentStore<SessionKeys> for SessionKeySecret {
    async fn load(&self) -> Result<Option<Versioned<SessionKeys>>, StoreError> {
        let Some(secret) = self.api.get_opt(SECRET_NAME).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DATA_KEY))
            .ok_or_else(|| {
                StoreError::Invalid(format!("Secret {SECRET_NAME} has no {DATA_KEY}"))
            })?;
        let value = serde_json::from_slice(&bytes.0)
            .map_err(|e| StoreError::Invalid(format!("Secret {SECRET_NAME}: {e}")))?;
        Ok(Some(Versioned {
            value,
            version: version_of(&secret)?,
        }))
    }

    async fn create(&self, value: &SessionKeys) -> Result<Version, StoreError> {
        let made = self
            .api
            .create(&PostParams::default(), &Self::object(value, None)?)
            .await
            .map_err(conflict_or)?;
        version_of(&made)
    }

    async fn replace(&self, value: &SessionKeys, version: &Version) -> Result<Version, StoreError> {
        let written = self
            .api
            .replace(
                SECRET_NAME,
                &PostParams::default(),
                &Self::object(value, Some(version))?,
            )
            .await
            .map_err(conflict_or)?;
        version_of(&written)
    }
}
