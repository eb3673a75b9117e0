//! Issue 13: registered clients standalone: one file per registration under
//! `STATE_DIR/registrations/`, an `OAuthClient` manifest (labelled `latchkey.dev/registered`)
//! and its `Secret`, in exactly the format of `--clients` files. The loader reads them with
//! the clients files, so a registration survives restarts and an edit of its file wins: the
//! management API reads the file back.
//!
//! Every write and the reload that follows it happen under one lock shared with the clients
//! reload, so an answer is sent once this process's registry serves what it says.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use latchkey_api::registration::{self, RegistrationPolicy};
use latchkey_core::{
    Issuer,
    registration_token::{random_credential, token_digest, token_matches},
};
use latchkey_server::{
    Metrics,
    register::{Registrar, RegistrarError, RegistrarFuture},
};
use serde::Deserialize as _;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::client_files::{self, LoadError, Snapshot};
use crate::{files, registration_resource::*, serving::unix_now};

/// The directory under the state directory.
pub const REGISTRATIONS_DIR: &str = "registrations";
/// The namespace registered clients are written in by default (files have no cluster).
pub const DEFAULT_NAMESPACE: &str = "default";
/// Largest registration file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The clients files and the registrations, read together (blocking).
pub fn read_all(clients: &Path, registrations: Option<&Path>) -> Result<Snapshot, LoadError> {
    let mut snapshot = client_files::read_snapshot(clients)?;
    if let Some(dir) = registrations {
        snapshot.append(client_files::read_snapshot(dir)?);
    }
    Ok(snapshot)
}

/// The registrations of a state directory, and what a change must reload.
pub struct RegistrationFiles {
    pub dir: PathBuf,
    pub clients: PathBuf,
    pub policy: RegistrationPolicy,
    pub issuer: Arc<Issuer>,
    pub metrics: Arc<Metrics>,
    /// Held across a write and the reload after it (shared with the clients reload).
    pub lock: Arc<Mutex<()>>,
    /// The namespace written in new registrations.
    pub namespace: String,
}

impl RegistrationFiles {
    fn path_of(&self, client_id: &str) -> PathBuf {
        self.dir.join(format!("{}.yaml", name_of(client_id)))
    }

    /// Reload the registry from the clients files and the registrations (caller holds the
    /// lock). A registration that breaks the load is this server's fault: reported, and the
    /// caller undoes its write.
    async fn reload(&self) -> Result<(), RegistrarError> {
        let (clients, dir) = (self.clients.clone(), self.dir.clone());
        let snapshot = tokio::task::spawn_blocking(move || read_all(&clients, Some(&dir)))
            .await
            .map_err(unavailable)?
            .map_err(|e| unavailable(load_error_text(&e)))?;
        let registry =
            client_files::load(&snapshot).map_err(|e| unavailable(load_error_text(&e)))?;
        self.metrics.observe_registry(&registry);
        self.metrics.observe_sync(unix_now());
        self.issuer.replace_registry(registry);
        Ok(())
    }

    /// Write (or, with `None`, remove) a registration's file and reload; on a failed reload
    /// the previous file content is put back.
    async fn commit(&self, client_id: &str, stored: Option<&Stored>) -> Result<(), RegistrarError> {
        let path = self.path_of(client_id);
        let before = read_file(&path).map_err(unavailable)?;
        match stored {
            Some(s) => write(&path, s)?,
            None => std::fs::remove_file(&path).map_err(unavailable)?,
        }
        if let Err(e) = self.reload().await {
            let restored = match &before {
                Some(bytes) => files::write_atomic(&path, bytes, true).map_err(unavailable),
                None => std::fs::remove_file(&path).map_err(unavailable),
            };
            if let Err(r) = restored {
                tracing::error!(error = ?r, "a failed registration write could not be undone");
            }
            let _ = self.reload().await;
            return Err(e);
        }
        Ok(())
    }

    /// The stored registration `client_id`, if `token` is its registration access token.
    fn authorized(&self, client_id: &str, token: &str) -> Result<Stored, RegistrarError> {
        if uuid::Uuid::parse_str(client_id).is_err() {
            return Err(RegistrarError::InvalidToken);
        }
        let bytes = read_file(&self.path_of(client_id))
            .map_err(unavailable)?
            .ok_or(RegistrarError::InvalidToken)?;
        let stored = parse(&bytes).map_err(unavailable)?;
        let digest = stored
            .client
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TOKEN_DIGEST_ANNOTATION))
            .ok_or(RegistrarError::InvalidToken)?;
        if !token_matches(token, digest) {
            return Err(RegistrarError::InvalidToken);
        }
        Ok(stored)
    }
}

fn load_error_text(e: &LoadError) -> String {
    e.0.iter()
        .map(|p| format!("{} (document {}): {}", p.file.display(), p.doc, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    latchkey_server::file_read::read_bounded(path, MAX_FILE_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, stored: &Stored) -> Result<(), RegistrarError> {
    let client = serde_norway::to_string(&stored.client).map_err(unavailable)?;
    let secret = serde_norway::to_string(&stored.secret).map_err(unavailable)?;
    let text = format!("{client}---\n{secret}");
    files::write_atomic(path, text.as_bytes(), true).map_err(unavailable)
}

/// The `OAuthClient` and `Secret` of a registration file.
fn parse(bytes: &[u8]) -> Result<Stored, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let (mut client, mut secret) = (None, None);
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = serde_norway::Value::deserialize(doc).map_err(|e| e.to_string())?;
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("OAuthClient") => {
                client = Some(serde_norway::from_value(value).map_err(|e| e.to_string())?)
            }
            Some("Secret") => {
                secret = Some(serde_norway::from_value(value).map_err(|e| e.to_string())?)
            }
            _ => {}
        }
    }
    match (client, secret) {
        (Some(client), Some(secret)) => Ok(Stored { client, secret }),
        _ => Err("a registration file needs an OAuthClient and a Secret".into()),
    }
}

impl Registrar for RegistrationFiles {
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
            let _guard = self.lock.lock().await;
            self.commit(&client_id, Some(&stored)).await?;
            tracing::info!(client_id = %client_id, "client registered");
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
        Box::pin(async move {
            let stored = self.authorized(client_id, token)?;
            Ok(members(&stored))
        })
    }

    fn update<'a>(
        &'a self,
        client_id: &'a str,
        token: &'a str,
        body: &'a [u8],
    ) -> RegistrarFuture<'a, Map<String, Value>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let stored = self.authorized(client_id, token)?;
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
            let updated = build(
                &self.namespace,
                client_id,
                &metadata,
                &secret,
                &digest,
                issued_at,
                Some(&stored.client),
            );
            self.commit(client_id, Some(&updated)).await?;
            tracing::info!(client_id = %client_id, rotated = !keep, "registration updated");
            Ok(members(&updated))
        })
    }

    fn delete<'a>(&'a self, client_id: &'a str, token: &'a str) -> RegistrarFuture<'a, ()> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            self.authorized(client_id, token)?;
            self.commit(client_id, None).await?;
            tracing::info!(client_id = %client_id, "registration deleted");
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use latchkey_api::{
        registration::{AuthMethod, ClientMetadata},
        types::GrantTypeName,
    };

    #[test]
    fn a_registration_file_round_trips_and_keeps_admin_edits_on_update() {
        let metadata = ClientMetadata {
            client_name: Some("Orders".into()),
            scopes: vec!["orders:read".into()],
            grant_types: vec![GrantTypeName::ClientCredentials],
            token_endpoint_auth_method: AuthMethod::ClientSecretPost,
        };
        let id = "2b0a1c4e-5d6f-4a8b-9c0d-1e2f3a4b5c6d";
        let stored = build(
            "default",
            id,
            &metadata,
            "s3cret",
            &token_digest("tok"),
            7,
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        write(&path, &stored).unwrap();
        let back = parse(&std::fs::read(&path).unwrap()).unwrap();
        let m = members(&back);
        assert_eq!(m["client_id"], id);
        assert_eq!(m["client_secret"], "s3cret");
        assert_eq!(m["client_id_issued_at"], 7);
        assert_eq!(m["client_name"], "Orders");
        assert_eq!(m["scope"], "default orders:read");
        assert_eq!(m["token_endpoint_auth_method"], "client_secret_post");
        assert_eq!(
            back.client.metadata.labels.as_ref().unwrap()[REGISTERED_LABEL],
            "true"
        );
        // The file is a valid clients manifest.
        let registry =
            client_files::load(&client_files::read_snapshot(dir.path()).unwrap()).unwrap();
        assert_eq!(registry.len(), 1);

        // An admin's audience survives an update through the API.
        let mut edited = back.client.clone();
        edited.spec.audience = vec!["orders-api".into()];
        let updated = build(
            "default",
            id,
            &ClientMetadata::default(),
            "s2",
            "d",
            7,
            Some(&edited),
        );
        assert_eq!(updated.client.spec.audience, ["orders-api"]);
        assert!(updated.client.spec.scopes.is_empty());
        assert!(
            !updated
                .client
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(CLIENT_NAME_ANNOTATION)
        );
    }
}
