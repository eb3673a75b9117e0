//! Clients from YAML manifests: `OAuthClient` documents in exactly the CRD format plus the
//! `Secret` documents they reference, so one set of manifests serves both modes.
//!
//! A load succeeds whole or not at all: every problem is reported with its file, document
//! number and reason, and the caller keeps serving the last good registry.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use k8s_openapi::api::core::v1::Secret;
use latchkey_api::{OAuthClient, secret};
use latchkey_core::{ClientRecord, ClientSpec, GrantType, Registry, apk};
use serde::Deserialize;

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub file: PathBuf,
    /// 1-based document number within the file; 0 when the file itself is at fault.
    pub doc: usize,
    pub reason: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.doc == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{} (document {}): {}",
                self.file.display(),
                self.doc,
                self.reason
            )
        }
    }
}

/// Every problem of a failed load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadError(pub Vec<DocError>);

/// Where an object was read from.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    doc: usize,
}

impl Origin {
    fn error(&self, reason: impl Into<String>) -> DocError {
        DocError {
            file: self.file.clone(),
            doc: self.doc,
            reason: reason.into(),
        }
    }
}

/// The manifest files under `path`: the file itself, or a directory's `*.yaml`, `*.yml` and
/// `*.json` files (not recursive), in name order.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let file_error = |reason: String| {
        LoadError(vec![DocError {
            file: path.to_owned(),
            doc: 0,
            reason,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| file_error(e.to_string()))? {
        let p = entry.map_err(|e| file_error(e.to_string()))?.path();
        let is_manifest = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if is_manifest && !hidden && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// What identifies the current version of the manifests: each file's path, mtime and length.
pub fn fingerprint(path: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    manifest_files(path)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).ok();
            let modified = m.as_ref().and_then(|m| m.modified().ok());
            (p, modified, m.map_or(0, |m| m.len()))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Default)]
struct Objects {
    clients: Vec<(OAuthClient, Origin)>,
    /// By (namespace, name).
    secrets: HashMap<(String, String), (Secret, Origin)>,
}

fn namespace_of(ns: &Option<String>) -> String {
    ns.clone().unwrap_or_else(|| "default".to_owned())
}

fn read_documents(file: &Path, objects: &mut Objects, errors: &mut Vec<DocError>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(DocError {
                file: file.to_owned(),
                doc: 0,
                reason: e.to_string(),
            });
            return;
        }
    };
    for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let origin = Origin {
            file: file.to_owned(),
            doc: i + 1,
        };
        let value = match serde_norway::Value::deserialize(document) {
            Ok(serde_norway::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(origin.error(format!("not YAML: {e}")));
                // The parser cannot resynchronise after a syntax error.
                return;
            }
        };
        let meta: TypeMeta = match serde_norway::from_value(value.clone()) {
            Ok(m) => m,
            Err(e) => {
                errors.push(origin.error(format!("not a Kubernetes object: {e}")));
                continue;
            }
        };
        match (meta.api_version.as_deref(), meta.kind.as_deref()) {
            (Some("latchkey.dev/v1alpha1"), Some("OAuthClient")) => {
                match serde_norway::from_value::<OAuthClient>(value) {
                    Ok(c) if c.metadata.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                        objects.clients.push((c, origin))
                    }
                    Ok(_) => errors.push(origin.error("OAuthClient has no metadata.name")),
                    Err(e) => errors.push(origin.error(format!("invalid OAuthClient: {e}"))),
                }
            }
            (Some("v1"), Some("Secret")) => match serde_norway::from_value::<Secret>(value) {
                Ok(s) => {
                    let Some(name) = s.metadata.name.clone().filter(|n| !n.is_empty()) else {
                        errors.push(origin.error("Secret has no metadata.name"));
                        continue;
                    };
                    let key = (namespace_of(&s.metadata.namespace), name);
                    if let Some((_, first)) = objects.secrets.get(&key) {
                        errors.push(origin.error(format!(
                            "Secret {}/{} is also defined in {} (document {})",
                            key.0,
                            key.1,
                            first.file.display(),
                            first.doc
                        )));
                        continue;
                    }
                    objects.secrets.insert(key, (s, origin));
                }
                Err(e) => errors.push(origin.error(format!("invalid Secret: {e}"))),
            },
            (_, Some("OAuthClient")) => errors.push(origin.error(format!(
                "OAuthClient apiVersion must be latchkey.dev/v1alpha1, not {:?}",
                meta.api_version.unwrap_or_default()
            ))),
            (_, kind) => {
                tracing::debug!(file = %file.display(), doc = i + 1, kind = ?kind, "ignoring a document that is neither OAuthClient nor Secret");
            }
        }
    }
}

/// Resolve one OAuthClient's credentials from the Secrets and build its record.
fn client_record(
    client: &OAuthClient,
    origin: &Origin,
    objects: &Objects,
) -> Result<ClientRecord, String> {
    let ns = namespace_of(&client.metadata.namespace);
    let name = client.metadata.name.clone().unwrap_or_default();
    let (secret_name, key) = match &client.spec.secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (
            secret::generated_name(&name),
            secret::DEFAULT_SECRET_KEY.to_owned(),
        ),
    };
    let Some((secret_obj, _)) = objects.secrets.get(&(ns.clone(), secret_name.clone())) else {
        let why = if client.spec.secret_ref.is_some() {
            "spec.secretRef names"
        } else {
            "without spec.secretRef it needs"
        };
        return Err(format!(
            "OAuthClient {ns}/{name}: {why} Secret {ns}/{secret_name}, which is not in the clients files"
        ));
    };
    let secret_value = secret::value(secret_obj, &key).ok_or_else(|| {
        format!("OAuthClient {ns}/{name}: Secret {ns}/{secret_name} has no key {key:?}")
    })?;
    let client_id = match &client.spec.client_id {
        Some(id) => id.clone(),
        None => secret::value(secret_obj, secret::CLIENT_ID_KEY)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                format!(
                    "OAuthClient {ns}/{name}: spec.clientId is omitted and Secret {ns}/{secret_name} has no {:?} key",
                    secret::CLIENT_ID_KEY
                )
            })?,
    };
    let spec = latchkey_api::client_spec(
        &client.spec,
        &client_id,
        &secret_value,
        format!("{ns}/{name}"),
    )
    .map_err(|e| format!("OAuthClient {ns}/{name}: {e}"))?;
    ClientRecord::new(spec).map_err(|e| format!("OAuthClient {ns}/{name}: {e}"))
        .inspect(|_| tracing::debug!(file = %origin.file.display(), doc = origin.doc, client = %format!("{ns}/{name}"), "client loaded"))
}

/// Read every manifest under `path` into a registry.
pub fn load(path: &Path) -> Result<Registry, LoadError> {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    for file in manifest_files(path)? {
        read_documents(&file, &mut objects, &mut errors);
    }
    let mut records = Vec::new();
    let mut owners: HashMap<String, &Origin> = HashMap::new();
    for (client, origin) in &objects.clients {
        match client_record(client, origin, &objects) {
            Ok(record) => {
                if let Some(first) = owners.get(record.client_id()) {
                    errors.push(origin.error(format!(
                        "client id {:?} is already used by {} (document {})",
                        record.client_id(),
                        first.file.display(),
                        first.doc
                    )));
                    continue;
                }
                owners.insert(record.client_id().to_owned(), origin);
                records.push(record);
            }
            Err(reason) => errors.push(origin.error(reason)),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    Registry::new(records).map_err(|e| {
        LoadError(vec![DocError {
            file: path.to_owned(),
            doc: 0,
            reason: e.to_string(),
        }])
    })
}

/// APK's default non-production client: scopes `default` and `apk:*`.
pub fn apk_default() -> Registry {
    let spec = ClientSpec {
        client_id: apk::DEFAULT_CLIENT_ID.to_owned(),
        secret: apk::DEFAULT_CLIENT_SECRET.as_bytes().to_vec(),
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["default".into(), "apk:*".into()],
        default_scopes: vec!["default".into()],
        origin: "built-in APK default client".into(),
        ..ClientSpec::default()
    };
    // The built-in definition is constant and valid; a unit test holds it to that.
    #[allow(clippy::expect_used)]
    Registry::new([ClientRecord::new(spec).expect("the APK default client is valid")])
        .expect("one client cannot collide")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: orders-gateway, namespace: apps }
spec:
  clientId: orders-gateway
  secretRef: { name: orders-gateway-secret }
  scopes: ["orders:read"]
---
apiVersion: v1
kind: Secret
metadata: { name: orders-gateway-secret, namespace: apps }
stringData: { clientSecret: "s3cret" }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: billing, namespace: apps }
spec: {}
---
apiVersion: v1
kind: Secret
metadata: { name: billing-credentials, namespace: apps }
data: { clientId: YmlsbGluZy1pZA==, clientSecret: YmlsbGluZy1zZWNyZXQ= }
---
apiVersion: v1
kind: Namespace
metadata: { name: apps }
"#;

    #[test]
    fn loads_clients_with_referenced_and_generated_style_secrets() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clients.yaml", GOOD);
        let registry = load(dir.path()).unwrap();
        assert_eq!(registry.len(), 2);
        assert!(registry.authenticate("orders-gateway", b"s3cret").is_ok());
        assert!(
            registry
                .authenticate("billing-id", b"billing-secret")
                .is_ok()
        );
    }

    #[test]
    fn every_problem_names_file_and_document() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "bad.yaml",
            r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: a }
spec: { clientId: a, secretRef: { name: missing } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: b }
spec: { clientId: b, accessTokenLifetime: forever, secretRef: { name: s } }
---
apiVersion: v1
kind: Secret
metadata: { name: s }
stringData: { clientSecret: x }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: c }
spec: { clientId: b, grantTypes: [password] }
"#,
        );
        let err = load(dir.path()).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert_eq!((err.0[0].file.clone(), err.0[0].doc), (f.clone(), 4));
        assert!(err.0[0].reason.contains("invalid OAuthClient"), "{err}");
        assert_eq!(err.0[1].doc, 1);
        assert!(err.0[1].reason.contains("default/missing"), "{err}");
        assert_eq!(err.0[2].doc, 2);
        assert!(err.0[2].reason.contains("accessTokenLifetime"), "{err}");
    }

    #[test]
    fn duplicate_client_ids_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", GOOD);
        write(
            dir.path(),
            "b.yaml",
            &GOOD.replace("namespace: apps", "namespace: other"),
        );
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x.yaml", "kind: [unclosed");
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("x.yaml (document 1): not YAML"),
            "{err}"
        );
    }

    #[test]
    fn apk_default_client_is_valid() {
        let r = apk_default();
        assert!(
            r.authenticate(
                apk::DEFAULT_CLIENT_ID,
                apk::DEFAULT_CLIENT_SECRET.as_bytes()
            )
            .is_ok()
        );
    }
}
