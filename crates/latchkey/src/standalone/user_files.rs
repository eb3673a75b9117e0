//! Users from YAML manifests: `User` documents in exactly the CRD format plus the `Secret`
//! documents holding their password hashes, through the same resolver as in a cluster
//! (`latchkey_api::user_resolve`). Other kinds are ignored, so one directory can hold the
//! clients and the users and be given to both `--clients` and `--users`.
//!
//! Like the clients, a load succeeds whole or not at all, and every problem names its file and
//! document (never a value).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use latchkey_api::{
    resolve::{ObjKey, key_of},
    user::{PasswordRef, User, UserSpec},
    user_resolve::{UserIndex, UserState},
};
use latchkey_core::{UserDirectory, password::PasswordHash};
use latchkey_server::Metrics;
use serde::Deserialize;
use tokio::sync::watch;

use super::client_files::{Snapshot, namespace_of, read_snapshot, secret_shape_error};
use crate::{
    error::Error,
    load_error::{DocError, LoadError},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Default)]
struct Objects {
    users: Vec<(User, DocError)>,
    secrets: HashMap<ObjKey, (Secret, DocError)>,
}

/// Where a document is, as an error to fill in.
fn at(file: &Path, doc: usize) -> DocError {
    DocError {
        file: file.to_owned(),
        doc,
        reason: String::new(),
    }
}

fn with(origin: &DocError, reason: impl Into<String>) -> DocError {
    DocError {
        reason: reason.into(),
        ..origin.clone()
    }
}

fn read_documents(file: &Path, text: &str, objects: &mut Objects, errors: &mut Vec<DocError>) {
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let origin = at(file, i + 1);
        let value = match serde_norway::Value::deserialize(document) {
            Ok(serde_norway::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                errors.push(with(&origin, format!("not YAML: {e}")));
                return;
            }
        };
        let Ok(meta) = serde_norway::from_value::<TypeMeta>(value.clone()) else {
            errors.push(with(
                &origin,
                "not a Kubernetes object (apiVersion and kind must be strings)",
            ));
            continue;
        };
        match (meta.api_version.as_deref(), meta.kind.as_deref()) {
            (Some("latchkey.dev/v1alpha1"), Some("User")) => {
                match serde_norway::from_value::<User>(value) {
                    Ok(mut u) if u.metadata.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                        u.metadata.namespace = Some(namespace_of(&u.metadata.namespace));
                        objects.users.push((u, origin));
                    }
                    Ok(_) => errors.push(with(&origin, "User has no metadata.name")),
                    Err(e) => errors.push(with(&origin, format!("invalid User: {e}"))),
                }
            }
            (_, Some("User")) => errors.push(with(
                &origin,
                format!(
                    "User apiVersion must be latchkey.dev/v1alpha1, not {:?}",
                    meta.api_version.unwrap_or_default()
                ),
            )),
            (Some("v1"), Some("Secret")) => match serde_norway::from_value::<Secret>(value.clone())
            {
                Ok(mut s) => {
                    let Some(name) = s.metadata.name.clone().filter(|n| !n.is_empty()) else {
                        errors.push(with(&origin, "Secret has no metadata.name"));
                        continue;
                    };
                    s.metadata.namespace = Some(namespace_of(&s.metadata.namespace));
                    let key = (namespace_of(&s.metadata.namespace), name);
                    if let Some((_, first)) = objects.secrets.get(&key) {
                        errors.push(with(
                            &origin,
                            format!(
                                "Secret {}/{} is also defined in {} (document {})",
                                key.0,
                                key.1,
                                first.file.display(),
                                first.doc
                            ),
                        ));
                        continue;
                    }
                    objects.secrets.insert(key, (s, origin));
                }
                Err(_) => errors.push(with(&origin, secret_shape_error(&value))),
            },
            _ => {}
        }
    }
}

/// Why a user in the files cannot sign in, as a load error (`None`: fine, or disabled).
fn problem(state: &UserState, key: &ObjKey, origins: &HashMap<ObjKey, DocError>) -> Option<String> {
    let (ns, name) = key;
    let reason = match state {
        UserState::Ready | UserState::Disabled => return None,
        UserState::InvalidSpec(m) => m.clone(),
        UserState::SecretNotFound { secret } | UserState::SecretPending { secret } => {
            format!("spec.passwordRef names Secret {ns}/{secret}, which is not in the users files")
        }
        UserState::PasswordMissing { secret, key } => {
            format!("Secret {ns}/{secret} has no key {key:?}")
        }
        UserState::PasswordInvalid {
            secret,
            key,
            reason,
        } => format!("Secret {ns}/{secret} key {key:?}: {reason}"),
        UserState::UsernameConflict { username, holder } => {
            let place = origins
                .get(holder)
                .map(|o| format!("{} (document {})", o.file.display(), o.doc))
                .unwrap_or_else(|| format!("{}/{}", holder.0, holder.1));
            format!("username {username:?} is already used by {place}")
        }
    };
    Some(format!("User {ns}/{name}: {reason}"))
}

/// Parse a snapshot into a directory, through the same resolver as the cluster. The order of
/// the documents decides who keeps a username claimed twice (and that is an error here).
pub fn load(snapshot: &Snapshot) -> Result<UserDirectory, LoadError> {
    let mut objects = Objects::default();
    let mut errors = Vec::new();
    for (file, read) in snapshot.files() {
        match read {
            Err(reason) => errors.push(with(&at(file, 0), reason.clone())),
            Ok(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => read_documents(file, text, &mut objects, &mut errors),
                Err(_) => errors.push(with(&at(file, 0), "not UTF-8 text")),
            },
        }
    }
    let mut index = UserIndex::default();
    let mut origins: HashMap<ObjKey, DocError> = HashMap::new();
    let mut order = Vec::new();
    for (rank, (user, origin)) in objects.users.into_iter().enumerate() {
        let key = key_of(&user);
        if let Some(first) = origins.get(&key) {
            errors.push(with(
                &origin,
                format!(
                    "User {}/{} is also defined in {} (document {})",
                    key.0,
                    key.1,
                    first.file.display(),
                    first.doc
                ),
            ));
            continue;
        }
        origins.insert(key.clone(), origin);
        order.push(key.clone());
        index.apply_user(user, (rank as i64, key));
    }
    let secrets: Vec<Secret> = objects.secrets.into_values().map(|(s, _)| s).collect();
    index.replace_secrets(None, &secrets);
    index.mark_secrets_listed();
    index.resolve();
    for key in &order {
        if let (Some(outcome), Some(origin)) = (index.outcome(key), origins.get(key))
            && let Some(reason) = problem(&outcome.state, key, &origins)
        {
            errors.push(with(origin, reason));
        }
    }
    if !errors.is_empty() {
        return Err(LoadError(errors));
    }
    // Made now, so that no login pays for it.
    latchkey_core::password::decoy();
    Ok(index.directory().clone())
}

/// APK's sample non-production users, as its inbuilt IdP's configuration ships them:
/// `admin` (password `admin`, organization `org1`) and `user1` (password `user1`, no
/// organization). Their hashes are made at start, through the same resolver as files.
pub fn apk_samples() -> Result<UserDirectory, Error> {
    let mut index = UserIndex::default();
    let mut secrets = Vec::new();
    for (rank, (name, organizations)) in [("admin", vec!["org1"]), ("user1", vec![])]
        .into_iter()
        .enumerate()
    {
        let hash = PasswordHash::new(name.as_bytes())?;
        let secret_name = format!("{name}-password");
        let mut secret = Secret::default();
        secret.metadata.name = Some(secret_name.clone());
        secret.metadata.namespace = Some("default".into());
        secret.string_data = Some([("passwordHash".to_owned(), hash.as_phc().to_owned())].into());
        secrets.push(secret);
        let mut user = User::new(
            name,
            UserSpec {
                username: name.into(),
                organizations: organizations.into_iter().map(str::to_owned).collect(),
                password_ref: PasswordRef {
                    name: secret_name,
                    key: "passwordHash".into(),
                },
                ..UserSpec::default()
            },
        );
        user.metadata.namespace = Some("default".into());
        let key = key_of(&user);
        index.apply_user(user, (rank as i64, key));
    }
    index.replace_secrets(None, &secrets);
    index.mark_secrets_listed();
    index.resolve();
    latchkey_core::password::decoy();
    Ok(index.directory().clone())
}

/// Reloads the users whenever the manifests' content changes; a failed load keeps the last
/// good directory. Like the clients' reload, a change is taken once it has settled.
pub struct Reload {
    pub path: PathBuf,
    pub every: Duration,
    pub directory: Arc<ArcSwap<UserDirectory>>,
    pub metrics: Arc<Metrics>,
}

impl Reload {
    async fn snapshot(&self) -> Option<Snapshot> {
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || read_snapshot(&path)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "users reload task failed");
                None
            }
        }
    }

    fn failed(&self, e: &LoadError) {
        self.metrics.observe_reload("users", false);
        for problem in &e.0 {
            tracing::error!(
                file = %problem.file.display(),
                document = problem.doc,
                reason = %problem.reason,
                "users not reloaded; the last good users keep serving"
            );
        }
    }

    pub async fn run(self, mut loaded: Option<[u8; 32]>, mut shutdown: watch::Receiver<bool>) {
        let settle = (self.every / 2).min(Duration::from_millis(250));
        let mut tick = tokio::time::interval(self.every);
        let mut failed: Option<[u8; 32]> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(first) = self.snapshot().await else {
                continue;
            };
            let digest = first.digest();
            if Some(digest) == loaded || Some(digest) == failed {
                continue;
            }
            tokio::time::sleep(settle).await;
            let Some(settled) = self.snapshot().await else {
                continue;
            };
            if settled.digest() != digest {
                continue;
            }
            // Argon2 parameters are checked, not run, on load: this is cheap.
            match load(&settled) {
                Ok(directory) => {
                    loaded = Some(digest);
                    failed = None;
                    tracing::info!(path = %self.path.display(), users = directory.len(), "users reloaded");
                    self.metrics.observe_users(directory.len());
                    self.metrics.observe_reload("users", true);
                    self.directory.store(Arc::new(directory));
                }
                Err(e) => {
                    failed = Some(digest);
                    self.failed(&e);
                }
            }
        }
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

    fn user_doc(name: &str, username: &str, secret: &str) -> String {
        format!(
            "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: {name}, namespace: apps }}\n\
             spec:\n  username: {username}\n  organizations: [org1]\n  passwordRef: {{ name: {secret} }}\n"
        )
    }

    fn secret_doc(name: &str, value: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: apps }}\n\
             stringData:\n  passwordHash: '{value}'\n"
        )
    }

    fn load_dir(dir: &Path) -> Result<UserDirectory, LoadError> {
        load(&read_snapshot(dir).unwrap())
    }

    #[test]
    fn users_load_beside_clients_and_other_kinds() {
        let hash = PasswordHash::new(b"pw").unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "users.yaml",
            &format!(
                "{}---\n{}---\napiVersion: latchkey.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{ name: c }}\nspec: {{ clientId: c }}\n",
                user_doc("alice", "alice", "alice-pw"),
                secret_doc("alice-pw", hash.as_phc())
            ),
        );
        let d = load_dir(dir.path()).unwrap();
        assert_eq!(d.len(), 1);
        let alice = d.authenticate("alice", b"pw").unwrap();
        assert_eq!(alice.organizations, ["org1"]);
        assert_eq!(alice.origin, "apps/alice");
    }

    #[test]
    fn every_problem_names_file_and_document_and_never_a_value() {
        let hash = PasswordHash::new(b"pw").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "u.yaml",
            &format!(
                "{}---\n{}---\n{}---\n{}---\n{}---\n{}",
                user_doc("a", "alice", "a-pw"),
                secret_doc("a-pw", hash.as_phc()),
                user_doc("b", "alice", "a-pw"),
                user_doc("c", "carol", "missing"),
                user_doc("d", "dave", "d-pw"),
                secret_doc("d-pw", "plaintext-password-value"),
            ),
        );
        let e = load_dir(dir.path()).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.0.len(), 3, "{text}");
        assert!(e.0.iter().all(|d| d.file == p));
        assert_eq!(e.0.iter().map(|d| d.doc).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(
            text.contains("username \"alice\" is already used by"),
            "{text}"
        );
        assert!(
            text.contains("Secret apps/missing, which is not in the users files"),
            "{text}"
        );
        assert!(text.contains("not an Argon2id PHC string"), "{text}");
        assert!(!text.contains("plaintext-password-value"), "{text}");
        assert!(!text.contains(hash.as_phc()), "{text}");
    }

    #[test]
    fn wrong_api_version_and_invalid_specs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "u.yaml",
            "apiVersion: latchkey.dev/v1\nkind: User\nmetadata: { name: a }\nspec: { username: a, passwordRef: { name: a } }\n---\n\
             apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: { name: b }\nspec: { username: 'b c', passwordRef: { name: b } }\n",
        );
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("User apiVersion must be latchkey.dev/v1alpha1"),
            "{e}"
        );
        assert!(e.contains("User default/b: spec.username:"), "{e}");
    }

    #[test]
    fn apk_samples_sign_in_with_their_documented_passwords() {
        let d = apk_samples().unwrap();
        assert_eq!(d.len(), 2);
        let admin = d.authenticate("admin", b"admin").unwrap();
        assert_eq!(admin.organizations, ["org1"]);
        let user1 = d.authenticate("user1", b"user1").unwrap();
        assert!(user1.organizations.is_empty());
        assert!(d.authenticate("admin", b"user1").is_none());
        assert_ne!(admin.id, user1.id);
    }
}
