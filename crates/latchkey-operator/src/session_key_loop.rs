//! Keeps this process's session-cookie keys current, in both run modes: the writer (the Lease
//! holder in a cluster, always standalone) runs the driver pass (create, rotate, drop); every
//! other replica reads the stored keys. Either way the keys in use are swapped whole. A next key
//! is stored the policy's lead before it seals, so readers polling every `every` (well under
//! the lead) have it before any cookie sealed with it reaches them.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use latchkey_core::{
    session_keys::{self, SessionKeyPolicy, SessionKeys},
    store::DocumentStore,
};
use tokio::sync::watch;

/// How often the stored keys are read (or, by the writer, advanced).
pub const POLL_EVERY: Duration = Duration::from_secs(30);

/// How often a replica that has no keys yet reads them: one started beside the first writer
/// must not refuse every sign-in for a whole `POLL_EVERY` after the writer made them.
pub const WITHOUT_KEYS_EVERY: Duration = Duration::from_secs(1);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Run until `shutdown`.
pub async fn run<S: DocumentStore<SessionKeys>>(
    store: S,
    policy: SessionKeyPolicy,
    every: Duration,
    keys: Arc<ArcSwap<SessionKeys>>,
    mut writer: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::ZERO;
    loop {
        // A new writer runs a pass at once (the first replica makes the keys without waiting).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = writer.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let result = if *writer.borrow() {
            session_keys::pass(&store, &policy, unix_now())
                .await
                .map(Some)
        } else {
            store.load().await.map(|v| v.map(|v| v.value))
        };
        match result {
            Ok(Some(current)) => {
                if **keys.load() != current {
                    tracing::info!(keys = current.keys.len(), "session cookie keys updated");
                    keys.store(Arc::new(current));
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "session cookie keys not refreshed; the keys in use stay")
            }
        }
        wait = next_wait(&keys.load(), every);
    }
}

fn next_wait(keys: &SessionKeys, every: Duration) -> Duration {
    if keys.keys.is_empty() {
        WITHOUT_KEYS_EVERY.min(every)
    } else {
        every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_without_keys_reads_them_again_within_a_second() {
        let none = SessionKeys::default();
        assert_eq!(next_wait(&none, POLL_EVERY), WITHOUT_KEYS_EVERY);
        assert_eq!(
            next_wait(&none, Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }
}
