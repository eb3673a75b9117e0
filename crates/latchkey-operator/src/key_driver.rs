//! The loop around the one key driver ([`latchkey_core::key_driver::pass`]), for both run
//! modes: every second, and whenever the store changes, the writer (the Lease holder in a
//! cluster; always, standalone) runs a pass; every replica then serves the stored ring,
//! swapping its signer when the ring changed. The policy's retention follows the longest token
//! lifetime in force in the live registry.

use std::{sync::Arc, time::Duration};

use latchkey_core::{
    Issuer,
    key_driver::{self, DriverError, KeyRequests, Pass, StoredKeys},
    keyring::{KeyRing, RotationPolicy},
    store::{DocumentStore, StoreError},
};
use tokio::sync::watch;

use crate::observe::Observer;

/// How often the driver looks at the schedule.
pub const TICK: Duration = Duration::from_secs(1);

/// What a key store adds for the loop: a signal that it changed, and where the outcome of a
/// pass is reported (Events on the Secret in a cluster, the log standalone).
pub trait KeyHome: DocumentStore<StoredKeys> {
    /// Resolves when the stored keys may have changed; never, for a store that is polled.
    fn changed(&mut self) -> impl Future<Output = ()> + Send;
    fn report(&self, pass: &Pass) -> impl Future<Output = ()> + Send;
}

/// The driver of one process.
pub struct KeyDriver<S> {
    pub store: S,
    /// The configured policy; retention is stretched to the registry's longest lifetime.
    pub policy: RotationPolicy,
    pub issuer: Arc<Issuer>,
    pub observer: Arc<dyn Observer>,
}

impl<S: KeyHome> KeyDriver<S> {
    /// The policy of this moment.
    pub fn policy_now(&self) -> RotationPolicy {
        self.policy
            .covering(self.issuer.registry().longest_token_lifetime())
    }

    /// One turn: a pass when `writer`, then serve what is stored. Returns the ring served.
    pub async fn turn(&self, writer: bool, serving: Option<&KeyRing>) -> Option<KeyRing> {
        let policy = self.policy_now();
        let mut ring = None;
        let mut events = Vec::new();
        if writer {
            let now = std::time::SystemTime::now();
            match key_driver::pass(&self.store, &policy, KeyRequests::default(), now).await {
                Ok(pass) => {
                    if !pass.events.is_empty() || !pass.refused.is_empty() {
                        self.observer.key_events(&pass.events);
                        self.store.report(&pass).await;
                    }
                    events = pass.events;
                    ring = Some(pass.ring);
                }
                Err(DriverError::Store(StoreError::Conflict)) => {
                    tracing::debug!("the keys changed meanwhile; the next pass reads them");
                }
                Err(DriverError::Store(StoreError::NotYetKnown)) => {
                    tracing::debug!("the keys are not listed yet");
                }
                Err(e) => {
                    self.observer.key_pass_failed();
                    tracing::warn!(error = %e, "signing keys not advanced; the keys in use keep serving");
                }
            }
        }
        if ring.is_none() {
            ring = match self.store.load().await {
                Ok(stored) => stored.map(|s| s.value.ring),
                Err(StoreError::Unavailable(_) | StoreError::NotYetKnown) => None,
                Err(e) => {
                    tracing::error!(error = %e, "signing keys are not readable; keeping the keys in use");
                    None
                }
            };
        }
        let ring = ring?;
        if serving == Some(&ring) {
            return Some(ring);
        }
        match ring.key_set() {
            Ok(set) => {
                tracing::info!(active = %set.active().kid(), published = set.published().len(), "signing keys loaded");
                if let Some(earlier) = serving {
                    // Revoked elsewhere (`latchkey keys revoke`, another leader): say what it
                    // means. A retired key whose time was up went the routine way.
                    let now = latchkey_core::token::unix_seconds(std::time::SystemTime::now());
                    let due = |kid: &String| {
                        earlier.keys.iter().any(|k| {
                            &k.kid == kid
                                && k.remove_at(policy.clock_skew).is_some_and(|t| t <= now)
                        })
                    };
                    for kid in ring
                        .revoked_since(earlier, &events)
                        .into_iter()
                        .filter(|k| !due(k))
                    {
                        let note = latchkey_core::keyring::revocation_note(&kid);
                        tracing::warn!(kid = %kid, note = %note, "signing key revoked");
                    }
                }
                self.observer.keys_swapped(&set, &ring, &policy);
                self.issuer.replace_keys(set);
                Some(ring)
            }
            Err(e) => {
                tracing::error!(error = %e, "signing keys are invalid; keeping the keys in use");
                serving.cloned()
            }
        }
    }

    /// Run until `shutdown`, starting from the ring already `serving` (if any); passes only
    /// while `writer` is true.
    pub async fn run(
        mut self,
        mut serving: Option<KeyRing>,
        mut writer: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let leading = *writer.borrow_and_update();
            serving = self.turn(leading, serving.as_ref()).await.or(serving);
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.store.changed() => {}
                r = writer.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }
}
