//! `latchkey clients rotate-secret` (issue 13): a client gets a new secret while its old one
//! stays valid for a grace period, so callers switch at their own pace with no failed request.
//!
//! The steps run in an order in which no replica ever refuses a secret it should accept, nor
//! accepts one it should not, whatever moment it reads the objects at:
//! 1. the Secret's previous-secret key gets the current (old) secret — a value that is valid
//!    anyway, which also drops whatever older previous secret it held;
//! 2. the client's `spec.previousSecret` names that key, with `expiresAt` = now + grace;
//! 3. after `--settle` (every replica has seen step 2), the current key gets the new secret.
//!
//! In a cluster it works on generated credentials (`<name>-credentials`) through the API, each
//! write conditional on the version read; standalone it rewrites the manifest file(s) holding
//! the OAuthClient and its Secret, atomically.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use latchkey_api::{OAuthClient, secret_data};
use serde_norway::Value;

use crate::{
    cli::{ClientsAction, ClientsArgs, RotateSecretArgs},
    error::Error,
};

pub async fn run(args: ClientsArgs) -> Result<(), Error> {
    match args.action {
        ClientsAction::RotateSecret(a) => rotate(a).await,
    }
}

async fn rotate(args: RotateSecretArgs) -> Result<(), Error> {
    let expires_at = expiry(SystemTime::now(), args.grace)?;
    let done = match &args.clients {
        Some(path) => {
            let ns = args.namespace.clone().unwrap_or_else(|| "default".into());
            let mut store = FileStore::open(path, &ns, &args.name)?;
            steps(&mut store, &expires_at, args.settle).await?
        }
        None => {
            let client = crate::cluster::kube_client().await?;
            let ns = args
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let mut store = ClusterStore::open(client, &ns, &args.name).await?;
            steps(&mut store, &expires_at, args.settle).await?
        }
    };
    println!(
        "rotated the secret of OAuthClient {}: the new one is in {}; the previous one is \
         accepted until {}",
        args.name, done, expires_at.0
    );
    Ok(())
}

/// `now + grace` as a Kubernetes time, to the second.
fn expiry(now: SystemTime, grace: Duration) -> Result<Time, Error> {
    let at = now
        .checked_add(grace)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|s| Timestamp::from_second(s).ok())
        .ok_or_else(|| Error::Usage(format!("--grace {grace:?} is out of range")))?;
    Ok(Time(at))
}

/// Where one client's secret values and spec live.
trait RotationStore {
    /// The client's current secret and the key of its previous secret.
    fn current(&self) -> Result<(Vec<u8>, String), Error>;
    /// Set values in the client's Secret.
    async fn write_values(&mut self, values: &[(&str, &[u8])]) -> Result<(), Error>;
    /// Set `spec.previousSecret`.
    async fn set_previous(&mut self, key: &str, expires_at: &Time) -> Result<(), Error>;
    /// Read the objects again (someone else may have written meanwhile).
    async fn refresh(&mut self) -> Result<(), Error>;
    /// The key of the current secret.
    fn current_key(&self) -> String;
    /// Where the secret is, for the person who asked.
    fn describe(&self) -> String;
}

/// The three steps of the module doc; returns where the new secret is.
async fn steps<S: RotationStore>(
    store: &mut S,
    expires_at: &Time,
    settle: Duration,
) -> Result<String, Error> {
    let (old, previous_key) = store.current()?;
    let new = latchkey_operator::credentials::random_secret()?;
    store
        .write_values(&[(previous_key.as_str(), old.as_slice())])
        .await?;
    store.set_previous(&previous_key, expires_at).await?;
    tokio::time::sleep(settle).await;
    store.refresh().await?;
    let (now_current, _) = store.current()?;
    if now_current != old {
        return Err(Error::Usage(
            "the client's secret changed during the rotation (another rotation?): nothing \
             more was changed; run it again"
                .into(),
        ));
    }
    let current_key = store.current_key();
    store
        .write_values(&[(current_key.as_str(), new.as_bytes())])
        .await?;
    Ok(store.describe())
}

/// The previous-secret key the spec names, or the default.
fn previous_key(client: &OAuthClient) -> String {
    client.spec.previous_secret.as_ref().map_or_else(
        || secret_data::PREVIOUS_SECRET_KEY.to_owned(),
        |p| p.key.clone(),
    )
}

/// A generated credentials Secret and its OAuthClient, through the API.
struct ClusterStore {
    clients: Api<OAuthClient>,
    secrets: Api<Secret>,
    name: String,
    namespace: String,
    secret_name: String,
    secret: Secret,
    previous_key: String,
}

impl ClusterStore {
    async fn open(client: kube::Client, ns: &str, name: &str) -> Result<ClusterStore, Error> {
        let clients: Api<OAuthClient> = Api::namespaced(client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(client, ns);
        let oac = clients
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading OAuthClient {ns}/{name}")))?
            .ok_or_else(|| Error::Usage(format!("OAuthClient {ns}/{name} does not exist")))?;
        if let Some(r) = &oac.spec.secret_ref {
            return Err(Error::Usage(format!(
                "OAuthClient {ns}/{name} reads Secret {} (spec.secretRef), which you manage: \
                 rotate-secret rotates generated credentials only; rotate yours by writing the \
                 old secret under another key of that Secret, setting spec.previousSecret, then \
                 the new secret under {:?}",
                r.name, r.key
            )));
        }
        let secret_name = secret_data::generated_name(name);
        let secret = secrets
            .get_opt(&secret_name)
            .await
            .map_err(Error::kube(format!("reading Secret {ns}/{secret_name}")))?
            .ok_or_else(|| {
                Error::Usage(format!(
                    "Secret {ns}/{secret_name} does not exist yet: wait for the client's \
                     credentials to be generated"
                ))
            })?;
        Ok(ClusterStore {
            previous_key: previous_key(&oac),
            clients,
            secrets,
            name: name.to_owned(),
            namespace: ns.to_owned(),
            secret_name,
            secret,
        })
    }
}

impl RotationStore for ClusterStore {
    fn current(&self) -> Result<(Vec<u8>, String), Error> {
        let value = secret_data::value(&self.secret, secret_data::DEFAULT_SECRET_KEY)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "Secret {}/{} has no client secret",
                    self.namespace, self.secret_name
                ))
            })?;
        Ok((value, self.previous_key.clone()))
    }

    async fn write_values(&mut self, values: &[(&str, &[u8])]) -> Result<(), Error> {
        let mut next = self.secret.clone();
        // Replace carries the resourceVersion read: a concurrent writer makes this fail.
        next.metadata.managed_fields = None;
        let data = next.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in values {
            data.insert((*k).to_owned(), ByteString(v.to_vec()));
            if let Some(sd) = next.string_data.as_mut() {
                sd.remove(*k);
            }
        }
        self.secret = self
            .secrets
            .replace(&self.secret_name, &PostParams::default(), &next)
            .await
            .map_err(Error::kube(format!(
                "writing Secret {}/{}",
                self.namespace, self.secret_name
            )))?;
        Ok(())
    }

    async fn set_previous(&mut self, key: &str, expires_at: &Time) -> Result<(), Error> {
        let patch = serde_json::json!({
            "spec": { "previousSecret": { "key": key, "expiresAt": expires_at } }
        });
        self.clients
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "setting spec.previousSecret of OAuthClient {}/{}",
                self.namespace, self.name
            )))?;
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), Error> {
        self.secret = self
            .secrets
            .get(&self.secret_name)
            .await
            .map_err(Error::kube(format!(
                "reading Secret {}/{}",
                self.namespace, self.secret_name
            )))?;
        Ok(())
    }

    fn current_key(&self) -> String {
        secret_data::DEFAULT_SECRET_KEY.to_owned()
    }

    fn describe(&self) -> String {
        format!(
            "Secret {}/{} key {:?}",
            self.namespace,
            self.secret_name,
            secret_data::DEFAULT_SECRET_KEY
        )
    }
}

/// One document of a manifest file.
#[derive(Clone)]
struct DocAt {
    file: PathBuf,
    index: usize,
}

/// The manifest files holding a client and its Secret, as YAML values.
struct FileStore {
    /// Where it was opened from, to read it again.
    from: (PathBuf, String, String),
    files: BTreeMap<PathBuf, Vec<Value>>,
    client: DocAt,
    secret: DocAt,
    secret_key: String,
    previous_key: String,
}

fn kind_of(v: &Value) -> (Option<&str>, Option<&str>) {
    (
        v.get("apiVersion").and_then(Value::as_str),
        v.get("kind").and_then(Value::as_str),
    )
}

fn name_ns(v: &Value) -> (Option<&str>, &str) {
    let meta = v.get("metadata");
    (
        meta.and_then(|m| m.get("name")).and_then(Value::as_str),
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default"),
    )
}

/// The manifest files under `path`, as the server reads them.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(Error::io(path))? {
        let p = entry.map_err(Error::io(path))?.path();
        let manifest = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if manifest && !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every manifest under `path`, as YAML documents.
fn load_files(path: &Path) -> Result<BTreeMap<PathBuf, Vec<Value>>, Error> {
    let mut files = BTreeMap::new();
    for file in manifest_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(Error::io(&file))?;
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| Error::Usage(format!("{}: not YAML: {e}", file.display())))?;
            if !v.is_null() {
                docs.push(v);
            }
        }
        files.insert(file, docs);
    }
    Ok(files)
}

/// Where the object of this kind, namespace and name is.
fn find(
    files: &BTreeMap<PathBuf, Vec<Value>>,
    (api, kind): (&str, &str),
    ns: &str,
    want: &str,
) -> Option<DocAt> {
    files.iter().find_map(|(file, docs)| {
        docs.iter().enumerate().find_map(|(index, v)| {
            (kind_of(v) == (Some(api), Some(kind)) && name_ns(v) == (Some(want), ns)).then(|| {
                DocAt {
                    file: file.clone(),
                    index,
                }
            })
        })
    })
}

/// Write one file's documents back, atomically.
fn save(files: &BTreeMap<PathBuf, Vec<Value>>, file: &Path) -> Result<(), Error> {
    let mut out = String::new();
    for doc in files.get(file).into_iter().flatten() {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        let text = serde_norway::to_string(doc)
            .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
        out.push_str(&text);
    }
    crate::files::write_atomic(file, out.as_bytes(), true)
}

const OAUTH_CLIENT: (&str, &str) = ("latchkey.dev/v1alpha1", "OAuthClient");

/// Issue 13: set an annotation on an OAuthClient in the manifests under `path` (standalone
/// `latchkey tokens revoke`).
pub(crate) fn annotate_in_files(
    path: &Path,
    ns: &str,
    name: &str,
    key: &str,
    value: &str,
) -> Result<PathBuf, Error> {
    let mut files = load_files(path)?;
    let at = find(&files, OAUTH_CLIENT, ns, name)
        .ok_or_else(|| Error::Usage(format!("no OAuthClient {ns}/{name} in {}", path.display())))?;
    let doc = files
        .get_mut(&at.file)
        .and_then(|d| d.get_mut(at.index))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| Error::Usage(format!("{}: not a mapping", at.file.display())))?;
    child(child(doc, "metadata")?, "annotations")?.insert(key.into(), value.into());
    save(&files, &at.file)?;
    Ok(at.file)
}

impl FileStore {
    fn open(path: &Path, ns: &str, name: &str) -> Result<FileStore, Error> {
        let files = load_files(path)?;
        let find = |api: &str, kind: &str, want: &str| find(&files, (api, kind), ns, want);
        let client_at = find("latchkey.dev/v1alpha1", "OAuthClient", name).ok_or_else(|| {
            Error::Usage(format!("no OAuthClient {ns}/{name} in {}", path.display()))
        })?;
        let client: OAuthClient =
            serde_norway::from_value(files[&client_at.file][client_at.index].clone())
                .map_err(|e| Error::Usage(format!("OAuthClient {ns}/{name} is invalid: {e}")))?;
        let (secret_name, secret_key) = match &client.spec.secret_ref {
            Some(r) => (r.name.clone(), r.key.clone()),
            None => (
                secret_data::generated_name(name),
                secret_data::DEFAULT_SECRET_KEY.to_owned(),
            ),
        };
        let secret = find("v1", "Secret", &secret_name).ok_or_else(|| {
            Error::Usage(format!(
                "no Secret {ns}/{secret_name} (the client's credentials) in {}",
                path.display()
            ))
        })?;
        Ok(FileStore {
            from: (path.to_owned(), ns.to_owned(), name.to_owned()),
            previous_key: previous_key(&client),
            files,
            client: client_at,
            secret,
            secret_key,
        })
    }

    fn doc_mut(&mut self, at: &DocAt) -> Result<&mut serde_norway::Mapping, Error> {
        self.files
            .get_mut(&at.file)
            .and_then(|d| d.get_mut(at.index))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| Error::Usage(format!("{}: not a mapping", at.file.display())))
    }

    fn save(&self, file: &Path) -> Result<(), Error> {
        save(&self.files, file)
    }
}

/// A mapping's entry `key`, made a mapping when absent or null.
fn child<'a>(
    m: &'a mut serde_norway::Mapping,
    key: &str,
) -> Result<&'a mut serde_norway::Mapping, Error> {
    let entry = m
        .entry(Value::String(key.to_owned()))
        .or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Mapping(Default::default());
    }
    entry
        .as_mapping_mut()
        .ok_or_else(|| Error::Usage(format!("{key} is not a mapping")))
}

impl RotationStore for FileStore {
    fn current(&self) -> Result<(Vec<u8>, String), Error> {
        let v = &self.files[&self.secret.file][self.secret.index];
        let secret: Secret = serde_norway::from_value(v.clone())
            .map_err(|_| Error::Usage(format!("{}: invalid Secret", self.secret.file.display())))?;
        let value = secret_data::value(&secret, &self.secret_key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the client's Secret has no key {:?}",
                    self.secret_key
                ))
            })?;
        Ok((value, self.previous_key.clone()))
    }

    async fn write_values(&mut self, values: &[(&str, &[u8])]) -> Result<(), Error> {
        let at = self.secret.clone();
        let doc = self.doc_mut(&at)?;
        for (k, v) in values {
            let text = std::str::from_utf8(v).map_err(|_| {
                Error::Usage("the client secret is not UTF-8 text: rotate it by hand".into())
            })?;
            if let Some(Value::Mapping(data)) = doc.get_mut("data") {
                data.remove(*k);
            }
            child(doc, "stringData")?.insert(Value::String((*k).to_owned()), text.into());
        }
        self.save(&at.file)
    }

    async fn set_previous(&mut self, key: &str, expires_at: &Time) -> Result<(), Error> {
        let at = self.client.clone();
        let doc = self.doc_mut(&at)?;
        let previous = child(child(doc, "spec")?, "previousSecret")?;
        previous.insert("key".into(), key.into());
        previous.insert("expiresAt".into(), expires_at.0.to_string().into());
        self.save(&at.file)
    }

    async fn refresh(&mut self) -> Result<(), Error> {
        let (path, ns, name) = self.from.clone();
        *self = FileStore::open(&path, &ns, &name)?;
        Ok(())
    }

    fn current_key(&self) -> String {
        self.secret_key.clone()
    }

    fn describe(&self) -> String {
        format!("{} key {:?}", self.secret.file.display(), self.secret_key)
    }
}
