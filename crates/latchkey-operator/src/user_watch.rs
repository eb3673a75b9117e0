//! How Users and their password Secrets reach memory: the watches feed the one user resolver
//! ([`latchkey_api::user_resolve::UserIndex`]); after each burst of events the changed users
//! are resolved, the new directory is swapped in for sign-in, and (once everything is listed)
//! the changed outcomes go to the status writer.
//!
//! It runs beside the client watch and shares nothing with it: the client-credentials path
//! never waits for users. A missing User CRD only makes this watch retry (with backoff) and log.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{Client, runtime::watcher};
use latchkey_api::{
    resolve::ObjKey,
    user::User,
    user_resolve::{UserIndex, UserOutcome, creation_rank},
};
use latchkey_core::UserDirectory;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    observe::Observer,
    watch::{Relister, Scope, Scoped, Step, scoped},
};

/// How long to gather a burst of events before resolving.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The users whose outcome changed (`None`: deleted).
pub type UserChanges = Vec<(ObjKey, Option<UserOutcome>)>;

/// Where the user watch sends what it learns.
pub struct UserSinks {
    /// The directory sign-in reads.
    pub directory: Arc<ArcSwap<UserDirectory>>,
    pub observer: Arc<dyn Observer>,
    /// Changes for the status writer (only once everything is listed).
    pub changes: mpsc::UnboundedSender<UserChanges>,
}

struct UserWatch {
    scopes: Vec<Scope>,
    index: UserIndex,
    users: Relister<User>,
    secrets: Relister<Secret>,
    sinks: UserSinks,
}

/// Whether a Secret may hold a password hash: only those are kept through a relist.
fn may_hold_hash(s: &Secret) -> bool {
    let data = s
        .data
        .iter()
        .flatten()
        .any(|(_, v)| v.0.trim_ascii_start().starts_with(b"$argon2"));
    let string_data = s
        .string_data
        .iter()
        .flatten()
        .any(|(_, v)| v.trim_start().starts_with("$argon2"));
    data || string_data
}

impl UserWatch {
    fn on_user(
        &mut self,
        scope: Scope,
        event: Result<watcher::Event<User>, watcher::Error>,
    ) -> bool {
        match self.users.step(scope, event, |_, _| true) {
            Step::Apply(u) => {
                let rank = creation_rank(&u);
                self.index.apply_user(u, rank);
            }
            Step::Delete(key) => self.index.delete_user(&key),
            Step::Relisted { scope, kept, .. } => {
                let list = kept
                    .into_iter()
                    .map(|u| {
                        let rank = creation_rank(&u);
                        (u, rank)
                    })
                    .collect();
                self.index.replace_users(scope.as_deref(), list);
            }
            Step::Nothing => return false,
        }
        true
    }

    fn on_secret(
        &mut self,
        scope: Scope,
        event: Result<watcher::Event<Secret>, watcher::Error>,
    ) -> bool {
        match self.secrets.step(scope, event, |_, s| may_hold_hash(s)) {
            Step::Apply(s) => self.index.apply_secret(&s),
            Step::Delete(key) => self.index.delete_secret(&key),
            Step::Relisted { scope, names, kept } => {
                // Secrets listed without a hash are known to exist, with nothing to keep.
                let mut all = kept;
                let have: std::collections::HashSet<ObjKey> =
                    all.iter().map(latchkey_api::resolve::key_of).collect();
                for (ns, name) in names.into_iter().filter(|k| !have.contains(k)) {
                    let mut s = Secret::default();
                    s.metadata.namespace = Some(ns);
                    s.metadata.name = Some(name);
                    all.push(s);
                }
                self.index.replace_secrets(scope.as_deref(), &all);
            }
            Step::Nothing => return false,
        }
        true
    }

    fn settle(&mut self) {
        let all_synced = self.users.synced(&self.scopes) && self.secrets.synced(&self.scopes);
        if all_synced {
            self.index.mark_secrets_listed();
        }
        if self.index.resolve() > 0 {
            let directory = self.index.directory().clone();
            self.sinks.observer.users_swapped(directory.len());
            self.sinks.directory.store(Arc::new(directory));
        }
        if all_synced {
            let changes: UserChanges = self
                .index
                .take_changed()
                .into_iter()
                .map(|k| {
                    let o = self.index.outcome(&k).cloned();
                    (k, o)
                })
                .collect();
            if !changes.is_empty() {
                let _ = self.sinks.changes.send(changes);
            }
        }
    }
}

/// Run the User and Secret watches until `shutdown`.
pub async fn run(
    client: Client,
    scopes: Vec<Scope>,
    sinks: UserSinks,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = watcher::Config::default();
    let mut user_events: BoxStream<'static, Scoped<User>> =
        scoped::<User>(&client, &scopes, &config);
    let mut secret_events = scoped::<Secret>(&client, &scopes, &config);
    let mut state = UserWatch {
        scopes,
        index: UserIndex::default(),
        users: Relister::new("User"),
        secrets: Relister::new("Secret"),
        sinks,
    };
    let mut deadline: Option<Instant> = None;
    loop {
        let dirty = tokio::select! {
            Some((scope, ev)) = user_events.next() => state.on_user(scope, ev),
            Some((scope, ev)) = secret_events.next() => state.on_secret(scope, ev),
            _ = sleep_until(deadline) => {
                deadline = None;
                state.settle();
                false
            }
            _ = shutdown.changed() => return,
        };
        if dirty && deadline.is_none() {
            deadline = Some(Instant::now() + DEBOUNCE);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn only_secrets_with_an_argon2_value_are_kept_through_a_relist() {
        let mut s = Secret::default();
        assert!(!may_hold_hash(&s));
        s.data = Some([("a".to_owned(), ByteString(b"plain".to_vec()))].into());
        assert!(!may_hold_hash(&s));
        s.data = Some([("a".to_owned(), ByteString(b"$argon2id$v=19$...".to_vec()))].into());
        assert!(may_hold_hash(&s));
        s.data = None;
        s.string_data = Some([("a".to_owned(), " $argon2id$".to_owned())].into());
        assert!(may_hold_hash(&s));
    }
}
