//! How OAuthClients and their Secrets reach memory: the watches feed the one resolver
//! ([`latchkey_api::resolve::ClientIndex`]); after each burst of events the changed clients
//! are resolved, the new registry snapshot is swapped in for the token server, and (once
//! everything is listed) the changed outcomes go to the writer.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, runtime::watcher};
use latchkey_api::{
    OAuthClient,
    resolve::{ClientIndex, CredentialsToCreate, ObjKey, Outcome, creation_rank, is_managed},
};
use latchkey_core::Issuer;
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

/// What the writer is told after a resolution: the clients whose outcome changed (`None`:
/// deleted), and the credentials those clients are missing. Only what changed travels, so a
/// burst of 10,000 new clients costs the writer no more per update than one.
#[derive(Debug, Default)]
pub struct Changes {
    pub outcomes: Vec<(ObjKey, Option<Outcome>)>,
    pub to_create: Vec<CredentialsToCreate>,
}

/// Where the watch task sends what it learns.
pub struct Sinks {
    pub issuer: Arc<Issuer>,
    pub observer: Arc<dyn Observer>,
    /// Changes for the writer (only once everything is listed).
    pub changes: mpsc::UnboundedSender<Changes>,
    /// True once the first lists are in.
    pub synced: watch::Sender<bool>,
}

type Fetched = (ObjKey, Result<Option<Secret>, kube::Error>);

/// The watch task's state.
struct ClientWatch {
    client: Client,
    scopes: Vec<Scope>,
    index: ClientIndex,
    clients: Relister<OAuthClient>,
    secrets: Relister<Secret>,
    fetching: HashSet<ObjKey>,
    fetched: mpsc::Sender<Fetched>,
    sinks: Sinks,
    // Issue 13: when a client's status changes by itself (a previous secret stops being
    // accepted), so its outcome goes to the writer again then.
    status_changes: BTreeSet<(SystemTime, ObjKey)>,
}

impl ClientWatch {
    fn on_client(
        &mut self,
        scope: Scope,
        event: Result<watcher::Event<OAuthClient>, watcher::Error>,
    ) -> bool {
        if event.is_ok() {
            self.sinks.observer.api_contact();
        }
        match self.clients.step(scope, event, |_, _| true) {
            Step::Apply(c) => {
                let rank = creation_rank(&c);
                self.index.apply_client(c, rank);
            }
            Step::Delete(key) => self.index.delete_client(&key),
            Step::Relisted { scope, kept, .. } => {
                let list = kept
                    .into_iter()
                    .map(|c| {
                        let rank = creation_rank(&c);
                        (c, rank)
                    })
                    .collect();
                self.index.replace_clients(scope.as_deref(), list);
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
        if event.is_ok() {
            self.sinks.observer.api_contact();
        }
        let index = &self.index;
        // Keep only what could matter, so a relist of a large cluster costs little memory.
        let keep = |key: &ObjKey, s: &Secret| index.secret_wanted(key) || is_managed(s);
        match self.secrets.step(scope, event, keep) {
            Step::Apply(s) => self.index.apply_secret(&s),
            Step::Delete(key) => self.index.delete_secret(&key),
            Step::Relisted { scope, names, kept } => {
                self.index.replace_secrets(scope.as_deref(), names, &kept)
            }
            Step::Nothing => return false,
        }
        true
    }

    fn on_fetched(&mut self, (key, result): Fetched) -> bool {
        self.fetching.remove(&key);
        match result {
            Ok(s) => {
                self.sinks.observer.api_contact();
                self.index.fetched_secret(&key, s.as_ref());
                true
            }
            Err(e) => {
                tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %e, "reading a Secret failed");
                false
            }
        }
    }

    // Issue 13
    /// The next instant a client's status changes by itself.
    fn next_status_change(&self) -> Option<Instant> {
        let (at, _) = self.status_changes.first()?;
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        Some(Instant::now() + wait)
    }

    /// Send the writer the current outcome of every client whose status changed by itself.
    fn on_status_change(&mut self) {
        let now = SystemTime::now();
        let mut outcomes = Vec::new();
        while let Some((at, _)) = self.status_changes.first()
            && *at <= now
        {
            if let Some((_, key)) = self.status_changes.pop_first()
                && let Some(o) = self.index.outcome(&key)
            {
                outcomes.push((key, Some(o.clone())));
            }
        }
        if !outcomes.is_empty() {
            let _ = self.sinks.changes.send(Changes {
                outcomes,
                to_create: Vec::new(),
            });
        }
    }

    fn all_synced(&self) -> bool {
        self.clients.synced(&self.scopes) && self.secrets.synced(&self.scopes)
    }

    /// Resolve what changed and hand it on.
    fn settle(&mut self) {
        let all_synced = self.all_synced();
        if all_synced {
            self.index.mark_secrets_listed();
        }
        if self.index.resolve() > 0 {
            let registry = self.index.registry().clone();
            self.sinks.observer.registry_swapped(&registry);
            self.sinks.issuer.replace_registry(registry);
        }
        if all_synced {
            let outcomes = self
                .index
                .take_changed()
                .into_iter()
                .map(|k| {
                    let o = self.index.outcome(&k).cloned();
                    (k, o)
                })
                .collect::<Vec<_>>();
            let now = SystemTime::now();
            for (k, o) in &outcomes {
                if let Some(at) = o.as_ref().and_then(|o| crate::status::changes_at(o, now)) {
                    self.status_changes.insert((at, k.clone()));
                }
            }
            if !outcomes.is_empty() {
                let to_create = outcomes
                    .iter()
                    .filter_map(|(k, _)| self.index.to_create_for(k).cloned())
                    .collect();
                let _ = self.sinks.changes.send(Changes {
                    outcomes,
                    to_create,
                });
            }
            if !*self.sinks.synced.borrow() {
                self.sinks.synced.send_replace(true);
            }
        }
        for key in self.index.unknown_secrets() {
            if self.fetching.insert(key.clone()) {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
                let tx = self.fetched.clone();
                tokio::spawn(async move {
                    let r = api.get_opt(&key.1).await;
                    let _ = tx.send((key, r)).await;
                });
            }
        }
    }
}

/// Run the watches until `shutdown`. Secrets are watched once the clients are listed, so a
/// relist keeps exactly the Secrets that are needed.
pub async fn run(
    client: Client,
    scopes: Vec<Scope>,
    sinks: Sinks,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = watcher::Config::default();
    let mut client_events = scoped::<OAuthClient>(&client, &scopes, &config);
    let mut secret_events: Option<BoxStream<'static, Scoped<Secret>>> = None;
    let (fetched, mut fetched_rx) = mpsc::channel::<Fetched>(256);
    let mut state = ClientWatch {
        client: client.clone(),
        scopes: scopes.clone(),
        index: ClientIndex::default(),
        clients: Relister::new("OAuthClient"),
        secrets: Relister::new("Secret"),
        fetching: HashSet::new(),
        fetched,
        sinks,
        status_changes: BTreeSet::new(),
    };
    let mut deadline: Option<Instant> = None;
    loop {
        let dirty = tokio::select! {
            Some((scope, ev)) = client_events.next() => state.on_client(scope, ev),
            Some((scope, ev)) = next_or_pending(&mut secret_events) => state.on_secret(scope, ev),
            Some(f) = fetched_rx.recv() => state.on_fetched(f),
            _ = sleep_until(deadline) => {
                deadline = None;
                state.settle();
                false
            }
            // Issue 13
            _ = sleep_until(state.next_status_change()) => {
                state.on_status_change();
                false
            }
            _ = shutdown.changed() => return,
        };
        if secret_events.is_none() && state.clients.synced(&scopes) {
            secret_events = Some(scoped::<Secret>(&client, &scopes, &config));
        }
        if dirty && deadline.is_none() {
            deadline = Some(Instant::now() + DEBOUNCE);
        }
    }
}

async fn next_or_pending<S: futures::Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
