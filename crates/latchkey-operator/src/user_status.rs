//! The status a `User` should show for its outcome, and the Lease holder's writer of it:
//! written by server-side apply only when it differs from what the User shows, so watch echoes
//! cause no writes. A failed write is retried on the next pass.

use std::{collections::HashMap, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use latchkey_api::{
    resolve::ObjKey,
    user::{User, UserStatus},
    user_resolve::UserOutcome,
};
use tokio::sync::{mpsc, watch};

use crate::user_watch::UserChanges;

const FIELD_MANAGER: &str = "latchkey";
/// How often statuses that could not be written are tried again.
const RETRY: Duration = Duration::from_secs(10);

/// The status this outcome calls for. Conditions whose status did not change keep their
/// `lastTransitionTime`.
pub fn desired(outcome: &UserOutcome, now: Time) -> UserStatus {
    let current = outcome.user.status.as_ref();
    let generation = outcome.user.metadata.generation;
    let conditions = outcome
        .state
        .conditions()
        .into_iter()
        .map(|(type_, ok, reason, message)| {
            let status = if ok { "True" } else { "False" }.to_owned();
            let previous = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.to_owned(),
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    UserStatus {
        user_id: Some(outcome.user_id.clone()),
        observed_generation: generation,
        conditions,
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Writes User statuses while this replica leads.
pub struct UserStatusWriter {
    pub client: Client,
}

impl UserStatusWriter {
    /// Server-side apply of one status; `Ok(())` also when the User is gone.
    async fn write(&self, key: &ObjKey, status: &UserStatus) -> Result<(), kube::Error> {
        let api: Api<User> = Api::namespaced(self.client.clone(), &key.0);
        let patch = serde_json::json!({
            "apiVersion": "latchkey.dev/v1alpha1",
            "kind": "User",
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.1, &params, &Patch::Apply(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Write every pending status that differs from what its User shows; what fails stays.
    async fn flush(&self, pending: &mut HashMap<ObjKey, UserOutcome>) {
        let keys: Vec<ObjKey> = pending.keys().cloned().collect();
        for key in keys {
            let Some(outcome) = pending.get(&key) else {
                continue;
            };
            let want = desired(outcome, now());
            if outcome.user.status.as_ref() == Some(&want) {
                pending.remove(&key);
                continue;
            }
            match self.write(&key, &want).await {
                Ok(()) => {
                    pending.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(user = %format!("{}/{}", key.0, key.1), error = %e, "User status not written; retrying");
                }
            }
        }
    }

    /// Run until `shutdown`: keep the latest outcome of every user, write while leading.
    pub async fn run(
        self,
        mut changes: mpsc::UnboundedReceiver<UserChanges>,
        mut leading: watch::Receiver<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Every user's latest outcome (a new leader checks them all), and those to write.
        let mut latest: HashMap<ObjKey, UserOutcome> = HashMap::new();
        let mut pending: HashMap<ObjKey, UserOutcome> = HashMap::new();
        let mut tick = tokio::time::interval(RETRY);
        loop {
            if *leading.borrow() && !pending.is_empty() {
                self.flush(&mut pending).await;
            }
            tokio::select! {
                c = changes.recv() => match c {
                    Some(c) => for (key, outcome) in c {
                        match outcome {
                            Some(o) => {
                                latest.insert(key.clone(), o.clone());
                                pending.insert(key, o);
                            }
                            None => {
                                latest.remove(&key);
                                pending.remove(&key);
                            }
                        }
                    },
                    None => return,
                },
                r = leading.changed() => {
                    if r.is_err() { return }
                    if *leading.borrow() {
                        pending.clone_from(&latest);
                    }
                }
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_api::user_resolve::UserState;
    use std::sync::Arc;

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn outcome(status: Option<UserStatus>, state: UserState) -> UserOutcome {
        let mut u = User::new("u", Default::default());
        u.metadata.generation = Some(4);
        u.status = status;
        UserOutcome {
            user: Arc::new(u),
            user_id: "uid-1".into(),
            state,
        }
    }

    #[test]
    fn ready_shows_the_id_and_every_condition_true() {
        let s = desired(&outcome(None, UserState::Ready), time(100));
        assert_eq!(s.user_id.as_deref(), Some("uid-1"));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.conditions.len(), 3);
        assert!(s.conditions.iter().all(|c| c.status == "True"));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = desired(&outcome(None, UserState::Ready), time(100));
        let again = desired(&outcome(Some(first.clone()), UserState::Ready), time(200));
        assert_eq!(again, first, "an echo needs no write");
        let disabled = desired(&outcome(Some(first), UserState::Disabled), time(300));
        let ready = &disabled.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Disabled")
        );
        assert_eq!(ready.last_transition_time, time(300));
        assert_eq!(disabled.conditions[1].last_transition_time, time(100));
    }
}
