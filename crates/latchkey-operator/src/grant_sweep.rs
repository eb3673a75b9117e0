//! Garbage collection of expired authorization grants, in both run modes: every minute, while
//! this process is the writer (the Lease holder in a cluster, always standalone), the store
//! deletes the grants whose codes expired unredeemed or whose refresh tokens reached their end.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey_core::authorization_grant::{CollectionStore, GrantRecord};
use tokio::sync::watch;

/// How often expired grants are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Sweep `store` every `every` while `writer` says this process writes, until `shutdown`.
pub async fn run<S: CollectionStore<GrantRecord>>(
    store: S,
    every: Duration,
    writer: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !*writer.borrow() {
            continue;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match store.sweep(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired authorization grants swept"),
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired authorization grants failed; retrying")
            }
        }
    }
}
