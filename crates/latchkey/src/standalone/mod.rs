//! `latchkey standalone`: the token service with no cluster, from YAML files and a local state
//! directory.

pub mod clients;
pub mod keys;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use latchkey_core::{Issuer, TokenSettings, keyring::RotationPolicy};
use latchkey_server::Metrics;
use tokio::sync::watch;

use crate::{
    cli::{KidStrategyArg, StandaloneArgs},
    error::Error,
    files,
    serving::{self, unix_now},
};

pub async fn run(args: StandaloneArgs) -> Result<(), Error> {
    let state_dir = &args.serve.state_dir;
    files::ensure_private_dir(state_dir)?;
    let policy = args.keys.policy(
        KidStrategyArg::Static,
        args.serve.jwks_max_age,
        args.serve.token_lifetime,
    );
    let (ring, ()) = keys::update(state_dir, &policy, |ring| {
        keys::check_static_alg(state_dir, ring, &policy)?;
        ring.advance(&policy, std::time::SystemTime::now())?;
        Ok(())
    })?;
    if !policy.rotates() {
        tracing::info!(kid = %args.keys.kid, "static kid: automatic key rotation is off");
    }
    let keys = ring.key_set()?;
    let registry = match &args.clients {
        Some(path) => {
            let registry = clients::load(path)?;
            tracing::info!(path = %path.display(), clients = registry.len(), "clients loaded");
            registry
        }
        None => {
            tracing::warn!(
                client_id = latchkey_core::apk::DEFAULT_CLIENT_ID,
                "no --clients given: serving APK's default non-production client, whose secret is public; for testing only"
            );
            clients::apk_default()
        }
    };
    let metrics = Arc::new(Metrics::new());
    metrics.observe_registry(&registry);
    metrics.observe_sync(unix_now());
    metrics.observe_key_ring(&ring, &policy);
    let settings = TokenSettings {
        issuer: args.serve.issuer.clone(),
        default_lifetime: args.serve.token_lifetime,
    };
    serving::check_lifetime(&settings)?;
    let issuer = Arc::new(Issuer::new(settings, registry, Some(keys)));
    let ready = Arc::new(AtomicBool::new(true));
    let (app, admin) = serving::handlers(&args.serve, issuer.clone(), metrics.clone(), ready);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(advance_keys(
        state_dir.clone(),
        policy,
        ring,
        issuer.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    ));
    if let Some(path) = args.clients.clone() {
        tokio::spawn(watch_clients(
            path,
            args.serve.reload_interval,
            issuer,
            metrics,
            shutdown_rx,
        ));
    }
    serving::run(&args.serve, app, admin, shutdown_tx, std::future::pending()).await
}

/// Advance the key lifecycle every second and pick up changes `latchkey keys` made, swapping
/// the signer whenever the ring changes.
async fn advance_keys(
    dir: PathBuf,
    base: RotationPolicy,
    mut serving: latchkey_core::keyring::KeyRing,
    issuer: Arc<Issuer>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        // Tokens of the longest-lived client bound how long a retired key stays published.
        let longest = issuer
            .registry()
            .clients()
            .filter_map(|c| c.token_lifetime())
            .max()
            .unwrap_or_default();
        let policy = RotationPolicy {
            max_token_lifetime: base.max_token_lifetime.max(longest),
            ..base.clone()
        };
        let dir2 = dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            keys::update(&dir2, &policy, |ring| {
                Ok(ring.advance(&policy, std::time::SystemTime::now())?)
            })
            .and_then(|(ring, events)| Ok((ring.key_set()?, ring, events, policy)))
        })
        .await;
        match result {
            Ok(Ok((set, ring, events, policy))) => {
                metrics.observe_key_events(&events);
                for ev in &events {
                    tracing::info!(event = ?ev, "signing keys");
                }
                if ring != serving {
                    for kid in ring.revoked_since(&serving, &events) {
                        let note = latchkey_core::keyring::revocation_note(&kid);
                        tracing::warn!(kid = %kid, note = %note, "signing key revoked");
                    }
                    metrics.observe_key_ring(&ring, &policy);
                    issuer.replace_keys(set);
                    serving = ring;
                    metrics.observe_reload("keys", true);
                }
            }
            Ok(Err(e)) => {
                metrics.observe_reload("keys", false);
                tracing::error!(error = %e, "signing keys not advanced; the keys in use keep serving");
            }
            Err(e) => tracing::error!(error = %e, "signing keys task failed"),
        }
    }
}

/// Reload the clients whenever the manifests change; a failed load keeps the last good state.
async fn watch_clients(
    path: PathBuf,
    every: Duration,
    issuer: Arc<Issuer>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = clients::fingerprint(&path);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clients::fingerprint(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || clients::load(&path)).await
        };
        match loaded {
            Ok(Ok(registry)) => {
                tracing::info!(path = %path.display(), clients = registry.len(), "clients reloaded");
                metrics.observe_registry(&registry);
                metrics.observe_sync(unix_now());
                metrics.observe_reload("clients", true);
                issuer.replace_registry(registry);
            }
            Ok(Err(e)) => {
                metrics.observe_reload("clients", false);
                for problem in &e.0 {
                    tracing::error!(
                        file = %problem.file.display(),
                        document = problem.doc,
                        reason = %problem.reason,
                        "clients not reloaded; the last good clients keep serving"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "clients reload task failed"),
        }
    }
}
