//! Wiring: the Lease election, the client watches, the leader's writer and the key driver,
//! run side by side until shutdown.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use arc_swap::ArcSwap;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{Api, Client, runtime::events::Reporter};
use latchkey_core::{
    Issuer, UserDirectory,
    authorization_grant::GrantRecord,
    session_keys::{SessionKeyPolicy, SessionKeys},
};
use tokio::sync::{mpsc, watch};

use crate::{
    OperatorConfig, OperatorError, client_watch,
    collection_configmaps::CollectionConfigMaps,
    grant_sweep,
    key_driver::KeyDriver,
    key_secret::SecretKeyStore,
    leader::{self, LeaderConfig},
    observe::Observer,
    session_key_loop,
    session_key_secret::SessionKeySecret,
    user_status::UserStatusWriter,
    user_watch,
    writer::Writer,
};

/// The operator of one replica.
pub struct Operator {
    pub client: Client,
    pub cfg: OperatorConfig,
    /// The live state the token server reads.
    pub issuer: Arc<Issuer>,
    pub observer: Arc<dyn Observer>,
    /// Set once the lists are synced and a signing key is loaded.
    pub ready: Arc<AtomicBool>,
    // Issue 12: people who sign in.
    /// The users who may sign in, swapped whole on change (not part of readiness: the token
    /// service for clients never waits for users).
    pub users: Arc<ArcSwap<UserDirectory>>,
    /// The keys that seal session cookies, read from their Secret (advanced by the leader).
    pub session_keys: Arc<ArcSwap<SessionKeys>>,
    // Issue 11: client authentication by assertion.
    /// Checks clients' assertion sources for their status (the leader's writer runs it).
    pub trust_probe: Option<Arc<dyn crate::writer::TrustProbe>>,
}

impl Operator {
    /// Run until `shutdown`. Returns an error when the leader election dies, so the process
    /// exits rather than run without knowing who writes.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), OperatorError> {
        let Operator {
            client,
            cfg,
            issuer,
            observer,
            ready,
            users,
            session_keys,
            trust_probe,
        } = self;
        let (leading_tx, leading_rx) = watch::channel(false);
        let (synced_tx, synced_rx) = watch::channel(false);
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();

        let lease_cfg = LeaderConfig {
            name: cfg.lease_name.clone(),
            identity: cfg.identity.clone(),
            lease_duration: cfg.lease_duration,
            retry_period: cfg.retry_period,
        };
        let contact = observer.clone();
        let mut lease_task = tokio::spawn(leader::run(
            Api::<Lease>::namespaced(client.clone(), &cfg.namespace),
            lease_cfg,
            leading_tx,
            shutdown.clone(),
            move || contact.api_contact(),
        ));

        let reporter = Reporter {
            controller: "latchkey".into(),
            instance: Some(cfg.identity.clone()),
        };
        let (store, follow_keys) = SecretKeyStore::watch(
            Api::<Secret>::namespaced(client.clone(), &cfg.namespace),
            &cfg.keys_secret,
            cfg.key_policy.kid.clone(),
            reporter,
            observer.clone(),
        );
        let keys_follow_task = tokio::spawn(follow_keys);
        let driver = KeyDriver {
            store,
            policy: cfg.key_policy.clone(),
            issuer: issuer.clone(),
            observer: observer.clone(),
        };
        let keys_task = tokio::spawn(driver.run(None, leading_rx.clone(), shutdown.clone()));

        let sinks = client_watch::Sinks {
            issuer: issuer.clone(),
            observer: observer.clone(),
            changes: changes_tx,
            synced: synced_tx,
        };
        let watch_task = tokio::spawn(client_watch::run(
            client.clone(),
            cfg.scopes(),
            sinks,
            shutdown.clone(),
        ));
        // Issue 12: the users' watch and the status writer, beside the clients'.
        let (user_changes_tx, user_changes_rx) = mpsc::unbounded_channel();
        let user_sinks = user_watch::UserSinks {
            directory: users,
            observer: observer.clone(),
            changes: user_changes_tx,
        };
        let user_watch_task = tokio::spawn(user_watch::run(
            client.clone(),
            cfg.scopes(),
            user_sinks,
            shutdown.clone(),
        ));
        let user_status = UserStatusWriter {
            client: client.clone(),
        };
        let user_status_task =
            tokio::spawn(user_status.run(user_changes_rx, leading_rx.clone(), shutdown.clone()));
        let grants = CollectionConfigMaps::<GrantRecord>::grants(client.clone(), &cfg.namespace);
        let grant_sweep_task = tokio::spawn(grant_sweep::run(
            grants,
            grant_sweep::SWEEP_EVERY,
            leading_rx.clone(),
            shutdown.clone(),
        ));
        let session_key_task = tokio::spawn(session_key_loop::run(
            SessionKeySecret::new(client.clone(), &cfg.namespace),
            SessionKeyPolicy::default(),
            session_key_loop::POLL_EVERY,
            session_keys,
            leading_rx.clone(),
            shutdown.clone(),
        ));
        let mut writer = Writer::new(client, &cfg.identity, &cfg.token_url);
        // Issue 11: client authentication by assertion.
        if let Some(probe) = trust_probe {
            writer = writer.with_trust_probe(probe);
        }
        let leading_observer = observer.clone();
        let writer_task = tokio::spawn(writer.run(
            changes_rx,
            leading_rx,
            move |leading| leading_observer.leading(leading),
            shutdown.clone(),
        ));
        let readiness = tokio::spawn(track_readiness(issuer, synced_rx, ready, shutdown));

        let result = match (&mut lease_task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(OperatorError::Lease(format!("the lease task died: {e}"))),
        };
        for task in [
            keys_follow_task,
            keys_task,
            watch_task,
            writer_task,
            readiness,
            user_watch_task,
            user_status_task,
            grant_sweep_task,
            session_key_task,
        ] {
            task.abort();
        }
        result
    }
}

/// Ready once the lists are synced and a signing key is loaded.
async fn track_readiness(
    issuer: Arc<Issuer>,
    mut synced: watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        let is_ready = *synced.borrow() && issuer.keys().is_some();
        ready.store(is_ready, Ordering::Release);
        tokio::select! {
            r = synced.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
    }
}
