//! The one user resolver of both run modes: which Secret key holds a `User`'s password hash,
//! who holds a username when several claim it, and the directory sign-in reads. The operator
//! feeds it from watches, standalone mode from files.
//!
//! Like the client resolver it is incremental: a change marks only the users it can affect
//! (the user, the readers of a changed Secret, the other claimants of a username), and the
//! directory is a persistent map updated in place.
//!
//! Of a Secret only the values that look like Argon2 PHC strings (`$argon2…`) are kept, so
//! any Secret can be given to it and no other secret value is held.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use latchkey_core::{UserDirectory, UserRecord, password::PasswordHash};

use crate::{
    resolve::{ObjKey, Rank, key_of},
    user::User,
    user_rules::validate_user,
};

/// Namespace of the ids derived for Users that have no `metadata.uid` (files): UUID v5 of
/// `namespace/name` under this, so a file user's id is stable across restarts.
const FILE_USER_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c61_7463_686b_6579_2d75_7365_7273_0001);

/// A user's stable id (their tokens' `sub`): the object's `metadata.uid` in a cluster (a User
/// deleted and created again is a new person), a UUID derived from namespace and name in files.
pub fn user_id(user: &User) -> String {
    match user.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => {
            let (ns, name) = key_of(user);
            uuid::Uuid::new_v5(&FILE_USER_ID_NAMESPACE, format!("{ns}/{name}").as_bytes())
                .to_string()
        }
    }
}

/// The rank of a User from the API server: creation time, then its key (oldest first).
pub fn creation_rank(user: &User) -> Rank {
    let created = user
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(i64::MIN, |t| t.0.as_second());
    (created, key_of(user))
}

/// Why a user may not sign in (or that they may).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserState {
    Ready,
    Disabled,
    InvalidSpec(String),
    SecretNotFound {
        secret: String,
    },
    /// The Secret has no such key.
    PasswordMissing {
        secret: String,
        key: String,
    },
    /// The value is not an accepted Argon2id PHC string.
    PasswordInvalid {
        secret: String,
        key: String,
        reason: String,
    },
    /// Whether the Secret exists is not known yet (before the first list).
    SecretPending {
        secret: String,
    },
    /// An older User holds this username.
    UsernameConflict {
        username: String,
        holder: ObjKey,
    },
}

/// `(type, true/false, reason, message)` of a status condition.
pub type ConditionFacts = (&'static str, bool, &'static str, String);

pub const READY: &str = "Ready";
pub const PASSWORD_RESOLVED: &str = "PasswordResolved";
pub const USERNAME_UNIQUE: &str = "UsernameUnique";

impl UserState {
    /// The conditions a User's status shows for this state: Ready, PasswordResolved and
    /// UsernameUnique. Messages name objects and keys, never a value.
    pub fn conditions(&self) -> [ConditionFacts; 3] {
        let pw_ok = (
            PASSWORD_RESOLVED,
            true,
            "Resolved",
            "password hash found".to_owned(),
        );
        let name_ok = (
            USERNAME_UNIQUE,
            true,
            "Unique",
            "no older User has this username".to_owned(),
        );
        let not_ready = |reason, m: String| (READY, false, reason, m);
        match self {
            UserState::Ready => [(READY, true, "Ready", "may sign in".into()), pw_ok, name_ok],
            UserState::Disabled => [
                not_ready(
                    "Disabled",
                    "spec.disabled is true: no sign-in, no refresh".into(),
                ),
                pw_ok,
                name_ok,
            ],
            UserState::InvalidSpec(m) => [
                not_ready("InvalidSpec", m.clone()),
                (
                    PASSWORD_RESOLVED,
                    false,
                    "InvalidSpec",
                    "not checked: spec is invalid".into(),
                ),
                (
                    USERNAME_UNIQUE,
                    false,
                    "InvalidSpec",
                    "not checked: spec is invalid".into(),
                ),
            ],
            UserState::UsernameConflict { username, holder } => [
                not_ready(
                    "UsernameConflict",
                    format!(
                        "username {username:?} is already used by User {}/{}, which is older",
                        holder.0, holder.1
                    ),
                ),
                pw_ok,
                (
                    USERNAME_UNIQUE,
                    false,
                    "UsernameConflict",
                    format!("User {}/{} holds {username:?}", holder.0, holder.1),
                ),
            ],
            other => {
                let (reason, m) = match other {
                    UserState::SecretNotFound { secret } => {
                        ("SecretNotFound", format!("Secret {secret} does not exist"))
                    }
                    UserState::PasswordMissing { secret, key } => (
                        "PasswordMissing",
                        format!("Secret {secret} has no key {key:?}"),
                    ),
                    UserState::PasswordInvalid {
                        secret,
                        key,
                        reason,
                    } => (
                        "PasswordInvalid",
                        format!("Secret {secret} key {key:?}: {reason}"),
                    ),
                    UserState::SecretPending { secret } => {
                        ("SecretPending", format!("waiting for Secret {secret}"))
                    }
                    _ => ("Unknown", String::new()),
                };
                [
                    not_ready(reason, m.clone()),
                    (PASSWORD_RESOLVED, false, reason, m),
                    name_ok,
                ]
            }
        }
    }
}

/// What resolution says about one User.
#[derive(Debug, Clone)]
pub struct UserOutcome {
    pub user: Arc<User>,
    pub user_id: String,
    pub state: UserState,
}

/// The password-hash-shaped values of one Secret: `Some(phc)` for a value that starts with
/// `$argon2`, `None` for a key whose value is something else (not kept).
type KeptHashes = BTreeMap<String, Option<String>>;

fn kept_hashes(s: &Secret) -> KeptHashes {
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
    raw.into_iter()
        .map(|(k, v)| {
            let phc = std::str::from_utf8(v)
                .ok()
                .map(str::trim)
                .filter(|t| t.starts_with("$argon2"))
                .map(str::to_owned);
            (k.to_owned(), phc)
        })
        .collect()
}

/// The Secret a User reads its password hash from, and the key.
pub fn password_ref(user: &User) -> (ObjKey, String) {
    let ns = user.namespace().unwrap_or_default();
    let r = &user.spec.password_ref;
    ((ns, r.name.clone()), r.key.clone())
}

/// Watched (or read) Users and Secrets, and what they resolve to.
#[derive(Default)]
pub struct UserIndex {
    users: HashMap<ObjKey, (Arc<User>, Rank)>,
    /// The users that read each Secret.
    readers: HashMap<ObjKey, BTreeSet<ObjKey>>,
    hashes: HashMap<ObjKey, KeptHashes>,
    secret_names: HashSet<ObjKey>,
    secrets_listed: bool,
    /// Who claims each username, lowest rank (the holder) first.
    claims: HashMap<String, BTreeSet<Rank>>,
    claim_of: HashMap<ObjKey, String>,
    /// The username each user put into the directory.
    registered: HashMap<ObjKey, String>,
    resolved: HashMap<ObjKey, UserOutcome>,
    directory: UserDirectory,
    dirty: BTreeSet<ObjKey>,
    changed: BTreeSet<ObjKey>,
}

impl std::fmt::Debug for UserIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIndex")
            .field("users", &self.users.len())
            .field("ready", &self.directory.len())
            .finish_non_exhaustive()
    }
}

fn in_scope(key: &ObjKey, namespace: Option<&str>) -> bool {
    namespace.is_none_or(|ns| key.0 == ns)
}

impl UserIndex {
    /// The directory of this moment (a cheap copy: it shares its structure).
    pub fn directory(&self) -> &UserDirectory {
        &self.directory
    }

    pub fn outcome(&self, key: &ObjKey) -> Option<&UserOutcome> {
        self.resolved.get(key)
    }

    pub fn outcomes(&self) -> impl Iterator<Item = &UserOutcome> {
        self.resolved.values()
    }

    /// The users whose outcome may have changed since the last call (deleted ones included).
    pub fn take_changed(&mut self) -> Vec<ObjKey> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Add or replace a User. Unchanged objects (a relist) cost nothing more.
    pub fn apply_user(&mut self, user: User, rank: Rank) {
        let key = key_of(&user);
        let secret = password_ref(&user).0;
        if let Some((old, old_rank)) = self.users.get(&key) {
            if **old == user && *old_rank == rank {
                return;
            }
            let old_secret = password_ref(old).0;
            if old_secret != secret {
                self.unread(&key, &old_secret);
            }
        }
        self.readers.entry(secret).or_default().insert(key.clone());
        self.users.insert(key.clone(), (Arc::new(user), rank));
        self.dirty.insert(key);
    }

    pub fn delete_user(&mut self, key: &ObjKey) {
        if let Some((old, _)) = self.users.remove(key) {
            let secret = password_ref(&old).0;
            self.unread(key, &secret);
            self.dirty.insert(key.clone());
        }
    }

    /// Replace every User in `namespace` (all when `None`) by a relisted set.
    pub fn replace_users(&mut self, namespace: Option<&str>, list: Vec<(User, Rank)>) {
        let listed: HashSet<ObjKey> = list.iter().map(|(u, _)| key_of(u)).collect();
        let gone: Vec<ObjKey> = self
            .users
            .keys()
            .filter(|k| in_scope(k, namespace) && !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete_user(&key);
        }
        for (user, rank) in list {
            self.apply_user(user, rank);
        }
    }

    fn unread(&mut self, user: &ObjKey, secret: &ObjKey) {
        if let Some(readers) = self.readers.get_mut(secret) {
            readers.remove(user);
            if readers.is_empty() {
                self.readers.remove(secret);
                if self
                    .hashes
                    .get(secret)
                    .is_some_and(|kept| kept.values().all(Option::is_none))
                {
                    self.hashes.remove(secret);
                }
            }
        }
    }

    fn mark_readers(&mut self, secret: &ObjKey) {
        if let Some(readers) = self.readers.get(secret) {
            self.dirty.extend(readers.iter().cloned());
        }
    }

    /// Record a Secret seen by a watch or read from a file.
    pub fn apply_secret(&mut self, s: &Secret) {
        let key = key_of(s);
        let kept = kept_hashes(s);
        let new_name = self.secret_names.insert(key.clone());
        // Of a Secret that holds no hash and that no user reads, only its name is kept: a
        // cluster's other Secrets cost a name each.
        if !self.readers.contains_key(&key) && kept.values().all(Option::is_none) {
            if self.hashes.remove(&key).is_some() || new_name {
                self.mark_readers(&key);
            }
            return;
        }
        if new_name || self.hashes.get(&key) != Some(&kept) {
            self.hashes.insert(key.clone(), kept);
            self.mark_readers(&key);
        }
    }

    pub fn delete_secret(&mut self, key: &ObjKey) {
        let had = self.hashes.remove(key).is_some();
        if self.secret_names.remove(key) || had {
            self.mark_readers(key);
        }
    }

    /// Replace every Secret in `namespace` (all when `None`) by a relisted set.
    pub fn replace_secrets(&mut self, namespace: Option<&str>, list: &[Secret]) {
        let listed: HashSet<ObjKey> = list.iter().map(key_of).collect();
        let gone: Vec<ObjKey> = self
            .secret_names
            .iter()
            .filter(|k| in_scope(k, namespace) && !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete_secret(&key);
        }
        for s in list {
            self.apply_secret(s);
        }
    }

    /// All Secrets have been listed once: from now on, a Secret not seen does not exist.
    pub fn mark_secrets_listed(&mut self) {
        if !self.secrets_listed {
            self.secrets_listed = true;
            self.dirty.extend(self.users.keys().cloned());
        }
    }

    /// Resolve every user a change may have affected; returns how many were resolved.
    pub fn resolve(&mut self) -> usize {
        let mut count = 0;
        while let Some(key) = self.dirty.pop_first() {
            count += 1;
            self.resolve_one(key);
        }
        count
    }

    fn set_claim(&mut self, key: &ObjKey, claim: Option<(&String, &Rank)>) {
        let old = self.claim_of.get(key).cloned();
        if let (Some(old), Some((username, _))) = (&old, claim)
            && old == username
        {
            return;
        }
        if let Some(name) = old {
            if let Some(set) = self.claims.get_mut(&name) {
                set.retain(|r| &r.1 != key);
                self.dirty.extend(set.iter().map(|r| r.1.clone()));
                if set.is_empty() {
                    self.claims.remove(&name);
                }
            }
            self.claim_of.remove(key);
        }
        if let Some((username, rank)) = claim {
            let set = self.claims.entry(username.clone()).or_default();
            self.dirty
                .extend(set.iter().map(|r| r.1.clone()).filter(|k| k != key));
            set.insert(rank.clone());
            self.claim_of.insert(key.clone(), username.clone());
        }
    }

    fn unregister(&mut self, key: &ObjKey) {
        if let Some(username) = self.registered.remove(key) {
            let ours = self
                .directory
                .by_username(&username)
                .is_some_and(|u| u.origin == origin(key));
            if ours {
                self.directory.remove_username(&username);
            }
        }
    }

    fn resolve_one(&mut self, key: ObjKey) {
        self.changed.insert(key.clone());
        let Some((user, rank)) = self.users.get(&key).cloned() else {
            self.set_claim(&key, None);
            self.unregister(&key);
            self.resolved.remove(&key);
            return;
        };
        let valid = validate_user(&user.spec);
        // The oldest valid claimant holds a username even while it cannot sign in, so a broken
        // Secret never hands a login name to someone else.
        let claim = valid.is_ok().then_some((&user.spec.username, &rank));
        self.set_claim(&key, claim);
        let state = match valid {
            Err(e) => UserState::InvalidSpec(e.to_string()),
            Ok(()) => self.state_of(&key, &user),
        };
        self.unregister(&key);
        if state == UserState::Ready
            && let Some(record) = self.record(&key, &user)
        {
            self.registered.insert(key.clone(), record.username.clone());
            self.directory.insert(record);
        }
        let user_id = user_id(&user);
        self.resolved.insert(
            key,
            UserOutcome {
                user,
                user_id,
                state,
            },
        );
    }

    fn state_of(&self, key: &ObjKey, user: &User) -> UserState {
        let username = &user.spec.username;
        let holder = self
            .claims
            .get(username)
            .and_then(|set| set.first())
            .map(|r| r.1.clone());
        if let Some(holder) = holder.filter(|h| h != key) {
            return UserState::UsernameConflict {
                username: username.clone(),
                holder,
            };
        }
        if user.spec.disabled {
            return UserState::Disabled;
        }
        let (secret_key, field) = password_ref(user);
        let secret = secret_key.1.clone();
        match self.hashes.get(&secret_key) {
            Some(values) => match values.get(&field) {
                None => UserState::PasswordMissing { secret, key: field },
                Some(None) => UserState::PasswordInvalid {
                    secret,
                    key: field,
                    reason: "not an Argon2id PHC string (see `latchkey hash-password`)".into(),
                },
                Some(Some(phc)) => match PasswordHash::parse(phc) {
                    Ok(_) => UserState::Ready,
                    Err(e) => UserState::PasswordInvalid {
                        secret,
                        key: field,
                        reason: e.to_string(),
                    },
                },
            },
            // It exists, but was seen when nobody read it and held no hash.
            None if self.secret_names.contains(&secret_key) => UserState::PasswordInvalid {
                secret,
                key: field,
                reason: "holds no Argon2id PHC string (see `latchkey hash-password`)".into(),
            },
            None if self.secrets_listed => UserState::SecretNotFound { secret },
            None => UserState::SecretPending { secret },
        }
    }

    fn record(&self, key: &ObjKey, user: &User) -> Option<UserRecord> {
        let (secret_key, field) = password_ref(user);
        let phc = self.hashes.get(&secret_key)?.get(&field)?.as_deref()?;
        let password = PasswordHash::parse(phc).ok()?;
        let spec = &user.spec;
        Some(UserRecord {
            id: user_id(user),
            username: spec.username.clone(),
            display_name: spec.display_name.clone(),
            email: spec.email.clone(),
            email_verified: spec.email_verified,
            organizations: dedup(&spec.organizations),
            groups: dedup(&spec.groups),
            password,
            origin: origin(key),
        })
    }
}

fn origin(key: &ObjKey) -> String {
    format!("{}/{}", key.0, key.1)
}

/// The entries in their first order, each once.
fn dedup(list: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    list.iter()
        .filter(|s| seen.insert(s.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{PasswordRef, UserSpec};
    use std::sync::LazyLock;

    static HASH: LazyLock<PasswordHash> = LazyLock::new(|| PasswordHash::new(b"pw").unwrap());

    fn user(name: &str, username: &str) -> User {
        let mut u = User::new(
            name,
            UserSpec {
                username: username.into(),
                organizations: vec!["org1".into(), "org1".into(), "org2".into()],
                password_ref: PasswordRef {
                    name: format!("{name}-pw"),
                    key: "passwordHash".into(),
                },
                ..UserSpec::default()
            },
        );
        u.metadata.namespace = Some("ns".into());
        u
    }

    fn secret(name: &str, pairs: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.string_data = Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        s
    }

    fn k(name: &str) -> ObjKey {
        ("ns".into(), name.into())
    }

    fn state(ix: &UserIndex, name: &str) -> UserState {
        ix.outcome(&k(name)).unwrap().state.clone()
    }

    fn rank(n: i64, name: &str) -> Rank {
        (n, k(name))
    }

    #[test]
    fn a_user_with_its_hash_signs_in_and_only_hash_shaped_values_are_kept() {
        let mut ix = UserIndex::default();
        ix.apply_user(user("alice", "alice"), rank(1, "alice"));
        ix.apply_secret(&secret(
            "alice-pw",
            &[("passwordHash", HASH.as_phc()), ("other", "plain secret")],
        ));
        ix.mark_secrets_listed();
        ix.resolve();
        assert_eq!(state(&ix, "alice"), UserState::Ready);
        let u = ix.directory().authenticate("alice", b"pw").unwrap();
        assert_eq!(u.organizations, ["org1", "org2"]);
        assert_eq!(u.origin, "ns/alice");
        assert_eq!(ix.hashes[&k("alice-pw")]["other"], None);
        assert!(format!("{ix:?}").contains("ready: 1"));
    }

    #[test]
    fn password_problems_are_reported_and_fixed_by_the_secret() {
        let mut ix = UserIndex::default();
        ix.apply_user(user("alice", "alice"), rank(1, "alice"));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::SecretPending { .. }
        ));
        ix.mark_secrets_listed();
        ix.resolve();
        assert_eq!(
            state(&ix, "alice"),
            UserState::SecretNotFound {
                secret: "alice-pw".into()
            }
        );
        ix.apply_secret(&secret("alice-pw", &[("x", "y")]));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::PasswordMissing { .. }
        ));
        ix.apply_secret(&secret("alice-pw", &[("passwordHash", "admin")]));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::PasswordInvalid { .. }
        ));
        let bcrypt_like = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        ix.apply_secret(&secret("alice-pw", &[("passwordHash", bcrypt_like)]));
        ix.resolve();
        let UserState::PasswordInvalid { reason, .. } = state(&ix, "alice") else {
            panic!()
        };
        assert!(reason.contains("argon2id"), "{reason}");
        assert!(ix.directory().is_empty());
        ix.apply_secret(&secret("alice-pw", &[("passwordHash", HASH.as_phc())]));
        ix.resolve();
        assert_eq!(state(&ix, "alice"), UserState::Ready);
        ix.delete_secret(&k("alice-pw"));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::SecretNotFound { .. }
        ));
        assert!(ix.directory().is_empty());
    }

    #[test]
    fn secrets_without_a_hash_that_nobody_reads_are_kept_by_name_only() {
        let mut ix = UserIndex::default();
        ix.mark_secrets_listed();
        ix.apply_secret(&secret(
            "tls",
            &[("tls.key", "-----BEGIN PRIVATE KEY-----")],
        ));
        assert!(!ix.hashes.contains_key(&k("tls")));
        // A user naming it later learns that it exists without a hash.
        let mut u = user("alice", "alice");
        u.spec.password_ref.name = "tls".into();
        ix.apply_user(u, rank(1, "alice"));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::PasswordInvalid { .. }
        ));
        // Once read, its keys are known, and a hash written into it is taken.
        ix.apply_secret(&secret("tls", &[("tls.key", "x")]));
        ix.resolve();
        assert!(matches!(
            state(&ix, "alice"),
            UserState::PasswordMissing { .. }
        ));
        ix.apply_secret(&secret("tls", &[("passwordHash", HASH.as_phc())]));
        ix.resolve();
        assert_eq!(state(&ix, "alice"), UserState::Ready);
        ix.delete_user(&k("alice"));
        ix.apply_secret(&secret("tls", &[("tls.key", "x")]));
        assert!(!ix.hashes.contains_key(&k("tls")));
    }

    #[test]
    fn disabled_or_deleted_users_leave_the_directory() {
        let mut ix = UserIndex::default();
        ix.mark_secrets_listed();
        ix.apply_secret(&secret("alice-pw", &[("passwordHash", HASH.as_phc())]));
        let mut alice = user("alice", "alice");
        ix.apply_user(alice.clone(), rank(1, "alice"));
        ix.resolve();
        let id = ix.outcome(&k("alice")).unwrap().user_id.clone();
        assert!(ix.directory().by_id(&id).is_some());
        alice.spec.disabled = true;
        ix.apply_user(alice.clone(), rank(1, "alice"));
        ix.resolve();
        assert_eq!(state(&ix, "alice"), UserState::Disabled);
        assert!(ix.directory().by_id(&id).is_none());
        alice.spec.disabled = false;
        ix.apply_user(alice, rank(1, "alice"));
        ix.resolve();
        assert!(ix.directory().by_id(&id).is_some());
        ix.take_changed();
        ix.delete_user(&k("alice"));
        ix.resolve();
        assert!(ix.directory().is_empty() && ix.outcome(&k("alice")).is_none());
        assert_eq!(ix.take_changed(), [k("alice")]);
    }

    #[test]
    fn the_oldest_user_holds_a_username_even_while_it_cannot_sign_in() {
        let mut ix = UserIndex::default();
        ix.mark_secrets_listed();
        ix.apply_secret(&secret("new-pw", &[("passwordHash", HASH.as_phc())]));
        // The older one has no Secret: it still keeps the name.
        ix.apply_user(user("old", "alice"), rank(1, "old"));
        ix.apply_user(user("new", "alice"), rank(2, "new"));
        ix.resolve();
        assert!(matches!(
            state(&ix, "old"),
            UserState::SecretNotFound { .. }
        ));
        assert_eq!(
            state(&ix, "new"),
            UserState::UsernameConflict {
                username: "alice".into(),
                holder: k("old")
            }
        );
        assert!(ix.directory().is_empty());
        // The holder renames itself: the other takes the name.
        ix.apply_user(user("old", "alice-old"), rank(1, "old"));
        ix.resolve();
        assert_eq!(state(&ix, "new"), UserState::Ready);
        // Back again: the older one wins it back, the newer one leaves the directory.
        ix.apply_user(user("old", "alice"), rank(1, "old"));
        ix.resolve();
        assert!(matches!(
            state(&ix, "new"),
            UserState::UsernameConflict { .. }
        ));
        assert!(ix.directory().by_username("alice").is_none());
        ix.delete_user(&k("old"));
        ix.resolve();
        assert_eq!(state(&ix, "new"), UserState::Ready);
        assert_eq!(
            ix.directory().by_username("alice").unwrap().origin,
            "ns/new"
        );
    }

    #[test]
    fn invalid_specs_claim_nothing() {
        let mut ix = UserIndex::default();
        ix.mark_secrets_listed();
        ix.apply_user(user("bad", "a b"), rank(1, "bad"));
        ix.resolve();
        let UserState::InvalidSpec(m) = state(&ix, "bad") else {
            panic!()
        };
        assert!(m.starts_with("spec.username:"), "{m}");
        assert!(ix.claims.is_empty());
    }

    #[test]
    fn ids_are_the_uid_or_derived_from_namespace_and_name() {
        let mut u = user("alice", "alice");
        let derived = user_id(&u);
        assert_eq!(derived, user_id(&user("alice", "other-login")));
        assert_ne!(derived, user_id(&user("bob", "alice")));
        assert_eq!(
            uuid::Uuid::parse_str(&derived).unwrap().get_version_num(),
            5
        );
        u.metadata.uid = Some("0b7e…uid".into());
        assert_eq!(user_id(&u), "0b7e…uid");
    }

    #[test]
    fn relists_replace_what_is_gone() {
        let mut ix = UserIndex::default();
        ix.replace_secrets(None, &[secret("a-pw", &[("passwordHash", HASH.as_phc())])]);
        ix.mark_secrets_listed();
        ix.replace_users(None, vec![(user("a", "a"), rank(1, "a"))]);
        ix.resolve();
        assert_eq!(ix.directory().len(), 1);
        ix.replace_secrets(Some("ns"), &[]);
        ix.resolve();
        assert!(matches!(state(&ix, "a"), UserState::SecretNotFound { .. }));
        ix.replace_users(Some("other"), vec![]);
        ix.resolve();
        assert!(ix.outcome(&k("a")).is_some());
        ix.replace_users(Some("ns"), vec![]);
        ix.resolve();
        assert!(ix.outcome(&k("a")).is_none());
    }

    #[test]
    fn every_state_has_three_conditions_and_ready_only_when_ready() {
        let holder = k("h");
        for s in [
            UserState::Ready,
            UserState::Disabled,
            UserState::InvalidSpec("spec.username: x".into()),
            UserState::SecretNotFound { secret: "s".into() },
            UserState::PasswordMissing {
                secret: "s".into(),
                key: "k".into(),
            },
            UserState::PasswordInvalid {
                secret: "s".into(),
                key: "k".into(),
                reason: "r".into(),
            },
            UserState::SecretPending { secret: "s".into() },
            UserState::UsernameConflict {
                username: "u".into(),
                holder,
            },
        ] {
            let c = s.conditions();
            assert_eq!(
                c.iter().map(|c| c.0).collect::<Vec<_>>(),
                [READY, PASSWORD_RESOLVED, USERNAME_UNIQUE]
            );
            assert_eq!(c[0].1, s == UserState::Ready, "{s:?}");
            assert!(
                c.iter().all(|c| !c.2.is_empty() && !c.3.is_empty()),
                "{s:?}"
            );
        }
    }
}
