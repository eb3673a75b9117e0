//! Issue 13: registered clients in a cluster: each registration is an `OAuthClient` named
//! `dcr-<client_id>` in the registration namespace, labelled `latchkey.dev/registered`, with
//! its credentials Secret (written here, since the answer carries the secret; owned by the
//! OAuthClient, so deleting it removes both). The resource is the truth: reads come from the
//! API server, so a `kubectl edit` shows in the management API, and the token endpoint follows
//! it through the watch like any OAuthClient.
//!
//! Any replica may register (the writes are plain creates and replaces at a resourceVersion);
//! each answers once its own registry, fed by its watch, serves the result.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Resource,
    api::{DeleteParams, PostParams},
};
use latchkey_api::{
    OAuthClient,
    registration::{self, RegistrationPolicy},
};
use latchkey_core::{
    Issuer,
    registration_token::{random_credential, token_digest, token_matches},
};
use latchkey_server::register::{Registrar, RegistrarError, RegistrarFuture};
use serde_json::{Map, Value};

use crate::registration_resource::{
    ISSUED_AT_ANNOTATION, REGISTERED_LABEL, Stored, TOKEN_DIGEST_ANNOTATION, annotation, build,
    members, metadata_error, name_of, unavailable, update_members,
};

/// How long a registration waits for this replica's watch to bring the change.
const SERVE_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ClusterRegistrar {
    pub clients: Api<OAuthClient>,
    pub secrets: Api<Secret>,
    pub namespace: String,
    pub policy: RegistrationPolicy,
    pub issuer: Arc<Issuer>,
}

fn api_error(e: kube::Error) -> RegistrarError {
    unavailable(e)
}

impl ClusterRegistrar {
    /// The registration `client_id` as the API server has it, if `token` is its registration
    /// access token.
    async fn authorized(&self, client_id: &str, token: &str) -> Result<Stored, RegistrarError> {
        if uuid::Uuid::parse_str(client_id).is_err() {
            return Err(RegistrarError::InvalidToken);
        }
        let client = self
            .clients
            .get_opt(&name_of(client_id))
            .await
            .map_err(api_error)?
            .ok_or(RegistrarError::InvalidToken)?;
        let registered = client
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(REGISTERED_LABEL));
        let digest = annotation(&client, TOKEN_DIGEST_ANNOTATION).unwrap_or_default();
        if !registered || !token_matches(token, digest) {
            return Err(RegistrarError::InvalidToken);
        }
        let secret_name = client
            .spec
            .secret_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let secret = self
            .secrets
            .get_opt(&secret_name)
            .await
            .map_err(api_error)?
            .unwrap_or_default();
        Ok(Stored { client, secret })
    }

    /// Wait until this replica's registry says `done`.
    async fn served(&self, done: impl Fn(&latchkey_core::Registry) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < SERVE_TIMEOUT {
            if done(&self.issuer.registry()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn serves(registry: &latchkey_core::Registry, id: &str, secret: &str) -> bool {
        registry
            .authenticate(id, secret.as_bytes(), SystemTime::now())
            .is_ok()
    }

    fn not_served() -> RegistrarError {
        RegistrarError::Unavailable(
            "the registration was written but this replica's watch has not brought it yet".into(),
        )
    }
}

/// The Secret of `stored`, owned by its OAuthClient.
fn owned_secret(stored: &Stored, owner: &OAuthClient) -> Secret {
    let mut secret = stored.secret.clone();
    if let (Some(name), Some(uid)) = (&owner.metadata.name, &owner.metadata.uid) {
        secret.metadata.owner_references = Some(vec![OwnerReference {
            api_version: OAuthClient::api_version(&()).into_owned(),
            kind: OAuthClient::kind(&()).into_owned(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
    }
    secret
}

impl Registrar for ClusterRegistrar {
    fn create<'a>(
        &'a self,
        body: &'a [u8],
        now: SystemTime,
    ) -> RegistrarFuture<'a, Map<String, Value>> {
        Box::pin(async move {
            let metadata = registration::parse(body, &self.policy).map_err(metadata_error)?;
            let client_id = uuid::Uuid::new_v4().to_string();
            let secret = random_credential().map_err(unavailable)?;
            let token = random_credential().map_err(unavailable)?;
            let issued_at = latchkey_core::token::unix_seconds(now);
            let stored = build(
                &self.namespace,
                &client_id,
                &metadata,
                &secret,
                &token_digest(&token),
                issued_at,
                None,
            );
            let pp = PostParams::default();
            let created = self
                .clients
                .create(&pp, &stored.client)
                .await
                .map_err(api_error)?;
            let written = self
                .secrets
                .create(&pp, &owned_secret(&stored, &created))
                .await;
            let name = name_of(&client_id);
            if let Err(e) = written {
                let _ = self.clients.delete(&name, &DeleteParams::default()).await;
                return Err(api_error(e));
            }
            if !self.served(|r| Self::serves(r, &client_id, &secret)).await {
                let _ = self.clients.delete(&name, &DeleteParams::default()).await;
                return Err(Self::not_served());
            }
            tracing::info!(client_id = %client_id, namespace = %self.namespace, "client registered");
            let mut out = members(&stored);
            out.insert("registration_access_token".into(), token.into());
            Ok(out)
        })
    }

    fn read<'a>(
        &'a self,
        client_id: &'a str,
        token: &'a str,
    ) -> RegistrarFuture<'a, Map<String, Value>> {
        Box::pin(async move { Ok(members(&self.authorized(client_id, token).await?)) })
    }

    fn update<'a>(
        &'a self,
        client_id: &'a str,
        token: &'a str,
        body: &'a [u8],
    ) -> RegistrarFuture<'a, Map<String, Value>> {
        Box::pin(async move {
            let stored = self.authorized(client_id, token).await?;
            let current = members(&stored);
            let current_secret = current.get("client_secret").and_then(Value::as_str);
            let (metadata, keep) = update_members(body, client_id, current_secret)?;
            let metadata = registration::check(&metadata, &self.policy).map_err(metadata_error)?;
            let secret = match (keep, current_secret) {
                (true, Some(s)) => s.to_owned(),
                _ => random_credential().map_err(unavailable)?,
            };
            let digest = annotation(&stored.client, TOKEN_DIGEST_ANNOTATION)
                .unwrap_or_default()
                .to_owned();
            let issued_at = annotation(&stored.client, ISSUED_AT_ANNOTATION)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let mut updated = build(
                &self.namespace,
                client_id,
                &metadata,
                &secret,
                &digest,
                issued_at,
                Some(&stored.client),
            );
            // Replaced at the resourceVersion read: an edit made meanwhile is not overwritten.
            updated.client.metadata.resource_version =
                stored.client.metadata.resource_version.clone();
            let pp = PostParams::default();
            let name = name_of(client_id);
            let replaced = self
                .clients
                .replace(&name, &pp, &updated.client)
                .await
                .map_err(api_error)?;
            if !keep {
                let mut new_secret = stored.secret.clone();
                let key = updated
                    .client
                    .spec
                    .secret_ref
                    .as_ref()
                    .map(|r| r.key.clone())
                    .unwrap_or_default();
                let mut data = new_secret.data.take().unwrap_or_default();
                data.remove(&key);
                new_secret.data = Some(data);
                let mut string_data = new_secret.string_data.take().unwrap_or_default();
                string_data.insert(key, secret.clone());
                new_secret.string_data = Some(string_data);
                if new_secret.metadata.name.is_none() {
                    new_secret = owned_secret(&updated, &replaced);
                    self.secrets
                        .create(&pp, &new_secret)
                        .await
                        .map_err(api_error)?;
                } else {
                    let secret_name = new_secret.metadata.name.clone().unwrap_or_default();
                    self.secrets
                        .replace(&secret_name, &pp, &new_secret)
                        .await
                        .map_err(api_error)?;
                }
            }
            let scopes = metadata.scopes.clone();
            let ok = self
                .served(|r| {
                    Self::serves(r, client_id, &secret)
                        && r.get(client_id).is_some_and(|c| {
                            scopes
                                .iter()
                                .all(|s| s.contains('*') || c.scopes().allows(s))
                        })
                })
                .await;
            if !ok {
                return Err(Self::not_served());
            }
            tracing::info!(client_id = %client_id, rotated = !keep, "registration updated");
            Ok(members(&Stored {
                client: replaced,
                secret: updated.secret,
            }))
        })
    }

    fn delete<'a>(&'a self, client_id: &'a str, token: &'a str) -> RegistrarFuture<'a, ()> {
        Box::pin(async move {
            let stored = self.authorized(client_id, token).await?;
            let dp = DeleteParams::default();
            self.clients
                .delete(&name_of(client_id), &dp)
                .await
                .map_err(api_error)?;
            // The owner reference lets the garbage collector do this too; do not wait for it.
            if let Some(name) = &stored.secret.metadata.name {
                let _ = self.secrets.delete(name, &dp).await;
            }
            if !self.served(|r| r.get(client_id).is_none()).await {
                return Err(Self::not_served());
            }
            tracing::info!(client_id = %client_id, "registration deleted");
            Ok(())
        })
    }
}
