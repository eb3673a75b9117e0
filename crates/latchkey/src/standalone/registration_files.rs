//! Issue 13: registered clients standalone: one file per registration under
//! `STATE_DIR/registrations/`, an `OAuthClient` manifest (labelled `latchkey.dev/registered`)
//! and its `Secret`, in exactly the format of `--clients` files. The loader reads them with
//! the clients files, so a registration survives restarts and an edit of its file wins: the
//! management API reads the file back.
//!
//! Every write and the reload that follows it happen under one lock shared with the clients
//! reload, so an answer is sent once this process's registry serves what it says.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use latchkey_api::{
    OAuthClient, SecretKeyRef,
    registration::{self, AuthMethod, ClientMetadata, RegistrationPolicy},
    secret_data,
};
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
use crate::{files, serving::unix_now};

/// The directory under the state directory.
pub const REGISTRATIONS_DIR: &str = "registrations";
/// Label on every registered client.
pub const REGISTERED_LABEL: &str = "latchkey.dev/registered";
/// Annotations a registration keeps on its `OAuthClient`.
pub const CLIENT_NAME_ANNOTATION: &str = "latchkey.dev/client-name";
pub const AUTH_METHOD_ANNOTATION: &str = "latchkey.dev/token-endpoint-auth-method";
pub const TOKEN_DIGEST_ANNOTATION: &str = "latchkey.dev/registration-token-sha256";
pub const ISSUED_AT_ANNOTATION: &str = "latchkey.dev/client-id-issued-at";
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

/// A registration as stored.
pub(crate) struct Stored {
    pub client: OAuthClient,
    pub secret: Secret,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> RegistrarError {
    RegistrarError::Unavailable(e.to_string())
}

pub(crate) fn metadata_error(e: registration::MetadataError) -> RegistrarError {
    RegistrarError::Metadata {
        code: e.code.as_str(),
        description: e.description,
    }
}

fn bad(description: &str) -> RegistrarError {
    RegistrarError::Metadata {
        code: "invalid_client_metadata",
        description: description.to_owned(),
    }
}

pub(crate) fn name_of(client_id: &str) -> String {
    format!("dcr-{client_id}")
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

pub(crate) fn annotation<'a>(client: &'a OAuthClient, key: &str) -> Option<&'a str> {
    client
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The answer's members for a stored registration: the resource as it is now (an edit of the
/// file wins over what was registered).
pub(crate) fn members(stored: &Stored) -> Map<String, Value> {
    let client = &stored.client;
    let metadata = ClientMetadata {
        client_name: annotation(client, CLIENT_NAME_ANNOTATION).map(str::to_owned),
        scopes: client.spec.scopes.clone(),
        grant_types: client.spec.grant_types.clone(),
        token_endpoint_auth_method: annotation(client, AUTH_METHOD_ANNOTATION)
            .and_then(AuthMethod::parse)
            .unwrap_or_default(),
    };
    let mut out = Map::new();
    if let Some(id) = &client.spec.client_id {
        out.insert("client_id".into(), id.clone().into());
    }
    let key = client
        .spec
        .secret_ref
        .as_ref()
        .map_or(secret_data::DEFAULT_SECRET_KEY, |r| r.key.as_str());
    if let Some(secret) = secret_data::value(&stored.secret, key)
        && let Ok(secret) = String::from_utf8(secret)
    {
        out.insert("client_secret".into(), secret.into());
    }
    if let Some(at) = annotation(client, ISSUED_AT_ANNOTATION).and_then(|a| a.parse::<u64>().ok()) {
        out.insert("client_id_issued_at".into(), at.into());
    }
    out.insert("client_secret_expires_at".into(), 0.into());
    out.extend(metadata.to_json());
    out
}

/// The resource of a registration with `metadata` (over `previous`, whose other spec fields
/// and annotations an admin may have set, and are kept).
pub(crate) fn build(
    namespace: &str,
    client_id: &str,
    metadata: &ClientMetadata,
    secret: &str,
    token_digest: &str,
    issued_at: u64,
    previous: Option<&OAuthClient>,
) -> Stored {
    let name = name_of(client_id);
    let secret_name = format!("{name}-credentials");
    let mut spec = previous.map(|p| p.spec.clone()).unwrap_or_else(|| {
        let mut s = metadata.to_spec(client_id);
        s.secret_ref = Some(SecretKeyRef {
            name: secret_name.clone(),
            key: secret_data::DEFAULT_SECRET_KEY.into(),
        });
        s
    });
    spec.scopes = metadata.scopes.clone();
    spec.grant_types = metadata.grant_types.clone();
    let mut annotations = previous
        .and_then(|p| p.metadata.annotations.clone())
        .unwrap_or_default();
    match &metadata.client_name {
        Some(n) => annotations.insert(CLIENT_NAME_ANNOTATION.into(), n.clone()),
        None => annotations.remove(CLIENT_NAME_ANNOTATION),
    };
    annotations.insert(
        AUTH_METHOD_ANNOTATION.into(),
        metadata.token_endpoint_auth_method.as_str().into(),
    );
    annotations.insert(TOKEN_DIGEST_ANNOTATION.into(), token_digest.into());
    annotations.insert(ISSUED_AT_ANNOTATION.into(), issued_at.to_string());
    let mut labels = previous
        .and_then(|p| p.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert(REGISTERED_LABEL.into(), "true".into());
    let mut client = OAuthClient::new(&name, spec);
    client.metadata = ObjectMeta {
        name: Some(name),
        namespace: Some(
            previous
                .and_then(|p| p.metadata.namespace.clone())
                .unwrap_or_else(|| namespace.into()),
        ),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    let secret_ref = client.spec.secret_ref.clone();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_ref.as_ref().map_or(secret_name, |r| r.name.clone())),
            namespace: client.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(REGISTERED_LABEL.into(), "true".into())])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(
            secret_ref.map_or(secret_data::DEFAULT_SECRET_KEY.into(), |r| r.key),
            secret.to_owned(),
        )])),
        ..Secret::default()
    };
    Stored { client, secret }
}

/// The metadata members of a management PUT: RFC 7592 §2.2 repeats `client_id` (it must
/// match) and may repeat `client_secret` (it must match; omitted, the secret rotates).
/// Returns the members to check and whether the secret is kept.
pub(crate) fn update_members(
    body: &[u8],
    client_id: &str,
    current_secret: Option<&str>,
) -> Result<(Map<String, Value>, bool), RegistrarError> {
    if body.len() > registration::MAX_METADATA_BYTES {
        return Err(bad("the request body is too large"));
    }
    let Ok(Value::Object(mut members)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("the request body is not a JSON object"));
    };
    if members.remove("client_id").as_ref().and_then(Value::as_str) != Some(client_id) {
        return Err(bad("client_id: must be present and name this registration"));
    }
    let keep = match members.remove("client_secret") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => {
            let same = current_secret.is_some_and(|c| {
                use subtle::ConstantTimeEq;
                bool::from(c.as_bytes().ct_eq(s.as_bytes()))
            });
            if !same {
                return Err(bad(
                    "client_secret: must be the current secret, or omitted to get a new one",
                ));
            }
            true
        }
        Some(_) => return Err(bad("client_secret: must be a string")),
    };
    for server_set in [
        "registration_access_token",
        "registration_client_uri",
        "client_id_issued_at",
        "client_secret_expires_at",
    ] {
        members.remove(server_set);
    }
    Ok((members, keep))
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
    use latchkey_api::types::GrantTypeName;

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

    #[test]
    fn an_update_names_its_client_and_repeats_the_secret_or_rotates_it() {
        let id = "x";
        let ok = |body: Value| update_members(body.to_string().as_bytes(), id, Some("s"));
        let (m, keep) =
            ok(serde_json::json!({"client_id": "x", "client_secret": "s", "scope": "a"})).unwrap();
        assert!(keep);
        assert_eq!(m.get("scope").unwrap(), "a");
        assert!(!m.contains_key("client_id"));
        let (_, keep) = ok(serde_json::json!({"client_id": "x"})).unwrap();
        assert!(!keep);
        assert!(ok(serde_json::json!({"client_id": "y"})).is_err());
        assert!(ok(serde_json::json!({})).is_err());
        assert!(ok(serde_json::json!({"client_id": "x", "client_secret": "t"})).is_err());
        assert!(update_members(b"[]", id, None).is_err());
    }
}
