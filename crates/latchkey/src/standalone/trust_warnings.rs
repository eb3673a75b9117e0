//! Issue 11: standalone mode has no status to write, so a federated issuer or `jwksUri` that
//! cannot be resolved is said in the log: one warning line per entry when it becomes
//! unresolvable (at load too) or its cause changes, one line when it resolves again. Checked at
//! start, on each clients reload and every [`CHECK_EVERY`], through the token server's own
//! caches ([`latchkey_server::trust_check`]), off the token path.

use std::{collections::HashMap, sync::Arc, time::Duration};

use latchkey_core::trust_check::Finding;
use latchkey_server::App;
use tokio::sync::watch;

/// How often every entry is checked again.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often the registry is looked at for a reload.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// An entry of a client: (client id, entry name).
type EntryKey = (String, String);

/// What to log about one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Unresolved {
        client: String,
        entry: String,
        reason: &'static str,
        why: &'static str,
    },
    ResolvedAgain {
        client: String,
        entry: String,
    },
}

/// What changed between the entries `known` held and `found` (every entry of this round),
/// which becomes `known`. An entry seen for the first time is said only when unresolved.
pub fn changes(
    known: &mut HashMap<EntryKey, Finding>,
    found: Vec<(EntryKey, Finding)>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut next = HashMap::with_capacity(found.len());
    for (key, finding) in found {
        let before = known.get(&key);
        if before != Some(&finding) {
            match &finding {
                Finding::Unresolved { reason, why } => lines.push(Line::Unresolved {
                    client: key.0.clone(),
                    entry: key.1.clone(),
                    reason,
                    why,
                }),
                Finding::Resolved if before.is_some() => lines.push(Line::ResolvedAgain {
                    client: key.0.clone(),
                    entry: key.1.clone(),
                }),
                Finding::Resolved => {}
            }
        }
        next.insert(key, finding);
    }
    *known = next;
    lines
}

/// Every federated issuer and client key source of the registry, checked.
async fn check_all(app: &App) -> Vec<(EntryKey, Finding)> {
    let registry = app.issuer.registry();
    let mut found = Vec::new();
    for client in registry.clients() {
        let trust = client.assertion_trust();
        if trust.federated.is_empty() && trust.jwks_uri.is_none() && trust.jwks_from.is_none() {
            continue;
        }
        let e = latchkey_server::trust_check::entries(app, trust).await;
        for (entry, finding) in e.issuers.into_iter().chain(e.keys) {
            found.push(((client.client_id().to_owned(), entry), finding));
        }
    }
    found
}

/// Check until `shutdown`, logging what changes.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut known = HashMap::new();
    let mut checked = None;
    let mut every = tokio::time::interval(CHECK_EVERY);
    let mut poll = tokio::time::interval(RELOAD_POLL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = poll.tick() => {
                if checked.as_ref().is_some_and(|r| Arc::ptr_eq(r, &app.issuer.registry())) {
                    continue;
                }
            }
            _ = shutdown.changed() => return,
        }
        checked = Some(app.issuer.registry());
        for line in changes(&mut known, check_all(&app).await) {
            match line {
                Line::Unresolved {
                    client,
                    entry,
                    reason,
                    why,
                } => tracing::warn!(
                    client_id = %client,
                    %entry,
                    reason,
                    why,
                    "a client's assertion source cannot be resolved"
                ),
                Line::ResolvedAgain { client, entry } => tracing::info!(
                    client_id = %client,
                    %entry,
                    "a client's assertion source resolves again"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_said_when_it_fails_changes_cause_or_recovers() {
        let key = |e: &str| ("ci".to_owned(), e.to_owned());
        let down = |why| Finding::Unresolved {
            reason: "DiscoveryFailed",
            why,
        };
        let mut known = HashMap::new();
        let first = changes(
            &mut known,
            vec![(key("a"), Finding::Resolved), (key("b"), down("refused"))],
        );
        assert_eq!(
            first,
            [Line::Unresolved {
                client: "ci".into(),
                entry: "b".into(),
                reason: "DiscoveryFailed",
                why: "refused"
            }],
            "a resolved entry is not said at load"
        );
        let same = changes(
            &mut known,
            vec![(key("a"), Finding::Resolved), (key("b"), down("refused"))],
        );
        assert!(same.is_empty(), "the same finding is said once");
        let lines = changes(
            &mut known,
            vec![(key("a"), down("timed out")), (key("b"), Finding::Resolved)],
        );
        assert_eq!(lines.len(), 2);
        assert!(matches!(&lines[1], Line::ResolvedAgain { entry, .. } if entry == "b"));
        // An entry removed from the files is forgotten.
        assert!(changes(&mut known, Vec::new()).is_empty());
        assert!(known.is_empty());
    }
}
