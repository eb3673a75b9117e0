//! The one client resolver of both run modes: which Secret and key an `OAuthClient` reads,
//! which client id it gets when several claim one, and the core record it becomes. The
//! operator feeds it from watches, standalone mode from files; both read the same outcomes.
//!
//! It is incremental: a change marks only the clients it can affect (the client itself, the
//! readers of a changed Secret, the other claimants of a client id whose holder changed), and
//! the registry is a persistent map updated in place, so one change in a registry of 10,000
//! clients costs microseconds, not a rebuild. Secret values are kept only as keyed digests.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use latchkey_core::{ClientRecord, Registry, SecretDigest};

use crate::{OAuthClient, secret_data};

/// `(namespace, name)` of an object.
pub type ObjKey = (String, String);

/// Issue 13: annotation on an OAuthClient revoking every token issued to it before a time
/// (RFC 3339): bulk revocation, seen by introspection.
pub const REVOKE_BEFORE_ANNOTATION: &str = "latchkey.dev/revoke-tokens-before";

/// Issue 13: the bulk revocation time an OAuthClient's annotation states, if any.
pub fn revoke_before(client: &OAuthClient) -> Result<Option<std::time::SystemTime>, String> {
    let Some(text) = client.annotations().get(REVOKE_BEFORE_ANNOTATION) else {
        return Ok(None);
    };
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| {
            Some(system_time(
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t),
            ))
        })
        .map_err(|_| {
            format!("annotation {REVOKE_BEFORE_ANNOTATION}: {text:?} is not an RFC 3339 time")
        })
}

/// Label on Secrets Latchkey generates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "latchkey";

pub fn key_of<K: ResourceExt>(obj: &K) -> ObjKey {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

/// A client's place in the queue for a client id: the lowest rank holds it. In a cluster the
/// creation time (then namespace/name), so the oldest claimant keeps its id; in files, the
/// order of the documents.
pub type Rank = (i64, ObjKey);

/// The rank of an object from the API server: its creation time, then its key.
pub fn creation_rank(client: &OAuthClient) -> Rank {
    let created = client
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(i64::MIN, |t| t.0.as_second());
    (created, key_of(client))
}

/// One kept value of a Secret: its digest, or that it is empty.
#[derive(Clone, PartialEq, Eq)]
enum Kept {
    Digest(SecretDigest),
    Empty,
}

/// What is kept of a Secret: a keyed digest of every value (never the value itself), its
/// `clientId` in clear (an id is not a secret), and whether Latchkey made it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretEntry {
    values: BTreeMap<String, Kept>,
    client_id: Option<String>,
    pub managed: bool,
}

impl std::fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretEntry")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("managed", &self.managed)
            .finish()
    }
}

impl SecretEntry {
    pub fn from_secret(s: &Secret) -> SecretEntry {
        let mut raw: BTreeMap<&str, &[u8]> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.0.as_slice()))
            .collect();
        // stringData wins, as in the API server.
        for (k, v) in s.string_data.iter().flatten() {
            raw.insert(k.as_str(), v.as_bytes());
        }
        let client_id = raw
            .get(secret_data::CLIENT_ID_KEY)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned);
        let values = raw
            .into_iter()
            .map(|(k, v)| {
                let kept = SecretDigest::of_secret(v).map_or(Kept::Empty, Kept::Digest);
                (k.to_owned(), kept)
            })
            .collect();
        SecretEntry {
            values,
            client_id,
            managed: is_managed(s),
        }
    }
}

/// Whether Latchkey made this Secret (its label says so).
pub fn is_managed(s: &Secret) -> bool {
    s.labels()
        .get(MANAGED_BY_LABEL)
        .is_some_and(|v| v == MANAGED_BY_VALUE)
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
    /// A client ranked before this one holds this client id.
    ClientIdConflict {
        client_id: String,
        holder: ObjKey,
    },
}

impl ClientState {
    /// Whether the client serves (or, disabled, is meant to serve nothing).
    pub fn is_settled(&self) -> bool {
        matches!(self, ClientState::Registered | ClientState::Disabled)
    }
}

/// What resolution says about one OAuthClient.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub client: Arc<OAuthClient>,
    pub client_id: Option<String>,
    pub secret_name: String,
    pub state: ClientState,
    // Issue 13: secret rotation.
    pub previous_secret: PreviousSecretState,
}

// Issue 13: secret rotation.
/// What became of a registered client's `spec.previousSecret`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum PreviousSecretState {
    /// None asked for (or the client is not registered).
    #[default]
    None,
    /// Its key is not in the Secret, or empty: only the current secret is accepted.
    KeyMissing { key: String },
    /// Accepted until this instant (which may have passed).
    Until(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
}

/// A Kubernetes time as a `SystemTime` (an instant before 1970 as the epoch: long past).
pub fn system_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> std::time::SystemTime {
    let ts = t.0;
    match u64::try_from(ts.as_second()) {
        Ok(secs) => {
            std::time::UNIX_EPOCH
                + std::time::Duration::new(secs, ts.subsec_nanosecond().max(0) as u32)
        }
        Err(_) => std::time::UNIX_EPOCH,
    }
}

/// Generated credentials to create (by the Lease holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsToCreate {
    pub owner: ObjKey,
    pub secret_name: String,
    pub client_id: String,
    /// True when the client had credentials before (its generated Secret was deleted).
    pub recreate: bool,
}

/// The Secret an OAuthClient reads its credentials from, and the key of the secret value.
pub fn credentials_ref(client: &OAuthClient) -> (ObjKey, String) {
    let ns = client.namespace().unwrap_or_default();
    match &client.spec.secret_ref {
        Some(r) => ((ns, r.name.clone()), r.key.clone()),
        None => (
            (ns, secret_data::generated_name(&client.name_any())),
            secret_data::DEFAULT_SECRET_KEY.to_owned(),
        ),
    }
}

/// What is known of a client's Secret.
enum Lookup<'a> {
    Found(&'a SecretEntry),
    /// Known not to exist.
    Absent,
    /// Not seen (yet), or seen but its data not read.
    Unknown,
}

struct Entry {
    client: Arc<OAuthClient>,
    rank: Rank,
}

/// A client's last resolution.
struct Resolved {
    outcome: Outcome,
    create: Option<CredentialsToCreate>,
}

/// Watched (or read) objects and what they resolve to.
#[derive(Default)]
pub struct ClientIndex {
    clients: HashMap<ObjKey, Entry>,
    /// The clients that read each Secret.
    readers: HashMap<ObjKey, BTreeSet<ObjKey>>,
    /// Data of the Secrets that a client reads or that Latchkey made.
    secrets: HashMap<ObjKey, SecretEntry>,
    /// Every Secret that exists in the watched namespaces.
    secret_names: HashSet<ObjKey>,
    /// Whether the Secrets have been listed (before that, a missing one may just be unseen).
    secrets_listed: bool,
    /// Who claims each client id, lowest rank (the holder) first.
    claims: HashMap<String, BTreeSet<Rank>>,
    /// The client id each client claims now.
    claim_of: HashMap<ObjKey, String>,
    /// Which client put each client id into the registry, and the other way round.
    owner_of: HashMap<String, ObjKey>,
    registered: HashMap<ObjKey, String>,
    resolved: HashMap<ObjKey, Resolved>,
    registry: Registry,
    /// Clients to resolve again.
    dirty: BTreeSet<ObjKey>,
    /// Clients whose outcome may have changed since [`ClientIndex::take_changed`].
    changed: BTreeSet<ObjKey>,
}

impl std::fmt::Debug for ClientIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIndex")
            .field("clients", &self.clients.len())
            .field("secrets", &self.secrets.len())
            .field("registered", &self.registry.len())
            .finish_non_exhaustive()
    }
}

fn in_scope(key: &ObjKey, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| key.0 == ns)
}

impl ClientIndex {
    pub fn client(&self, key: &ObjKey) -> Option<&Arc<OAuthClient>> {
        self.clients.get(key).map(|e| &e.client)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Arc<OAuthClient>> {
        self.clients.values().map(|e| &e.client)
    }

    pub fn secret(&self, key: &ObjKey) -> Option<&SecretEntry> {
        self.secrets.get(key)
    }

    /// Whether any client reads this Secret.
    pub fn secret_wanted(&self, key: &ObjKey) -> bool {
        self.readers.contains_key(key)
    }

    /// The registry of this moment (a cheap copy: it shares its structure).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The outcome of one client, as last resolved.
    pub fn outcome(&self, key: &ObjKey) -> Option<&Outcome> {
        self.resolved.get(key).map(|r| &r.outcome)
    }

    /// Every outcome, as last resolved.
    pub fn outcomes(&self) -> impl Iterator<Item = &Outcome> {
        self.resolved.values().map(|r| &r.outcome)
    }

    /// The generated credentials that are missing.
    pub fn to_create(&self) -> impl Iterator<Item = &CredentialsToCreate> {
        self.resolved.values().filter_map(|r| r.create.as_ref())
    }

    /// The credentials one client is missing, as last resolved.
    pub fn to_create_for(&self, key: &ObjKey) -> Option<&CredentialsToCreate> {
        self.resolved.get(key).and_then(|r| r.create.as_ref())
    }

    /// The clients whose outcome may have changed since the last call (deleted ones included).
    pub fn take_changed(&mut self) -> Vec<ObjKey> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    fn mark_readers(&mut self, secret: &ObjKey) {
        if let Some(readers) = self.readers.get(secret) {
            self.dirty.extend(readers.iter().cloned());
        }
    }

    fn unread(&mut self, client: &ObjKey, secret: &ObjKey) {
        if let Some(readers) = self.readers.get_mut(secret) {
            readers.remove(client);
            if readers.is_empty() {
                self.readers.remove(secret);
                // Nobody reads it any more: keep its data only if Latchkey made it.
                if self.secrets.get(secret).is_some_and(|e| !e.managed) {
                    self.secrets.remove(secret);
                }
            }
        }
    }

    /// Add or replace a client, ranked for client id conflicts. Unchanged objects (a relist)
    /// cost nothing more.
    pub fn apply_client(&mut self, client: OAuthClient, rank: Rank) {
        let key = key_of(&client);
        let secret = credentials_ref(&client).0;
        if let Some(old) = self.clients.get(&key) {
            if *old.client == client && old.rank == rank {
                return;
            }
            let old_secret = credentials_ref(&old.client).0;
            if old_secret != secret {
                self.unread(&key, &old_secret);
            }
        }
        self.readers.entry(secret).or_default().insert(key.clone());
        self.clients.insert(
            key.clone(),
            Entry {
                client: Arc::new(client),
                rank,
            },
        );
        self.dirty.insert(key);
    }

    pub fn delete_client(&mut self, key: &ObjKey) {
        if let Some(old) = self.clients.remove(key) {
            let secret = credentials_ref(&old.client).0;
            self.unread(key, &secret);
            self.dirty.insert(key.clone());
        }
    }

    /// Replace every client in `namespace` (all when `None`) by a relisted set.
    pub fn replace_clients(&mut self, namespace: Option<&str>, list: Vec<(OAuthClient, Rank)>) {
        let listed: HashSet<ObjKey> = list.iter().map(|(c, _)| key_of(c)).collect();
        let gone: Vec<ObjKey> = self
            .clients
            .keys()
            .filter(|k| in_scope(k, namespace) && !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete_client(&key);
        }
        for (client, rank) in list {
            self.apply_client(client, rank);
        }
    }

    /// Record a Secret seen by a watch or read from a file; its data is kept when a client
    /// reads it or Latchkey made it.
    pub fn apply_secret(&mut self, s: &Secret) {
        let key = key_of(s);
        if self.secret_names.insert(key.clone()) {
            self.mark_readers(&key);
        }
        let entry = SecretEntry::from_secret(s);
        if entry.managed || self.secret_wanted(&key) {
            if self.secrets.get(&key) != Some(&entry) {
                self.secrets.insert(key.clone(), entry);
                self.mark_readers(&key);
            }
        } else {
            self.secrets.remove(&key);
        }
    }

    pub fn delete_secret(&mut self, key: &ObjKey) {
        let had_data = self.secrets.remove(key).is_some();
        if self.secret_names.remove(key) || had_data {
            self.mark_readers(key);
        }
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
        let listed: HashSet<ObjKey> = names.into_iter().collect();
        let gone: Vec<ObjKey> = self
            .secret_names
            .iter()
            .chain(self.secrets.keys())
            .filter(|k| in_scope(k, namespace) && !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete_secret(&key);
        }
        for key in listed {
            if self.secret_names.insert(key.clone()) {
                self.mark_readers(&key);
            }
        }
        let kept: HashSet<ObjKey> = keep.iter().map(key_of).collect();
        for s in keep {
            self.apply_secret(s);
        }
        // Listed, but its data is no longer wanted or known: forget the data.
        let stale: Vec<ObjKey> = self
            .secrets
            .keys()
            .filter(|k| in_scope(k, namespace) && !kept.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            self.secrets.remove(&key);
            self.mark_readers(&key);
        }
    }

    /// All Secrets have been listed once: from now on, a Secret not seen does not exist.
    pub fn mark_secrets_listed(&mut self) {
        if !self.secrets_listed {
            self.secrets_listed = true;
            self.dirty.extend(self.clients.keys().cloned());
        }
    }

    /// Secrets a client reads that exist but whose data was not kept (they were not needed
    /// when seen): read them directly.
    pub fn unknown_secrets(&self) -> Vec<ObjKey> {
        let mut keys: Vec<ObjKey> = self
            .readers
            .keys()
            .filter(|k| !self.secrets.contains_key(*k) && self.secret_names.contains(*k))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn lookup(&self, key: &ObjKey) -> Lookup<'_> {
        match self.secrets.get(key) {
            Some(e) => Lookup::Found(e),
            None if self.secrets_listed && !self.secret_names.contains(key) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// Resolve every client a change may have affected; returns how many were resolved.
    pub fn resolve(&mut self) -> usize {
        let mut count = 0;
        while let Some(key) = self.dirty.pop_first() {
            count += 1;
            self.resolve_one(key);
        }
        count
    }

    /// Move `key`'s claim from its old client id to `claimed`, marking the other claimants of
    /// both ids (their holder may change).
    fn set_claim(&mut self, key: &ObjKey, rank: Option<&Rank>, claimed: Option<&String>) {
        let old = self.claim_of.get(key).cloned();
        let old_rank = rank.cloned();
        if old.as_ref() == claimed && rank.is_some() {
            return;
        }
        if let Some(id) = old {
            if let Some(set) = self.claims.get_mut(&id) {
                set.retain(|r| &r.1 != key);
                self.dirty.extend(set.iter().map(|r| r.1.clone()));
                if set.is_empty() {
                    self.claims.remove(&id);
                }
            }
            self.claim_of.remove(key);
        }
        if let (Some(id), Some(rank)) = (claimed, old_rank) {
            let set = self.claims.entry(id.clone()).or_default();
            self.dirty
                .extend(set.iter().map(|r| r.1.clone()).filter(|k| k != key));
            set.insert(rank);
            self.claim_of.insert(key.clone(), id.clone());
        }
    }

    /// Take `key`'s record out of the registry (if it put one there).
    fn unregister(&mut self, key: &ObjKey) {
        if let Some(id) = self.registered.remove(key)
            && self.owner_of.get(&id) == Some(key)
        {
            self.owner_of.remove(&id);
            self.registry.remove(&id);
        }
    }

    fn register(&mut self, key: &ObjKey, record: ClientRecord) {
        let id = record.client_id().to_owned();
        if self.registered.get(key) != Some(&id) {
            self.unregister(key);
        }
        self.owner_of.insert(id.clone(), key.clone());
        self.registered.insert(key.clone(), id);
        self.registry.insert(record);
    }

    fn resolve_one(&mut self, key: ObjKey) {
        self.changed.insert(key.clone());
        let Some(entry) = self.clients.get(&key) else {
            self.set_claim(&key, None, None);
            self.unregister(&key);
            self.resolved.remove(&key);
            return;
        };
        let client = entry.client.clone();
        let rank = entry.rank.clone();
        let secret_key = credentials_ref(&client).0;
        let claimed = {
            let from_secret = match self.lookup(&secret_key) {
                Lookup::Found(e) => e.client_id.clone(),
                _ => None,
            };
            let status_id = client.status.as_ref().and_then(|s| s.client_id.clone());
            client.spec.client_id.clone().or(from_secret).or(status_id)
        };
        self.set_claim(&key, Some(&rank), claimed.as_ref());
        let holder = claimed
            .as_ref()
            .and_then(|id| self.claims.get(id))
            .and_then(|set| set.first())
            .map(|r| r.1.clone());
        let claim = Claim {
            id: claimed,
            holder,
        };
        let (outcome, record, create) = decide(&client, &key, self.lookup(&secret_key), claim);
        match record {
            Some(record) => self.register(&key, record),
            None => self.unregister(&key),
        }
        self.resolved.insert(key, Resolved { outcome, create });
    }
}

/// A client's claim on a client id, settled: the id it claims and who holds that id.
struct Claim {
    id: Option<String>,
    holder: Option<ObjKey>,
}

/// The outcome for one client whose claim is settled.
fn decide(
    client: &Arc<OAuthClient>,
    key: &ObjKey,
    lookup: Lookup<'_>,
    claim: Claim,
) -> (Outcome, Option<ClientRecord>, Option<CredentialsToCreate>) {
    let Claim {
        id: claimed,
        holder,
    } = claim;
    let ((_, secret_name), value_key) = credentials_ref(client);
    let outcome = |client_id: Option<String>, state| Outcome {
        client: client.clone(),
        client_id,
        secret_name: secret_name.clone(),
        state,
        previous_secret: PreviousSecretState::None,
    };
    if let (Some(id), Some(holder)) = (&claimed, holder)
        && holder != *key
    {
        let state = ClientState::ClientIdConflict {
            client_id: id.clone(),
            holder,
        };
        return (outcome(claimed, state), None, None);
    }
    if let Err(e) = crate::convert::validate(&client.spec) {
        return (
            outcome(claimed, ClientState::InvalidSpec(e.to_string())),
            None,
            None,
        );
    }
    // Issue 11: client authentication by assertion. Without a Secret, the client
    // authenticates only by assertion: no credentials to read or generate. Issue 12: nor
    // for a public client, which has none.
    if crate::auth_method::has_no_secret(&client.spec) {
        let Some(client_id) = claimed else {
            let state = ClientState::InvalidSpec(
                crate::assertion_spec::SECRETLESS_NEEDS_ID_MESSAGE.to_owned(),
            );
            return (outcome(None, state), None, None);
        };
        return secretless(client, key, client_id, outcome);
    }
    let entry = match lookup {
        Lookup::Found(e) => e,
        Lookup::Unknown => {
            let state = ClientState::CredentialsPending {
                secret: secret_name.clone(),
            };
            return (outcome(claimed, state), None, None);
        }
        Lookup::Absent if client.spec.secret_ref.is_none() => {
            let status_id = client.status.as_ref().and_then(|s| s.client_id.clone());
            let client_id = claimed.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
        Lookup::Absent => {
            let state = ClientState::SecretNotFound {
                secret: secret_name.clone(),
            };
            return (outcome(claimed, state), None, None);
        }
    };
    let digest = match entry.values.get(&value_key) {
        None => {
            let state = ClientState::SecretKeyMissing {
                secret: secret_name.clone(),
                key: value_key,
            };
            return (outcome(claimed, state), None, None);
        }
        Some(Kept::Empty) => {
            let reason = latchkey_core::CoreError::InvalidClient("client secret is empty".into());
            let state = ClientState::InvalidSpec(reason.to_string());
            return (outcome(claimed, state), None, None);
        }
        Some(Kept::Digest(d)) => d.clone(),
    };
    let Some(client_id) = claimed else {
        let state = ClientState::ClientIdMissing {
            secret: secret_name.clone(),
        };
        return (outcome(None, state), None, None);
    };
    let origin = format!("{}/{}", key.0, key.1);
    // Issue 13: the previous secret, from the same Secret; a missing key leaves the current
    // secret alone in effect (status says so) rather than stopping the client.
    let (previous_digest, previous_secret) = match &client.spec.previous_secret {
        None => (None, PreviousSecretState::None),
        Some(p) => match entry.values.get(&p.key) {
            Some(Kept::Digest(d)) => (
                Some((d.clone(), system_time(&p.expires_at))),
                PreviousSecretState::Until(p.expires_at.clone()),
            ),
            _ => (None, PreviousSecretState::KeyMissing { key: p.key.clone() }),
        },
    };
    let record = crate::convert::client_spec(&client.spec, &client_id, digest, origin)
        .map_err(|e| e.to_string())
        .and_then(|mut spec| {
            spec.previous_secret = previous_digest;
            spec.tokens_not_before = revoke_before(client)?;
            Ok(spec)
        })
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
            let mut outcome = outcome(Some(client_id), state);
            outcome.previous_secret = previous_secret;
            (outcome, Some(record), None)
        }
    }
}

// Issue 11: client authentication by assertion.
/// A client that authenticates only by assertion, or a public one: registered with a secret
/// no request can match.
fn secretless(
    client: &Arc<OAuthClient>,
    key: &ObjKey,
    client_id: String,
    outcome: impl Fn(Option<String>, ClientState) -> Outcome,
) -> (Outcome, Option<ClientRecord>, Option<CredentialsToCreate>) {
    let origin = format!("{}/{}", key.0, key.1);
    let record =
        crate::convert::client_spec(&client.spec, &client_id, SecretDigest::decoy(), origin)
            .map_err(|e| e.to_string())
            .and_then(|mut spec| {
                // Issue 13's bulk revocation applies to every client.
                spec.tokens_not_before = revoke_before(client)?;
                Ok(spec)
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OAuthClientSpec, OAuthClientStatus, SecretKeyRef};
    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::Time};

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

    trait Apply {
        fn apply(&mut self, c: OAuthClient);
    }
    impl Apply for ClientIndex {
        fn apply(&mut self, c: OAuthClient) {
            let rank = creation_rank(&c);
            self.apply_client(c, rank);
        }
    }

    fn state_of(ix: &mut ClientIndex, name: &str) -> ClientState {
        ix.resolve();
        ix.outcomes()
            .find(|o| o.client.name_any() == name)
            .unwrap()
            .state
            .clone()
    }

    fn authenticates(ix: &mut ClientIndex, id: &str, secret: &str) -> bool {
        ix.resolve();
        ix.registry()
            .authenticate(id, secret.as_bytes(), std::time::SystemTime::now())
            .is_ok()
    }

    #[test]
    fn a_secret_ref_client_registers_once_its_secret_is_seen() {
        let mut ix = ClientIndex::default();
        ix.apply(client("apps", "a", spec(Some("a-id"), Some("a-s")), 1));
        // Before the Secrets are listed, a missing one may just be unseen.
        assert_eq!(
            state_of(&mut ix, "a"),
            ClientState::CredentialsPending {
                secret: "a-s".into()
            }
        );
        ix.replace_secrets(None, vec![], &[]);
        ix.mark_secrets_listed();
        assert_eq!(
            state_of(&mut ix, "a"),
            ClientState::SecretNotFound {
                secret: "a-s".into()
            }
        );
        ix.apply_secret(&secret("apps", "a-s", &[("clientSecret", "pw")], false));
        assert_eq!(state_of(&mut ix, "a"), ClientState::Registered);
        assert!(authenticates(&mut ix, "a-id", "pw"));
        // Rotation: the new value replaces the old at once.
        ix.apply_secret(&secret("apps", "a-s", &[("clientSecret", "pw2")], false));
        assert!(!authenticates(&mut ix, "a-id", "pw"));
        assert!(authenticates(&mut ix, "a-id", "pw2"));
        // Deleted: not found, and no longer served.
        ix.delete_secret(&("apps".into(), "a-s".into()));
        assert_eq!(
            state_of(&mut ix, "a"),
            ClientState::SecretNotFound {
                secret: "a-s".into()
            }
        );
        assert!(!authenticates(&mut ix, "a-id", "pw2"));
    }

    #[test]
    fn unrelated_secrets_are_not_kept_but_read_when_a_client_needs_them() {
        let mut ix = ClientIndex::default();
        ix.mark_secrets_listed();
        ix.apply_secret(&secret("apps", "other", &[("x", "y")], false));
        assert!(ix.secret(&("apps".into(), "other".into())).is_none());
        assert!(ix.unknown_secrets().is_empty());
        ix.apply(client("apps", "late", spec(Some("late"), Some("other")), 1));
        assert_eq!(ix.unknown_secrets(), vec![("apps".into(), "other".into())]);
        assert!(matches!(
            state_of(&mut ix, "late"),
            ClientState::CredentialsPending { .. }
        ));
        ix.fetched_secret(
            &("apps".into(), "other".into()),
            Some(&secret("apps", "other", &[("clientSecret", "y")], false)),
        );
        assert_eq!(state_of(&mut ix, "late"), ClientState::Registered);
        ix.apply_secret(&secret("apps", "gen-credentials", &[("x", "y")], true));
        assert!(
            ix.secret(&("apps".into(), "gen-credentials".into()))
                .is_some()
        );
    }

    #[test]
    fn generated_credentials_are_requested_when_absent_and_read_when_present() {
        let mut ix = ClientIndex::default();
        ix.apply(client("apps", "gw", spec(None, None), 1));
        ix.mark_secrets_listed();
        assert!(
            ix.unknown_secrets().is_empty(),
            "no need to ask: the watch would have seen it"
        );
        ix.resolve();
        let create: Vec<_> = ix.to_create().cloned().collect();
        assert_eq!(create.len(), 1);
        assert_eq!(create[0].secret_name, "gw-credentials");
        assert!(!create[0].recreate);
        assert!(uuid::Uuid::parse_str(&create[0].client_id).is_ok());
        ix.apply_secret(&secret(
            "apps",
            "gw-credentials",
            &[("clientId", "gen-id"), ("clientSecret", "s")],
            true,
        ));
        assert!(authenticates(&mut ix, "gen-id", "s"));
        assert_eq!(ix.to_create().count(), 0);
    }

    #[test]
    fn a_deleted_generated_secret_is_recreated_with_the_same_client_id() {
        let mut ix = ClientIndex::default();
        let mut c = client("apps", "gw", spec(None, None), 1);
        c.status = Some(OAuthClientStatus {
            client_id: Some("kept-id".into()),
            ..Default::default()
        });
        ix.apply(c);
        ix.mark_secrets_listed();
        ix.apply_secret(&secret(
            "apps",
            "gw-credentials",
            &[("clientId", "kept-id"), ("clientSecret", "s")],
            true,
        ));
        ix.resolve();
        assert_eq!(ix.to_create().count(), 0);
        ix.delete_secret(&("apps".into(), "gw-credentials".into()));
        ix.resolve();
        let create: Vec<_> = ix.to_create().cloned().collect();
        assert_eq!(create[0].client_id, "kept-id");
        assert!(create[0].recreate);
    }

    #[test]
    fn the_oldest_claimant_keeps_a_client_id() {
        let mut ix = ClientIndex::default();
        ix.apply(client("b", "young", spec(Some("shared"), Some("s")), 20));
        ix.apply(client("a", "old", spec(Some("shared"), Some("s")), 10));
        ix.apply_secret(&secret("a", "s", &[("clientSecret", "old-pw")], false));
        ix.apply_secret(&secret("b", "s", &[("clientSecret", "young-pw")], false));
        assert_eq!(state_of(&mut ix, "old"), ClientState::Registered);
        assert_eq!(
            state_of(&mut ix, "young"),
            ClientState::ClientIdConflict {
                client_id: "shared".into(),
                holder: ("a".into(), "old".into())
            }
        );
        assert!(authenticates(&mut ix, "shared", "old-pw"));
        assert!(!authenticates(&mut ix, "shared", "young-pw"));
        // The holder keeps its id even while its own secret is missing.
        ix.delete_secret(&("a".into(), "s".into()));
        assert!(matches!(
            state_of(&mut ix, "young"),
            ClientState::ClientIdConflict { .. }
        ));
        // Once the holder is gone the other one takes the id.
        ix.delete_client(&("a".into(), "old".into()));
        assert_eq!(state_of(&mut ix, "young"), ClientState::Registered);
        assert!(authenticates(&mut ix, "shared", "young-pw"));
    }

    #[test]
    fn a_holder_that_changes_its_id_hands_the_old_one_over_whatever_the_order() {
        let mut ix = ClientIndex::default();
        ix.apply(client("a", "old", spec(Some("x"), Some("s")), 10));
        ix.apply(client("a", "young", spec(Some("x"), Some("t")), 20));
        ix.apply_secret(&secret("a", "s", &[("clientSecret", "old-pw")], false));
        ix.apply_secret(&secret("a", "t", &[("clientSecret", "young-pw")], false));
        assert!(authenticates(&mut ix, "x", "old-pw"));
        ix.apply(client("a", "old", spec(Some("y"), Some("s")), 10));
        assert!(authenticates(&mut ix, "y", "old-pw"));
        assert!(authenticates(&mut ix, "x", "young-pw"));
        assert!(!authenticates(&mut ix, "x", "old-pw"));
        assert_eq!(state_of(&mut ix, "young"), ClientState::Registered);
    }

    #[test]
    fn disabled_invalid_and_missing_pieces_are_reported() {
        let mut ix = ClientIndex::default();
        let mut off = spec(Some("off"), Some("s"));
        off.disabled = true;
        ix.apply(client("n", "off", off, 1));
        let mut bad = spec(Some("bad"), Some("s"));
        bad.claims.insert("iss".into(), "me".into());
        ix.apply(client("n", "bad", bad, 2));
        ix.apply(client("n", "nokey", spec(Some("nokey"), Some("t")), 3));
        ix.apply(client("n", "noid", spec(None, Some("s")), 4));
        ix.apply(client("n", "empty", spec(Some("empty"), Some("e")), 5));
        ix.apply_secret(&secret("n", "s", &[("clientSecret", "pw")], false));
        ix.apply_secret(&secret("n", "t", &[("other", "pw")], false));
        ix.apply_secret(&secret("n", "e", &[("clientSecret", "")], false));
        assert_eq!(state_of(&mut ix, "off"), ClientState::Disabled);
        assert!(!authenticates(&mut ix, "off", "pw"));
        assert!(
            matches!(state_of(&mut ix, "bad"), ClientState::InvalidSpec(m) if m.contains("spec.claims"))
        );
        assert_eq!(
            state_of(&mut ix, "nokey"),
            ClientState::SecretKeyMissing {
                secret: "t".into(),
                key: "clientSecret".into()
            }
        );
        assert_eq!(
            state_of(&mut ix, "noid"),
            ClientState::ClientIdMissing { secret: "s".into() }
        );
        assert!(
            matches!(state_of(&mut ix, "empty"), ClientState::InvalidSpec(m) if m.contains("empty"))
        );
    }

    #[test]
    fn wanted_secrets_follow_client_edits_and_deletes() {
        let mut ix = ClientIndex::default();
        ix.apply(client("a", "x", spec(Some("x"), Some("s1")), 1));
        ix.apply(client("a", "y", spec(Some("y"), Some("s1")), 1));
        assert!(ix.secret_wanted(&("a".into(), "s1".into())));
        ix.apply(client("a", "x", spec(Some("x"), Some("s2")), 1));
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
        let mut ix = ClientIndex::default();
        ix.apply(client("a", "x", spec(Some("x"), Some("s")), 1));
        ix.apply(client("b", "y", spec(Some("y"), Some("s")), 1));
        ix.replace_clients(Some("a"), vec![]);
        assert_eq!(ix.clients().count(), 1);
        let s = secret("b", "s", &[("clientSecret", "pw")], false);
        ix.replace_secrets(None, vec![key_of(&s)], &[s]);
        ix.mark_secrets_listed();
        assert!(authenticates(&mut ix, "y", "pw"));
        ix.replace_secrets(Some("b"), vec![], &[]);
        assert_eq!(
            state_of(&mut ix, "y"),
            ClientState::SecretNotFound { secret: "s".into() }
        );
    }

    #[test]
    fn one_change_resolves_only_what_it_affects() {
        let mut ix = ClientIndex::default();
        ix.mark_secrets_listed();
        for i in 0..100 {
            ix.apply(client(
                "n",
                &format!("c{i}"),
                spec(Some(&format!("id{i}")), Some("s")),
                i,
            ));
        }
        ix.apply_secret(&secret("n", "s", &[("clientSecret", "pw")], false));
        assert_eq!(ix.resolve(), 100);
        ix.take_changed();
        ix.apply(client("n", "c7", spec(Some("id7-b"), Some("s")), 7));
        assert_eq!(ix.resolve(), 1);
        assert_eq!(ix.take_changed(), vec![("n".to_string(), "c7".to_string())]);
        assert!(authenticates(&mut ix, "id7-b", "pw"));
        assert!(!authenticates(&mut ix, "id7", "pw"));
        // An unchanged relist resolves nothing.
        let same: Vec<_> = ix
            .clients()
            .map(|c| ((**c).clone(), creation_rank(c)))
            .collect();
        ix.replace_clients(None, same);
        assert_eq!(ix.resolve(), 0);
    }

    // Issue 11: client authentication by assertion.
    #[test]
    fn a_secretless_client_registers_without_any_secret() {
        let mut ix = ClientIndex::default();
        let mut s = spec(Some("ci"), None);
        s.jwks_uri = Some("https://keys.example.com/jwks".into());
        ix.apply(client("apps", "ci", s, 1));
        assert_eq!(state_of(&mut ix, "ci"), ClientState::Registered);
        assert_eq!(ix.to_create().count(), 0, "no credentials are generated");
        let record = ix.registry().get("ci").unwrap();
        assert!(record.assertion_trust().jwks_uri.is_some());
        assert!(!authenticates(&mut ix, "ci", ""));
    }

    // Issue 12: public clients.
    #[test]
    fn a_public_client_registers_without_any_secret_and_none_is_generated() {
        let mut ix = ClientIndex::default();
        let mut s = spec(Some("spa"), None);
        s.token_endpoint_auth_method = Some(crate::auth_method::TokenEndpointAuthMethodName::None);
        s.grant_types = vec![
            crate::types::GrantTypeName::AuthorizationCode,
            crate::types::GrantTypeName::RefreshToken,
        ];
        s.redirect_uris = vec!["http://127.0.0.1:8400/cb".into()];
        ix.apply(client("apps", "spa", s.clone(), 1));
        // Secrets listed and none there: a confidential client would now ask for one.
        ix.replace_secrets(None, vec![], &[]);
        ix.mark_secrets_listed();
        ix.resolve();
        assert_eq!(state_of(&mut ix, "spa"), ClientState::Registered);
        assert_eq!(ix.to_create().count(), 0, "no credentials are generated");
        let record = ix.registry().get("spa").unwrap();
        assert!(record.is_public());
        assert!(ix.registry().public_client("spa").is_ok());
        assert!(!authenticates(&mut ix, "spa", ""));
        // The same spec without the method is a confidential client: credentials are made.
        s.token_endpoint_auth_method = None;
        s.grant_types = vec![crate::types::GrantTypeName::AuthorizationCode];
        ix.apply(client("apps", "spa", s, 1));
        ix.resolve();
        let create: Vec<_> = ix.to_create().collect();
        assert_eq!(create.len(), 1);
        assert_eq!(create[0].secret_name, "spa-credentials");
        assert!(ix.registry().public_client("spa").is_err());
    }

    #[test]
    fn secret_values_are_kept_only_as_digests() {
        let e = SecretEntry::from_secret(&secret(
            "n",
            "s",
            &[("clientSecret", "hunter2"), ("clientId", "visible")],
            false,
        ));
        let shown = format!("{e:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(e.client_id.as_deref(), Some("visible"));
    }

    // Issue 13: secret rotation.
    #[test]
    fn a_previous_secret_is_read_from_the_same_secret_until_it_stops() {
        let mut ix = ClientIndex::default();
        let at = |secs: i64| Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap());
        let mut s = spec(Some("a-id"), Some("a-s"));
        s.previous_secret = Some(crate::PreviousSecret {
            key: "previousClientSecret".into(),
            expires_at: at(4_000_000_000),
        });
        ix.apply(client("apps", "a", s.clone(), 1));
        ix.replace_secrets(None, vec![], &[]);
        ix.mark_secrets_listed();
        ix.apply_secret(&secret("apps", "a-s", &[("clientSecret", "new")], false));
        ix.resolve();
        let outcome = ix.outcomes().next().unwrap().clone();
        assert_eq!(
            outcome.state,
            ClientState::Registered,
            "a missing key is not fatal"
        );
        assert_eq!(
            outcome.previous_secret,
            PreviousSecretState::KeyMissing {
                key: "previousClientSecret".into()
            }
        );
        assert!(authenticates(&mut ix, "a-id", "new"));
        assert!(!authenticates(&mut ix, "a-id", "old"));
        ix.apply_secret(&secret(
            "apps",
            "a-s",
            &[("clientSecret", "new"), ("previousClientSecret", "old")],
            false,
        ));
        assert!(authenticates(&mut ix, "a-id", "new"));
        assert!(authenticates(&mut ix, "a-id", "old"));
        assert_eq!(
            ix.outcomes().next().unwrap().previous_secret,
            PreviousSecretState::Until(at(4_000_000_000))
        );
        // Once the stated time has passed, only the current secret works.
        s.previous_secret.as_mut().unwrap().expires_at = at(1_000);
        ix.apply(client("apps", "a", s, 1));
        assert!(authenticates(&mut ix, "a-id", "new"));
        assert!(!authenticates(&mut ix, "a-id", "old"));
    }

    #[test]
    fn a_previous_secret_key_must_differ_from_the_current_one() {
        let mut s = spec(Some("a-id"), Some("a-s"));
        s.previous_secret = Some(crate::PreviousSecret {
            key: "clientSecret".into(),
            expires_at: Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap()),
        });
        let e = crate::convert::validate(&s).unwrap_err().to_string();
        assert!(e.starts_with("spec.previousSecret.key"), "{e}");
        let mut g = spec(Some("a-id"), None);
        g.previous_secret = s.previous_secret.clone();
        g.previous_secret.as_mut().unwrap().key = "clientId".into();
        assert!(crate::convert::validate(&g).is_err());
        g.previous_secret.as_mut().unwrap().key = "previousClientSecret".into();
        assert!(crate::convert::validate(&g).is_ok());
    }
}
