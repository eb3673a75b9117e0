//! The in-memory index of watched objects and its resolution into a client registry plus one
//! outcome per `OAuthClient`. Pure: events are applied by the watch task, and `resolve` is a
//! function of the index alone.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use latchkey_api::{OAuthClient, secret};
use latchkey_core::{ClientRecord, Registry};

/// `(namespace, name)` of an object.
pub type ObjKey = (String, String);

/// Label on Secrets Latchkey generates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "latchkey";

pub fn key_of<K: ResourceExt>(obj: &K) -> ObjKey {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// What is kept of a Secret: its data (stringData folded in) and whether Latchkey made it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEntry {
    pub data: BTreeMap<String, Vec<u8>>,
    pub managed: bool,
}

impl std::fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("managed", &self.managed)
            .finish()
    }
}

impl SecretEntry {
    pub fn from_secret(s: &Secret) -> SecretEntry {
        let mut data: BTreeMap<String, Vec<u8>> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in s.string_data.iter().flatten() {
            data.insert(k.clone(), v.as_bytes().to_vec());
        }
        let managed = s
            .labels()
            .get(MANAGED_BY_LABEL)
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        SecretEntry { data, managed }
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }
}

/// Why a client does not issue tokens (or that it does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    Registered,
    Disabled,
    InvalidSpec(String),
    /// The referenced Secret does not exist.
    SecretNotFound {
        secret: String,
    },
    SecretKeyMissing {
        secret: String,
        key: String,
    },
    /// No `spec.clientId` and the Secret has no `clientId` key.
    ClientIdMissing {
        secret: String,
    },
    /// Credentials are still to be generated, or a Secret's existence is not known yet.
    CredentialsPending {
        secret: String,
    },
    /// An older OAuthClient holds this client id.
    ClientIdConflict {
        client_id: String,
        holder: ObjKey,
    },
}

/// What resolution says about one OAuthClient.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub client: Arc<OAuthClient>,
    pub client_id: Option<String>,
    pub secret_name: String,
    pub state: ClientState,
}

/// Generated credentials the Lease holder must create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsToCreate {
    pub owner: ObjKey,
    pub secret_name: String,
    pub client_id: String,
    /// True when the client had credentials before (its generated Secret was deleted).
    pub recreate: bool,
}

/// The index resolved: the registry every replica serves, and per-client outcomes.
#[derive(Debug)]
pub struct Resolution {
    pub registry: Registry,
    pub outcomes: Vec<Outcome>,
    pub to_create: Vec<CredentialsToCreate>,
}

/// Watched state. Secret data is kept only when some client needs it or Latchkey made it;
/// the names of all watched Secrets are kept, so existence is known without asking.
#[derive(Debug, Default)]
pub struct Index {
    clients: BTreeMap<ObjKey, Arc<OAuthClient>>,
    /// How many clients read each Secret.
    wanted: HashMap<ObjKey, usize>,
    secrets: HashMap<ObjKey, SecretEntry>,
    /// Every Secret that exists in the watched namespaces.
    secret_names: HashSet<ObjKey>,
    /// Whether the Secrets have been listed (before that, a missing one may just be unseen).
    secrets_listed: bool,
}

fn in_scope(key: &ObjKey, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| key.0 == ns)
}

/// The Secret an OAuthClient reads its credentials from, and the key of the secret value.
pub fn secret_of(client: &OAuthClient) -> (ObjKey, String) {
    let ns = client.namespace().unwrap_or_default();
    match &client.spec.secret_ref {
        Some(r) => ((ns, r.name.clone()), r.key.clone()),
        None => (
            (ns, secret::generated_name(&client.name_any())),
            secret::DEFAULT_SECRET_KEY.to_owned(),
        ),
    }
}

impl Index {
    pub fn clients(&self) -> impl Iterator<Item = &Arc<OAuthClient>> {
        self.clients.values()
    }

    pub fn client(&self, key: &ObjKey) -> Option<&Arc<OAuthClient>> {
        self.clients.get(key)
    }

    pub fn secret(&self, key: &ObjKey) -> Option<&SecretEntry> {
        self.secrets.get(key)
    }

    fn unwant(&mut self, client: &OAuthClient) {
        let key = secret_of(client).0;
        if let Some(n) = self.wanted.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.wanted.remove(&key);
            }
        }
    }

    pub fn apply_client(&mut self, client: OAuthClient) {
        *self.wanted.entry(secret_of(&client).0).or_default() += 1;
        if let Some(old) = self.clients.insert(key_of(&client), Arc::new(client)) {
            self.unwant(&old);
        }
    }

    pub fn delete_client(&mut self, key: &ObjKey) {
        if let Some(old) = self.clients.remove(key) {
            self.unwant(&old);
        }
        self.forget_unneeded();
    }

    /// Replace every client in `namespace` (all when `None`) by a relisted set.
    pub fn replace_clients(&mut self, namespace: Option<&str>, list: Vec<OAuthClient>) {
        self.clients.retain(|k, _| !in_scope(k, namespace));
        for c in list {
            self.clients.insert(key_of(&c), Arc::new(c));
        }
        self.wanted.clear();
        for c in self.clients.values() {
            *self.wanted.entry(secret_of(c).0).or_default() += 1;
        }
        self.forget_unneeded();
    }

    /// Whether any client reads this Secret.
    pub fn secret_wanted(&self, key: &ObjKey) -> bool {
        self.wanted.contains_key(key)
    }

    /// Record a Secret seen by the watch; its data is kept when it could matter.
    pub fn apply_secret(&mut self, s: &Secret) {
        let key = key_of(s);
        self.secret_names.insert(key.clone());
        self.keep_if_needed(key, s);
    }

    fn keep_if_needed(&mut self, key: ObjKey, s: &Secret) {
        let entry = SecretEntry::from_secret(s);
        if entry.managed || self.secret_wanted(&key) {
            self.secrets.insert(key, entry);
        } else {
            self.secrets.remove(&key);
        }
    }

    pub fn delete_secret(&mut self, key: &ObjKey) {
        self.secrets.remove(key);
        self.secret_names.remove(key);
    }

    /// Record the answer of a direct read: `None` for not found.
    pub fn fetched_secret(&mut self, key: &ObjKey, s: Option<&Secret>) {
        match s {
            // A watch event may already have brought a version at least as new.
            Some(s) if !self.secrets.contains_key(key) => self.apply_secret(s),
            Some(_) => {}
            None => self.delete_secret(key),
        }
    }

    /// Replace every Secret in `namespace` (all when `None`) by a relisted set: `names` are
    /// all that exist there, `keep` those whose data could matter.
    pub fn replace_secrets(
        &mut self,
        namespace: Option<&str>,
        names: Vec<ObjKey>,
        keep: &[Secret],
    ) {
        self.secrets.retain(|k, _| !in_scope(k, namespace));
        self.secret_names.retain(|k| !in_scope(k, namespace));
        self.secret_names.extend(names);
        for s in keep {
            self.apply_secret(s);
        }
    }

    /// All Secrets have been listed once: from now on, a Secret not seen does not exist.
    pub fn mark_secrets_listed(&mut self) {
        self.secrets_listed = true;
    }

    /// Referenced Secrets that exist but whose data was not kept (they were not needed when
    /// seen): read them directly.
    pub fn unknown_secrets(&self) -> Vec<ObjKey> {
        let mut keys: Vec<ObjKey> = self
            .wanted
            .keys()
            .filter(|k| !self.secrets.contains_key(*k) && self.secret_names.contains(*k))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Whether a Secret is known not to exist.
    fn absent(&self, key: &ObjKey) -> bool {
        self.secrets_listed && !self.secret_names.contains(key)
    }

    fn forget_unneeded(&mut self) {
        let wanted = &self.wanted;
        self.secrets
            .retain(|k, e| e.managed || wanted.contains_key(k));
    }

    /// Resolve every client: credentials, client id, conflicts, and the registry.
    pub fn resolve(&self) -> Resolution {
        // Oldest first, so the oldest claimant keeps a client id; ties by namespace/name.
        let mut clients: Vec<&Arc<OAuthClient>> = self.clients.values().collect();
        clients.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
                .then_with(|| key_of(a.as_ref()).cmp(&key_of(b.as_ref())))
        });
        let mut holders: HashMap<String, ObjKey> = HashMap::new();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(clients.len());
        let mut to_create = Vec::new();
        for client in clients {
            let (outcome, record, create) = self.resolve_one(client, &mut holders);
            if let Some(r) = record {
                records.push(r);
            }
            if let Some(c) = create {
                to_create.push(c);
            }
            outcomes.push(outcome);
        }
        // Ids are unique by construction (conflicts were resolved above).
        let registry = Registry::new(records).unwrap_or_default();
        Resolution {
            registry,
            outcomes,
            to_create,
        }
    }

    fn resolve_one(
        &self,
        client: &Arc<OAuthClient>,
        holders: &mut HashMap<String, ObjKey>,
    ) -> (Outcome, Option<ClientRecord>, Option<CredentialsToCreate>) {
        let key = key_of(client.as_ref());
        let (secret_key, value_key) = secret_of(client);
        let secret_name = secret_key.1.clone();
        let generated = client.spec.secret_ref.is_none();
        let entry = self.secrets.get(&secret_key);
        let status_id = client.status.as_ref().and_then(|s| s.client_id.clone());
        // The id this client claims: its spec, else its credentials Secret, else its status.
        let secret_id = entry
            .and_then(|e| e.get(secret::CLIENT_ID_KEY))
            .and_then(|v| String::from_utf8(v.to_vec()).ok());
        let claimed = client
            .spec
            .client_id
            .clone()
            .or(secret_id)
            .or_else(|| status_id.clone());
        let outcome = |client_id: Option<String>, state| Outcome {
            client: client.clone(),
            client_id,
            secret_name: secret_name.clone(),
            state,
        };
        if let Some(id) = &claimed {
            match holders.get(id) {
                Some(holder) if *holder != key => {
                    let state = ClientState::ClientIdConflict {
                        client_id: id.clone(),
                        holder: holder.clone(),
                    };
                    return (outcome(claimed.clone(), state), None, None);
                }
                _ => {
                    holders.insert(id.clone(), key.clone());
                }
            }
        }
        if let Err(e) = latchkey_api::convert::validate(&client.spec) {
            return (
                outcome(claimed, ClientState::InvalidSpec(e.to_string())),
                None,
                None,
            );
        }
        let Some(entry) = entry else {
            if !self.absent(&secret_key) {
                return (
                    outcome(
                        claimed,
                        ClientState::CredentialsPending {
                            secret: secret_name.clone(),
                        },
                    ),
                    None,
                    None,
                );
            }
            if generated {
                let client_id = claimed
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let create = CredentialsToCreate {
                    owner: key.clone(),
                    secret_name: secret_name.clone(),
                    client_id: client_id.clone(),
                    recreate: status_id.is_some(),
                };
                let state = ClientState::CredentialsPending {
                    secret: secret_name.clone(),
                };
                return (outcome(Some(client_id), state), None, Some(create));
            }
            return (
                outcome(
                    claimed,
                    ClientState::SecretNotFound {
                        secret: secret_name.clone(),
                    },
                ),
                None,
                None,
            );
        };
        let Some(secret_value) = entry.get(&value_key) else {
            let state = ClientState::SecretKeyMissing {
                secret: secret_name.clone(),
                key: value_key,
            };
            return (outcome(claimed, state), None, None);
        };
        let Some(client_id) = claimed else {
            return (
                outcome(
                    None,
                    ClientState::ClientIdMissing {
                        secret: secret_name.clone(),
                    },
                ),
                None,
                None,
            );
        };
        let origin = format!("{}/{}", key.0, key.1);
        let record = latchkey_api::client_spec(&client.spec, &client_id, secret_value, origin)
            .map_err(|e| e.to_string())
            .and_then(|spec| ClientRecord::new(spec).map_err(|e| e.to_string()));
        match record {
            Err(reason) => (
                outcome(Some(client_id), ClientState::InvalidSpec(reason)),
                None,
                None,
            ),
            Ok(record) => {
                let state = if client.spec.disabled {
                    ClientState::Disabled
                } else {
                    ClientState::Registered
                };
                (outcome(Some(client_id), state), Some(record), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::Time};
    use latchkey_api::{OAuthClientSpec, OAuthClientStatus, SecretKeyRef};

    fn client(ns: &str, name: &str, spec: OAuthClientSpec, created: i64) -> OAuthClient {
        let mut c = OAuthClient::new(name, spec);
        c.metadata.namespace = Some(ns.into());
        c.metadata.uid = Some(format!("uid-{ns}-{name}"));
        c.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).unwrap(),
        ));
        c
    }

    fn spec(id: Option<&str>, secret_ref: Option<&str>) -> OAuthClientSpec {
        serde_json::from_value(serde_json::json!({}))
            .map(|mut s: OAuthClientSpec| {
                s.client_id = id.map(str::to_owned);
                s.secret_ref = secret_ref.map(|n| SecretKeyRef {
                    name: n.into(),
                    key: "clientSecret".into(),
                });
                s
            })
            .unwrap()
    }

    fn secret(ns: &str, name: &str, data: &[(&str, &str)], managed: bool) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        if managed {
            s.metadata.labels =
                Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into());
        }
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    fn state_of(r: &Resolution, name: &str) -> ClientState {
        r.outcomes
            .iter()
            .find(|o| o.client.name_any() == name)
            .unwrap()
            .state
            .clone()
    }

    #[test]
    fn a_secret_ref_client_registers_once_its_secret_is_seen() {
        let mut ix = Index::default();
        ix.apply_client(client("apps", "a", spec(Some("a-id"), Some("a-s")), 1));
        // Before the Secrets are listed, a missing one may just be unseen.
        assert_eq!(
            state_of(&ix.resolve(), "a"),
            ClientState::CredentialsPending {
                secret: "a-s".into()
            }
        );
        ix.replace_secrets(None, vec![], &[]);
        ix.mark_secrets_listed();
        assert_eq!(
            state_of(&ix.resolve(), "a"),
            ClientState::SecretNotFound {
                secret: "a-s".into()
            }
        );
        ix.apply_secret(&secret("apps", "a-s", &[("clientSecret", "pw")], false));
        let r = ix.resolve();
        assert_eq!(state_of(&r, "a"), ClientState::Registered);
        assert!(r.registry.authenticate("a-id", b"pw").is_ok());
        // Rotation: the new value replaces the old at once.
        ix.apply_secret(&secret("apps", "a-s", &[("clientSecret", "pw2")], false));
        let r = ix.resolve();
        assert!(r.registry.authenticate("a-id", b"pw").is_err());
        assert!(r.registry.authenticate("a-id", b"pw2").is_ok());
        // Deleted: not found.
        ix.delete_secret(&("apps".into(), "a-s".into()));
        assert_eq!(
            state_of(&ix.resolve(), "a"),
            ClientState::SecretNotFound {
                secret: "a-s".into()
            }
        );
    }

    #[test]
    fn unrelated_secrets_are_not_kept_but_read_when_a_client_needs_them() {
        let mut ix = Index::default();
        ix.mark_secrets_listed();
        ix.apply_secret(&secret("apps", "other", &[("x", "y")], false));
        assert!(ix.secret(&("apps".into(), "other".into())).is_none());
        assert!(ix.unknown_secrets().is_empty());
        ix.apply_client(client("apps", "late", spec(Some("late"), Some("other")), 1));
        assert_eq!(ix.unknown_secrets(), vec![("apps".into(), "other".into())]);
        assert!(matches!(
            state_of(&ix.resolve(), "late"),
            ClientState::CredentialsPending { .. }
        ));
        ix.fetched_secret(
            &("apps".into(), "other".into()),
            Some(&secret("apps", "other", &[("clientSecret", "y")], false)),
        );
        assert_eq!(state_of(&ix.resolve(), "late"), ClientState::Registered);
        ix.apply_secret(&secret("apps", "gen-credentials", &[("x", "y")], true));
        assert!(
            ix.secret(&("apps".into(), "gen-credentials".into()))
                .is_some()
        );
    }

    #[test]
    fn generated_credentials_are_requested_when_absent_and_read_when_present() {
        let mut ix = Index::default();
        ix.apply_client(client("apps", "gw", spec(None, None), 1));
        ix.mark_secrets_listed();
        assert!(
            ix.unknown_secrets().is_empty(),
            "no need to ask: the watch would have seen it"
        );
        let r = ix.resolve();
        assert_eq!(r.to_create.len(), 1);
        let create = &r.to_create[0];
        assert_eq!(create.secret_name, "gw-credentials");
        assert!(!create.recreate);
        assert!(uuid::Uuid::parse_str(&create.client_id).is_ok());
        ix.apply_secret(&secret(
            "apps",
            "gw-credentials",
            &[("clientId", "gen-id"), ("clientSecret", "s")],
            true,
        ));
        let r = ix.resolve();
        assert!(r.to_create.is_empty());
        assert!(r.registry.authenticate("gen-id", b"s").is_ok());
    }

    #[test]
    fn a_deleted_generated_secret_is_recreated_with_the_same_client_id() {
        let mut ix = Index::default();
        let mut c = client("apps", "gw", spec(None, None), 1);
        c.status = Some(OAuthClientStatus {
            client_id: Some("kept-id".into()),
            ..Default::default()
        });
        ix.apply_client(c);
        ix.mark_secrets_listed();
        ix.apply_secret(&secret(
            "apps",
            "gw-credentials",
            &[("clientId", "kept-id"), ("clientSecret", "s")],
            true,
        ));
        assert!(ix.resolve().to_create.is_empty());
        ix.delete_secret(&("apps".into(), "gw-credentials".into()));
        let r = ix.resolve();
        assert_eq!(r.to_create[0].client_id, "kept-id");
        assert!(r.to_create[0].recreate);
    }

    #[test]
    fn the_oldest_claimant_keeps_a_client_id() {
        let mut ix = Index::default();
        ix.apply_client(client("b", "young", spec(Some("shared"), Some("s")), 20));
        ix.apply_client(client("a", "old", spec(Some("shared"), Some("s")), 10));
        ix.apply_secret(&secret("a", "s", &[("clientSecret", "old-pw")], false));
        ix.apply_secret(&secret("b", "s", &[("clientSecret", "young-pw")], false));
        let r = ix.resolve();
        assert_eq!(state_of(&r, "old"), ClientState::Registered);
        assert_eq!(
            state_of(&r, "young"),
            ClientState::ClientIdConflict {
                client_id: "shared".into(),
                holder: ("a".into(), "old".into())
            }
        );
        assert!(r.registry.authenticate("shared", b"old-pw").is_ok());
        assert!(r.registry.authenticate("shared", b"young-pw").is_err());
        // The holder keeps its id even while its own secret is missing.
        ix.delete_secret(&("a".into(), "s".into()));
        let r = ix.resolve();
        assert!(matches!(
            state_of(&r, "young"),
            ClientState::ClientIdConflict { .. }
        ));
        // Once the holder is gone the other one takes the id.
        ix.delete_client(&("a".into(), "old".into()));
        assert_eq!(state_of(&ix.resolve(), "young"), ClientState::Registered);
    }

    #[test]
    fn disabled_invalid_and_missing_pieces_are_reported() {
        let mut ix = Index::default();
        let mut off = spec(Some("off"), Some("s"));
        off.disabled = true;
        ix.apply_client(client("n", "off", off, 1));
        let mut bad = spec(Some("bad"), Some("s"));
        bad.claims.insert("iss".into(), "me".into());
        ix.apply_client(client("n", "bad", bad, 2));
        ix.apply_client(client("n", "nokey", spec(Some("nokey"), Some("t")), 3));
        ix.apply_client(client("n", "noid", spec(None, Some("s")), 4));
        ix.apply_secret(&secret("n", "s", &[("clientSecret", "pw")], false));
        ix.apply_secret(&secret("n", "t", &[("other", "pw")], false));
        let r = ix.resolve();
        assert_eq!(state_of(&r, "off"), ClientState::Disabled);
        assert!(r.registry.authenticate("off", b"pw").is_err());
        assert!(
            matches!(state_of(&r, "bad"), ClientState::InvalidSpec(m) if m.contains("spec.claims"))
        );
        assert_eq!(
            state_of(&r, "nokey"),
            ClientState::SecretKeyMissing {
                secret: "t".into(),
                key: "clientSecret".into()
            }
        );
        assert_eq!(
            state_of(&r, "noid"),
            ClientState::ClientIdMissing { secret: "s".into() }
        );
    }

    #[test]
    fn wanted_secrets_follow_client_edits_and_deletes() {
        let mut ix = Index::default();
        ix.apply_client(client("a", "x", spec(Some("x"), Some("s1")), 1));
        ix.apply_client(client("a", "y", spec(Some("y"), Some("s1")), 1));
        assert!(ix.secret_wanted(&("a".into(), "s1".into())));
        ix.apply_client(client("a", "x", spec(Some("x"), Some("s2")), 1));
        assert!(
            ix.secret_wanted(&("a".into(), "s1".into())),
            "y still reads s1"
        );
        assert!(ix.secret_wanted(&("a".into(), "s2".into())));
        ix.delete_client(&("a".into(), "y".into()));
        assert!(!ix.secret_wanted(&("a".into(), "s1".into())));
        ix.replace_clients(None, vec![]);
        assert!(!ix.secret_wanted(&("a".into(), "s2".into())));
    }

    #[test]
    fn a_relist_replaces_only_its_scope() {
        let mut ix = Index::default();
        ix.apply_client(client("a", "x", spec(Some("x"), Some("s")), 1));
        ix.apply_client(client("b", "y", spec(Some("y"), Some("s")), 1));
        ix.replace_clients(Some("a"), vec![]);
        assert_eq!(ix.clients().count(), 1);
        let s = secret("b", "s", &[("clientSecret", "pw")], false);
        ix.replace_secrets(None, vec![key_of(&s)], &[s]);
        ix.mark_secrets_listed();
        assert!(ix.resolve().registry.authenticate("y", b"pw").is_ok());
        ix.replace_secrets(Some("b"), vec![], &[]);
        assert_eq!(
            state_of(&ix.resolve(), "y"),
            ClientState::SecretNotFound { secret: "s".into() }
        );
    }
}
