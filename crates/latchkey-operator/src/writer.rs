//! What only the Lease holder writes: OAuthClient status (server-side apply, only on change),
//! generated credentials (create only, never overwrite), the signing-key Secret (create only
//! here), and Events for notable transitions.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use latchkey_api::{OAuthClient, OAuthClientStatus};

use crate::{
    OperatorError, credentials,
    index::{CredentialsToCreate, ObjKey, Outcome, key_of},
    run::OperatorConfig,
    status,
};

/// Field manager of Latchkey's server-side applies.
pub const FIELD_MANAGER: &str = "latchkey";
/// Writes in flight at once.
const CONCURRENCY: usize = 16;

/// The leader's writer. Remembers what it wrote so that a pass before the watch echo arrives
/// does not write the same thing again.
pub struct Writer {
    client: Client,
    recorder: Recorder,
    cfg: Arc<OperatorConfig>,
    written: Mutex<HashMap<ObjKey, OAuthClientStatus>>,
    creating: Mutex<HashSet<ObjKey>>,
}

/// Two statuses equal but for the conditions' transition times.
fn same_ignoring_times(a: &OAuthClientStatus, b: &OAuthClientStatus) -> bool {
    let strip = |s: &OAuthClientStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

fn transition_event(previous: Option<&Condition>, next: Option<&Condition>) -> Option<Event> {
    let next = next?;
    if previous.is_some_and(|p| p.status == next.status && p.reason == next.reason) {
        return None;
    }
    let type_ = if next.status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    Some(Event {
        type_,
        reason: next.reason.clone(),
        note: Some(next.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    })
}

impl Writer {
    pub fn new(client: Client, cfg: Arc<OperatorConfig>) -> Writer {
        let reporter = Reporter {
            controller: "latchkey".into(),
            instance: Some(cfg.identity.clone()),
        };
        Writer {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            cfg,
            written: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
        }
    }

    async fn event(&self, client: &OAuthClient, ev: Event) {
        if let Err(e) = self.recorder.publish(&ev, &client.object_ref(&())).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }

    /// Write every status that differs from what its object shows.
    pub async fn write_statuses(&self, outcomes: &[Outcome]) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut todo = Vec::new();
        {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            for outcome in outcomes {
                let key = key_of(outcome.client.as_ref());
                let desired = status::desired(outcome, now.clone());
                if !status::needs_write(outcome, &desired) {
                    written.remove(&key);
                    continue;
                }
                if written
                    .get(&key)
                    .is_some_and(|w| same_ignoring_times(w, &desired))
                {
                    continue;
                }
                todo.push((key, outcome.client.clone(), desired));
            }
        }
        futures::stream::iter(todo)
            .for_each_concurrent(CONCURRENCY, |(key, client, desired)| async move {
                let api: Api<OAuthClient> = Api::namespaced(self.client.clone(), &key.0);
                let patch = serde_json::json!({
                    "apiVersion": "latchkey.dev/v1alpha1",
                    "kind": "OAuthClient",
                    "status": desired,
                });
                let params = PatchParams::apply(FIELD_MANAGER).force();
                match api.patch_status(&key.1, &params, &Patch::Apply(&patch)).await {
                    Ok(_) => {
                        let previous = status::ready(client.status.as_ref());
                        if let Some(ev) = transition_event(previous, status::ready(Some(&desired))) {
                            self.event(&client, ev).await;
                        }
                        self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(key, desired);
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::warn!(client = %format!("{}/{}", key.0, key.1), error = %e, "status not written"),
                }
            })
            .await;
    }

    /// Create the generated credentials that are missing. A Secret that appeared meanwhile is
    /// left as it is (create fails with a conflict): a secret value is never overwritten.
    pub async fn create_credentials(
        &self,
        to_create: &[CredentialsToCreate],
        clients: &HashMap<ObjKey, Arc<OAuthClient>>,
    ) {
        let todo: Vec<_> = {
            let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            to_create
                .iter()
                .filter(|c| creating.insert((c.owner.0.clone(), c.secret_name.clone())))
                .filter_map(|c| clients.get(&c.owner).map(|o| (c.clone(), o.clone())))
                .collect()
        };
        futures::stream::iter(todo)
            .for_each_concurrent(CONCURRENCY, |(create, owner)| async move {
                let key = (create.owner.0.clone(), create.secret_name.clone());
                let result = self.create_one(&create, &owner).await;
                self.creating.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                if let Err(e) = result {
                    tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %e, "credentials not created");
                }
            })
            .await;
    }

    async fn create_one(
        &self,
        create: &CredentialsToCreate,
        owner: &OAuthClient,
    ) -> Result<(), OperatorError> {
        let secret = credentials::credentials_secret(
            owner,
            &create.secret_name,
            &create.client_id,
            &credentials::random_secret()?,
            &self.cfg.token_url,
        );
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &create.owner.0);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                let (reason, note, type_) = if create.recreate {
                    (
                        "CredentialsRecreated",
                        format!(
                            "generated Secret {} was missing: made it again with a new client secret (client id kept)",
                            create.secret_name
                        ),
                        EventType::Warning,
                    )
                } else {
                    (
                        "CredentialsCreated",
                        format!(
                            "generated Secret {} with new credentials",
                            create.secret_name
                        ),
                        EventType::Normal,
                    )
                };
                tracing::info!(client = %format!("{}/{}", create.owner.0, create.owner.1), secret = %create.secret_name, reason, "credentials written");
                let ev = Event {
                    type_,
                    reason: reason.into(),
                    note: Some(note),
                    action: "CreateCredentials".into(),
                    secondary: None,
                };
                self.event(owner, ev).await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, reason: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn events_only_on_ready_transitions() {
        assert!(
            transition_event(
                Some(&cond("True", "Registered")),
                Some(&cond("True", "Registered"))
            )
            .is_none()
        );
        let ev = transition_event(None, Some(&cond("True", "Registered"))).unwrap();
        assert_eq!(
            (ev.type_, ev.reason.as_str()),
            (EventType::Normal, "Registered")
        );
        let ev = transition_event(
            Some(&cond("True", "Registered")),
            Some(&cond("False", "ClientIdConflict")),
        )
        .unwrap();
        assert_eq!(ev.type_, EventType::Warning);
    }
}
