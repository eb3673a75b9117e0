//! Wiring: watches feed the index; each change is resolved into a new registry snapshot for
//! the token server; the Lease holder writes what the resolution calls for.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use latchkey_api::OAuthClient;
use latchkey_core::{
    Issuer, KeySet, Registry,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use crate::{
    OperatorError,
    index::{CredentialsToCreate, Index, ObjKey, Outcome, key_of},
    keys,
    leader::{self, LeaderConfig},
    writer::Writer,
};

/// How long to gather a burst of events before resolving.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// The leader re-checks everything this often even without events (retries failed writes).
const RESYNC: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Watch these namespaces; `None`: all.
    pub namespaces: Option<Vec<String>>,
    /// The operator's own namespace: Lease and signing-key Secret.
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
    pub keys_secret: String,
    /// Kind of keys and their schedule; `max_token_lifetime` is the server default (clients
    /// with longer lifetimes extend it).
    pub key_policy: RotationPolicy,
    /// Written into generated credentials as `tokenUrl`.
    pub token_url: String,
}

/// Hooks for metrics: the operator does not know how they are exported.
pub trait Observer: Send + Sync + 'static {
    fn registry_swapped(&self, registry: &Registry);
    /// A new key set is serving; `next_rotation` in Unix seconds when rotation is on.
    fn keys_swapped(&self, keys: &KeySet, ring: &KeyRing, next_rotation: Option<u64>);
    /// The leader changed the keys.
    fn key_events(&self, events: &[KeyEvent]);
    /// The API server answered (a watch event or a Lease call).
    fn api_contact(&self);
    fn leading(&self, leading: bool);
}

/// What the index task hands the writer (only once everything is listed: before that, an
/// outcome may rest on objects not seen yet).
#[derive(Default)]
struct WorkItem {
    outcomes: Vec<Outcome>,
    to_create: Vec<CredentialsToCreate>,
    clients: HashMap<ObjKey, Arc<OAuthClient>>,
}

/// Where the signing keys Secret stands, as this replica last saw it.
#[derive(Debug, Clone)]
pub enum KeysState {
    Unknown,
    Absent,
    Present(Arc<Secret>),
}

type Scoped<K> = (Option<String>, Result<Event<K>, watcher::Error>);

fn scoped_watch<K>(
    client: &Client,
    namespaces: &Option<Vec<String>>,
    config: watcher::Config,
) -> BoxStream<'static, Scoped<K>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let streams: Vec<BoxStream<'static, Scoped<K>>> = match namespaces {
        None => vec![tagged(None, Api::<K>::all(client.clone()), config)],
        Some(list) => list
            .iter()
            .map(|ns| {
                tagged(
                    Some(ns.clone()),
                    Api::<K>::namespaced(client.clone(), ns),
                    config.clone(),
                )
            })
            .collect(),
    };
    futures::stream::select_all(streams).boxed()
}

fn tagged<K>(
    scope: Option<String>,
    api: Api<K>,
    config: watcher::Config,
) -> BoxStream<'static, Scoped<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    watcher::watcher(api, config)
        .backoff(crate::backoff::watch_backoff())
        .map(move |e| (scope.clone(), e))
        .boxed()
}

/// Events of one relist, gathered until `InitDone`: the objects kept, and (for Secrets) the
/// names of all listed.
struct Relist<K> {
    pending: HashMap<Option<String>, Vec<K>>,
    names: HashMap<Option<String>, Vec<ObjKey>>,
    synced: HashSet<Option<String>>,
}

impl<K> Relist<K> {
    fn new() -> Self {
        Relist {
            pending: HashMap::new(),
            names: HashMap::new(),
            synced: HashSet::new(),
        }
    }
}

/// Run the operator until `shutdown`. Returns an error when the leader election dies, so
/// the process exits rather than run without knowing who writes.
pub async fn run(
    client: Client,
    cfg: OperatorConfig,
    issuer: Arc<Issuer>,
    observer: Arc<dyn Observer>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OperatorError> {
    let cfg = Arc::new(cfg);
    let (leading_tx, leading_rx) = watch::channel(false);
    let (work_tx, work_rx) = watch::channel(Arc::new(WorkItem::default()));
    let (keys_tx, keys_rx) = watch::channel(KeysState::Unknown);
    let (synced_tx, synced_rx) = watch::channel(false);
    let (lifetime_tx, lifetime_rx) = watch::channel(cfg.key_policy.max_token_lifetime);

    let lease_api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let lease_cfg = LeaderConfig {
        name: cfg.lease_name.clone(),
        identity: cfg.identity.clone(),
        lease_duration: cfg.lease_duration,
        retry_period: cfg.retry_period,
    };
    let contact = observer.clone();
    let mut lease_task = tokio::spawn(leader::run(
        lease_api,
        lease_cfg,
        leading_tx,
        shutdown.clone(),
        move || contact.api_contact(),
    ));
    let rotator_task = tokio::spawn(crate::rotator::run(
        client.clone(),
        cfg.clone(),
        observer.clone(),
        leading_rx.clone(),
        keys_rx.clone(),
        lifetime_rx,
        shutdown.clone(),
    ));

    let keys_task = tokio::spawn(watch_keys(
        client.clone(),
        cfg.clone(),
        issuer.clone(),
        observer.clone(),
        keys_tx,
        shutdown.clone(),
    ));
    let index_task = tokio::spawn(watch_index(
        client.clone(),
        cfg.clone(),
        issuer.clone(),
        observer.clone(),
        work_tx,
        synced_tx,
        lifetime_tx,
        shutdown.clone(),
    ));
    let writer_task = tokio::spawn(write_loop(
        client,
        cfg,
        observer.clone(),
        leading_rx,
        work_rx,
        shutdown.clone(),
    ));

    // Ready once the lists are synced and a signing key is loaded.
    let readiness = {
        let (mut synced_rx, mut keys_rx, mut shutdown) = (synced_rx, keys_rx, shutdown.clone());
        let issuer = issuer.clone();
        tokio::spawn(async move {
            loop {
                let is_ready = *synced_rx.borrow() && issuer.keys().is_some();
                ready.store(is_ready, Ordering::Release);
                tokio::select! {
                    r = synced_rx.changed() => if r.is_err() { return },
                    r = keys_rx.changed() => if r.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        })
    };

    let result = tokio::select! {
        r = &mut lease_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(OperatorError::Lease(format!("the lease task died: {e}"))),
        },
    };
    for task in [keys_task, index_task, writer_task, rotator_task, readiness] {
        task.abort();
    }
    result
}

async fn watch_keys(
    client: Client,
    cfg: Arc<OperatorConfig>,
    issuer: Arc<Issuer>,
    observer: Arc<dyn Observer>,
    state: watch::Sender<KeysState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Secret> = Api::namespaced(client, &cfg.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", cfg.keys_secret));
    let mut events = watcher::watcher(api, config)
        .backoff(crate::backoff::watch_backoff())
        .boxed();
    let mut seen_in_relist = false;
    let apply = |secret: &Secret| {
        let loaded =
            keys::read(secret, &cfg.key_policy.kid).and_then(|ring| Ok((ring.key_set()?, ring)));
        match loaded {
            Ok((set, ring)) => {
                let changed = issuer
                    .keys()
                    .is_none_or(|current| current.jwks_json() != set.jwks_json());
                if changed {
                    tracing::info!(active = %set.active().kid(), published = set.published().len(), "signing keys loaded");
                }
                observer.keys_swapped(&set, &ring, ring.next_rotation_at(&cfg.key_policy));
                issuer.replace_keys(set);
            }
            Err(e) => {
                tracing::error!(error = %e, "signing keys Secret is invalid; keeping the keys in use")
            }
        }
    };
    loop {
        let event = tokio::select! {
            e = events.next() => match e { Some(e) => e, None => return },
            _ = shutdown.changed() => return,
        };
        match event {
            Ok(ev) => {
                observer.api_contact();
                match ev {
                    Event::Init => seen_in_relist = false,
                    Event::InitApply(s) | Event::Apply(s) => {
                        seen_in_relist = true;
                        apply(&s);
                        state.send_replace(KeysState::Present(Arc::new(s)));
                    }
                    Event::InitDone => {
                        if !seen_in_relist {
                            state.send_replace(KeysState::Absent);
                        }
                    }
                    Event::Delete(_) => {
                        tracing::warn!(
                            "signing keys Secret deleted; signing on with the keys in memory until it is written again"
                        );
                        state.send_replace(KeysState::Absent);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the signing keys failed; retrying"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn watch_index(
    client: Client,
    cfg: Arc<OperatorConfig>,
    issuer: Arc<Issuer>,
    observer: Arc<dyn Observer>,
    work: watch::Sender<Arc<WorkItem>>,
    synced: watch::Sender<bool>,
    max_lifetime: watch::Sender<std::time::Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let scopes: Vec<Option<String>> = match &cfg.namespaces {
        None => vec![None],
        Some(list) => list.iter().cloned().map(Some).collect(),
    };
    let mut clients =
        scoped_watch::<OAuthClient>(&client, &cfg.namespaces, watcher::Config::default());
    // Secrets are watched once the clients are known, so a relist keeps exactly those needed.
    let mut secrets: Option<BoxStream<'static, Scoped<Secret>>> = None;
    let (fetched_tx, mut fetched_rx) =
        mpsc::channel::<(ObjKey, Result<Option<Secret>, kube::Error>)>(256);
    let mut fetching: HashSet<ObjKey> = HashSet::new();
    let mut index = Index::default();
    let mut client_relist = Relist::<OAuthClient>::new();
    let mut secret_relist = Relist::<Secret>::new();
    let mut deadline: Option<Instant> = None;

    loop {
        let dirty = tokio::select! {
            Some((scope, ev)) = clients.next() => {
                handle_client_event(&mut index, &mut client_relist, scope, ev, &*observer)
            }
            Some((scope, ev)) = next_or_pending(&mut secrets) => {
                handle_secret_event(&mut index, &mut secret_relist, scope, ev, &*observer)
            }
            Some((key, result)) = fetched_rx.recv() => {
                fetching.remove(&key);
                match result {
                    Ok(s) => { observer.api_contact(); index.fetched_secret(&key, s.as_ref()); true }
                    Err(e) => { tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %e, "reading a Secret failed"); false }
                }
            }
            _ = sleep_until(deadline) => {
                deadline = None;
                let all_synced = scopes.iter().all(|s| client_relist.synced.contains(s) && secret_relist.synced.contains(s));
                if all_synced {
                    index.mark_secrets_listed();
                }
                let resolution = index.resolve();
                let longest = resolution.registry.clients().filter_map(|c| c.token_lifetime()).max().unwrap_or_default();
                max_lifetime.send_if_modified(|d| {
                    let want = longest.max(cfg.key_policy.max_token_lifetime);
                    std::mem::replace(d, want) != want
                });
                observer.registry_swapped(&resolution.registry);
                issuer.replace_registry(resolution.registry);
                if all_synced {
                    let clients_map = index.clients().map(|c| (key_of(c.as_ref()), c.clone())).collect();
                    work.send_replace(Arc::new(WorkItem { outcomes: resolution.outcomes, to_create: resolution.to_create, clients: clients_map }));
                }
                if secrets.is_some() {
                    for key in index.unknown_secrets() {
                        if fetching.insert(key.clone()) {
                            let api: Api<Secret> = Api::namespaced(client.clone(), &key.0);
                            let tx = fetched_tx.clone();
                            tokio::spawn(async move {
                                let r = api.get_opt(&key.1).await;
                                let _ = tx.send((key, r)).await;
                            });
                        }
                    }
                }
                if all_synced && !*synced.borrow() {
                    synced.send_replace(true);
                }
                false
            }
            _ = shutdown.changed() => return,
        };
        if secrets.is_none() && scopes.iter().all(|s| client_relist.synced.contains(s)) {
            secrets = Some(scoped_watch::<Secret>(
                &client,
                &cfg.namespaces,
                watcher::Config::default(),
            ));
        }
        if dirty && deadline.is_none() {
            deadline = Some(Instant::now() + DEBOUNCE);
        }
    }
}

async fn next_or_pending<S: Stream + Unpin>(s: &mut Option<S>) -> Option<S::Item> {
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

fn handle_client_event(
    index: &mut Index,
    relist: &mut Relist<OAuthClient>,
    scope: Option<String>,
    ev: Result<Event<OAuthClient>, watcher::Error>,
    observer: &dyn Observer,
) -> bool {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            // A malformed object or a lost connection: logged, never fatal to the watch.
            tracing::warn!(error = %e, "watching OAuthClients: retrying");
            return false;
        }
    };
    observer.api_contact();
    match ev {
        Event::Apply(c) => index.apply_client(c),
        Event::Delete(c) => index.delete_client(&key_of(&c)),
        Event::Init => {
            relist.pending.insert(scope, Vec::new());
            return false;
        }
        Event::InitApply(c) => {
            relist.pending.entry(scope).or_default().push(c);
            return false;
        }
        Event::InitDone => {
            let list = relist.pending.remove(&scope).unwrap_or_default();
            tracing::info!(
                namespace = scope.as_deref().unwrap_or("*"),
                clients = list.len(),
                "OAuthClients listed"
            );
            index.replace_clients(scope.as_deref(), list);
            relist.synced.insert(scope);
        }
    }
    true
}

fn handle_secret_event(
    index: &mut Index,
    relist: &mut Relist<Secret>,
    scope: Option<String>,
    ev: Result<Event<Secret>, watcher::Error>,
    observer: &dyn Observer,
) -> bool {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "watching Secrets: retrying");
            return false;
        }
    };
    observer.api_contact();
    match ev {
        Event::Apply(s) => index.apply_secret(&s),
        Event::Delete(s) => index.delete_secret(&key_of(&s)),
        Event::Init => {
            relist.pending.insert(scope.clone(), Vec::new());
            relist.names.insert(scope, Vec::new());
            return false;
        }
        Event::InitApply(s) => {
            // Keep only what could matter, so a relist of a large cluster costs little memory.
            let key = key_of(&s);
            let keep =
                index.secret_wanted(&key) || crate::index::SecretEntry::from_secret(&s).managed;
            relist.names.entry(scope.clone()).or_default().push(key);
            if keep {
                relist.pending.entry(scope).or_default().push(s);
            }
            return false;
        }
        Event::InitDone => {
            let keep = relist.pending.remove(&scope).unwrap_or_default();
            let names = relist.names.remove(&scope).unwrap_or_default();
            index.replace_secrets(scope.as_deref(), names, &keep);
            relist.synced.insert(scope);
        }
    }
    true
}

async fn write_loop(
    client: Client,
    cfg: Arc<OperatorConfig>,
    observer: Arc<dyn Observer>,
    mut leading: watch::Receiver<bool>,
    mut work: watch::Receiver<Arc<WorkItem>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let writer = Writer::new(client, cfg);
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            r = work.changed() => if r.is_err() { return },
            r = leading.changed() => {
                if r.is_err() { return }
                observer.leading(*leading.borrow());
            }
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !*leading.borrow() {
            continue;
        }
        let item = work.borrow_and_update().clone();
        writer
            .create_credentials(&item.to_create, &item.clients)
            .await;
        // Clients whose credentials were just made change state as soon as the watch brings
        // their Secret: writing "pending" for them now would only be overwritten.
        let just_created: HashSet<&ObjKey> = item.to_create.iter().map(|c| &c.owner).collect();
        let outcomes: Vec<Outcome> = item
            .outcomes
            .iter()
            .filter(|o| !just_created.contains(&key_of(o.client.as_ref())))
            .cloned()
            .collect();
        writer.write_statuses(&outcomes).await;
    }
}
