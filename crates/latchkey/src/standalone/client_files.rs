//! Clients from YAML manifests: `OAuthClient` documents in exactly the CRD format plus the
//! `Secret` documents they reference, so one set of manifests serves both modes. They go
//! through the same resolver as in a cluster (`latchkey_api::resolve`); only where the
//! objects come from differs.
//!
//! A load succeeds whole or not at all: every problem is reported with its file, document
//! number and reason (never a secret value), and the caller keeps serving the last good
//! registry.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Secret;
use latchkey_api::{
    OAuthClient,
    resolve::{ClientIndex, ClientState, ObjKey, key_of},
    secret_data,
};
use latchkey_core::{ClientRecord, ClientSpec, GrantType, Registry, SecretDigest, apk};
use serde::Deserialize;

pub use crate::load_error::{DocError, LoadError};

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

/// The largest manifest file read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The manifests as read at one moment: each file's bytes (or why it could not be read).
#[derive(Debug, Clone)]
pub struct Snapshot {
    files: Vec<(PathBuf, Result<Vec<u8>, String>)>,
}

impl Snapshot {
    /// Each file's path and bytes (or why it could not be read), in name order.
    pub fn files(&self) -> &[(PathBuf, Result<Vec<u8>, String>)] {
        &self.files
    }

    /// A digest of every file's name and content: equal digests, same manifests.
    pub fn digest(&self) -> [u8; 32] {
        let parts: Vec<Vec<u8>> = self
            .files
            .iter()
            .flat_map(|(p, r)| {
                let content = match r {
                    Ok(b) => b.clone(),
                    Err(e) => format!("error: {e}").into_bytes(),
                };
                [p.as_os_str().as_encoded_bytes().to_vec(), content]
            })
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        latchkey_server::file_read::digest(&refs)
    }
}

/// Read the manifests under `path`: the file itself, or a directory's `*.yaml`, `*.yml` and
/// `*.json` entries (not recursive, not hidden), in name order. An entry that cannot be read
/// as a regular file (a dangling symlink, a loop, a FIFO, a device) is an error naming it,
/// never silently skipped. Blocking: run it off the async workers.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, LoadError> {
    let file_error = |reason: String| {
        LoadError(vec![DocError {
            file: path.to_owned(),
            doc: 0,
            reason,
        }])
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    let mut paths = Vec::new();
    if meta.is_dir() {
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
            if is_manifest && !hidden {
                paths.push(p);
            }
        }
        paths.sort();
    } else {
        paths.push(path.to_owned());
    }
    let files = paths
        .into_iter()
        .map(|p| {
            let read = match latchkey_server::file_read::read_bounded(&p, MAX_FILE_BYTES) {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err("cannot be read: it does not exist (a dangling symlink?)".into()),
                Err(e) => Err(format!("cannot be read: {e}")),
            };
            (p, read)
        })
        .collect();
    Ok(Snapshot { files })
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

pub(crate) fn namespace_of(ns: &Option<String>) -> String {
    ns.clone().unwrap_or_else(|| "default".to_owned())
}

/// Why a Secret document is not a Secret, naming the field but never showing a value.
pub(crate) fn secret_shape_error(value: &serde_norway::Value) -> String {
    for field in ["data", "stringData"] {
        match value.get(field) {
            None | Some(serde_norway::Value::Null) => {}
            Some(serde_norway::Value::Mapping(m)) => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("<non-string key>");
                    if !v.is_string() {
                        return format!(
                            "invalid Secret: {field}.{key} must be a string (quote the value)"
                        );
                    }
                }
            }
            Some(_) => return format!("invalid Secret: {field} must be a map of strings"),
        }
    }
    "invalid Secret: its fields do not match a v1 Secret (values are not shown)".into()
}

fn read_documents(file: &Path, text: &str, objects: &mut Objects, errors: &mut Vec<DocError>) {
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
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
            Err(_) => {
                errors.push(
                    origin.error("not a Kubernetes object (apiVersion and kind must be strings)"),
                );
                continue;
            }
        };
        match (meta.api_version.as_deref(), meta.kind.as_deref()) {
            (Some("latchkey.dev/v1alpha1"), Some("OAuthClient")) => {
                match serde_norway::from_value::<OAuthClient>(value) {
                    Ok(mut c) if c.metadata.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                        c.metadata.namespace = Some(namespace_of(&c.metadata.namespace));
                        objects.clients.push((c, origin))
                    }
                    Ok(_) => errors.push(origin.error("OAuthClient has no metadata.name")),
                    Err(e) => errors.push(origin.error(format!("invalid OAuthClient: {e}"))),
                }
            }
            (Some("v1"), Some("Secret")) => match serde_norway::from_value::<Secret>(value.clone())
            {
                Ok(mut s) => {
                    let Some(name) = s.metadata.name.clone().filter(|n| !n.is_empty()) else {
                        errors.push(origin.error("Secret has no metadata.name"));
                        continue;
                    };
                    s.metadata.namespace = Some(namespace_of(&s.metadata.namespace));
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
                Err(_) => errors.push(origin.error(secret_shape_error(&value))),
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

/// Why a client in the files serves nothing, as a load error.
fn problem(
    state: &ClientState,
    client: &OAuthClient,
    origins: &HashMap<ObjKey, Origin>,
) -> Option<String> {
    let ns = client.metadata.namespace.clone().unwrap_or_default();
    let name = client.metadata.name.clone().unwrap_or_default();
    let reason = match state {
        ClientState::Registered | ClientState::Disabled => return None,
        ClientState::InvalidSpec(m) => m.clone(),
        ClientState::SecretNotFound { secret } | ClientState::CredentialsPending { secret } => {
            let why = if client.spec.secret_ref.is_some() {
                "spec.secretRef names"
            } else {
                "without spec.secretRef it needs"
            };
            format!("{why} Secret {ns}/{secret}, which is not in the clients files")
        }
        ClientState::SecretKeyMissing { secret, key } => {
            format!("Secret {ns}/{secret} has no key {key:?}")
        }
        ClientState::ClientIdMissing { secret } => format!(
            "spec.clientId is omitted and Secret {ns}/{secret} has no {:?} key",
            secret_data::CLIENT_ID_KEY
        ),
        ClientState::ClientIdConflict { client_id, holder } => {
            let at = origins
                .get(holder)
                .map(|o| format!("{} (document {})", o.file.display(), o.doc))
                .unwrap_or_else(|| format!("{}/{}", holder.0, holder.1));
            format!("client id {client_id:?} is already used by {at}")
        }
    };
    Some(format!("OAuthClient {ns}/{name}: {reason}"))
}

/// Parse a snapshot into a registry, through the same resolver as the cluster.
pub fn load(snapshot: &Snapshot) -> Result<Registry, LoadError> {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    for (file, read) in &snapshot.files {
        match read {
            Err(reason) => errors.push(DocError {
                file: file.clone(),
                doc: 0,
                reason: reason.clone(),
            }),
            Ok(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => read_documents(file, text, &mut objects, &mut errors),
                Err(_) => errors.push(DocError {
                    file: file.clone(),
                    doc: 0,
                    reason: "not UTF-8 text".into(),
                }),
            },
        }
    }
    let mut index = ClientIndex::default();
    let mut origins: HashMap<ObjKey, Origin> = HashMap::new();
    let mut order = Vec::new();
    for (rank, (client, origin)) in objects.clients.iter().enumerate() {
        let key = key_of(client);
        if let Some(first) = origins.get(&key) {
            errors.push(origin.error(format!(
                "OAuthClient {}/{} is also defined in {} (document {})",
                key.0,
                key.1,
                first.file.display(),
                first.doc
            )));
            continue;
        }
        origins.insert(key.clone(), origin.clone());
        order.push(key.clone());
        // Document order decides who keeps a client id claimed twice.
        index.apply_client(client.clone(), (rank as i64, key));
    }
    let names = objects.secrets.keys().cloned().collect();
    let secrets: Vec<Secret> = objects.secrets.values().map(|(s, _)| s.clone()).collect();
    index.replace_secrets(None, names, &secrets);
    index.mark_secrets_listed();
    index.resolve();
    for key in &order {
        if let (Some(outcome), Some(origin)) = (index.outcome(key), origins.get(key))
            && let Some(reason) = problem(&outcome.state, &outcome.client, &origins)
        {
            errors.push(origin.error(reason));
        }
    }
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    Ok(index.registry().clone())
}

/// Read and load the manifests under `path` (blocking).
#[cfg(test)]
pub fn load_path(path: &Path) -> Result<Registry, LoadError> {
    load(&read_snapshot(path)?)
}

/// APK's default non-production client: scopes `default` and `apk:*`.
pub fn apk_default() -> Registry {
    // The built-in definition is constant and valid; a unit test holds it to that.
    #[allow(clippy::expect_used)]
    let spec = ClientSpec {
        client_id: apk::DEFAULT_CLIENT_ID.to_owned(),
        secret: SecretDigest::of_secret(apk::DEFAULT_CLIENT_SECRET.as_bytes())
            .expect("the APK default secret is not empty"),
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["default".into(), "apk:*".into()],
        default_scopes: vec!["default".into()],
        origin: "built-in APK default client".into(),
        ..ClientSpec::default()
    };
    #[allow(clippy::expect_used)]
    Registry::new([ClientRecord::new(spec).expect("the APK default client is valid")])
        .expect("one client cannot collide")
}

// Issue 13: registrations are read with the clients files.
impl Snapshot {
    /// Add another read's files after this one's.
    pub fn append(&mut self, other: Snapshot) {
        self.files.extend(other.files);
    }
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
        let registry = load_path(dir.path()).unwrap();
        assert_eq!(registry.len(), 2);
        assert!(
            registry
                .authenticate("orders-gateway", b"s3cret", std::time::SystemTime::now())
                .is_ok()
        );
        assert!(
            registry
                .authenticate(
                    "billing-id",
                    b"billing-secret",
                    std::time::SystemTime::now()
                )
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
        let err = load_path(dir.path()).unwrap_err();
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
        let err = load_path(dir.path()).unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "x.yaml", "kind: [unclosed");
        let err = load_path(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("x.yaml (document 1): not YAML"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_entries_are_errors_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clients.yaml", GOOD);
        std::os::unix::fs::symlink(
            dir.path().join("gone.yaml"),
            dir.path().join("dangling.yaml"),
        )
        .unwrap();
        let err = load_path(dir.path()).unwrap_err();
        assert!(err.to_string().contains("dangling.yaml"), "{err}");
        std::fs::remove_file(dir.path().join("dangling.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        let err = load_path(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("zero.yaml: cannot be read: not a regular file"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("zero.yaml")).unwrap();
        let fifo = dir.path().join("fifo.yaml");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = load_path(dir.path()).unwrap_err();
        assert!(err.to_string().contains("fifo.yaml"), "{err}");
        std::fs::remove_file(&fifo).unwrap();
        assert_eq!(load_path(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn a_secret_value_never_reaches_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: { name: s }\nstringData: { clientSecret: 918273645546372819 }\n",
        );
        let err = load_path(dir.path()).unwrap_err().to_string();
        assert!(!err.contains("918273645546372819"), "{err}");
        assert!(
            err.contains("stringData.clientSecret must be a string"),
            "{err}"
        );
    }

    #[test]
    fn a_rewrite_with_the_same_length_and_mtime_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.yaml", GOOD);
        let before = read_snapshot(dir.path()).unwrap().digest();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::write(&f, GOOD.replace("s3cret", "s3creT")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_ne!(read_snapshot(dir.path()).unwrap().digest(), before);
    }

    #[test]
    fn apk_default_client_is_valid() {
        let r = apk_default();
        assert!(
            r.authenticate(
                apk::DEFAULT_CLIENT_ID,
                apk::DEFAULT_CLIENT_SECRET.as_bytes(),
                std::time::SystemTime::now()
            )
            .is_ok()
        );
    }
}
