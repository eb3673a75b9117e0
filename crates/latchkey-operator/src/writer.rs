//! What only the Lease holder writes for clients: OAuthClient status (server-side apply, only
//! when it differs) and generated credentials (create only, never overwrite), with Events only
//! for what a human must act on.
//!
//! Writes are a queue, not passes: credentials first (tokens wait for them), then statuses,
//! many in flight at once, each computed from the latest outcome when its turn comes. A
//! client costs at most two writes: its Secret and its status (a "pending" status is not
//! written for credentials that are being made, since it would be overwritten a moment later).
//!
//! Issue 11: the leader also checks that the sources a client trusts for assertions resolve
//! (a [`TrustProbe`], given by the binary), when the spec changes and every [`CHECK_EVERY`]
//! (a client whose source did not resolve: at every resync), a few at a time, each bounded by
//! [`CHECK_TIMEOUT`]; their verdicts join the status. A status waits for the check of its spec
//! (so a new client is written once, with them), and a periodic check that finds the same
//! causes no write. Which trust a client has is derived once per change of its outcome.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use latchkey_api::{
    OAuthClient, OAuthClientStatus,
    resolve::{ClientState, CredentialsToCreate, ObjKey, Outcome},
};
use latchkey_core::{assertion::AssertionTrust, trust_check::TrustFindings};
use tokio::sync::{mpsc, watch};

use crate::{OperatorError, client_watch::Changes, credentials, status};

/// Field manager of Latchkey's server-side applies.
pub const FIELD_MANAGER: &str = "latchkey";
/// Writes in flight at once.
const CONCURRENCY: usize = 32;
/// Everything is checked again this often (retries failed writes).
const RESYNC: Duration = Duration::from_secs(5);
// Issue 11: client authentication by assertion.
/// Every client's assertion sources are checked again this often.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// Trust checks in flight at once.
const CHECK_CONCURRENCY: usize = 8;
/// Longest one trust check may take (each fetch inside is bounded too).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Checks whether the sources a client trusts for assertions resolve (the binary's, over the
/// token server's caches).
pub trait TrustProbe: Send + Sync {
    fn check<'a>(&'a self, trust: &'a AssertionTrust) -> BoxFuture<'a, TrustFindings>;
}

/// The trust a client's status reports on: its assertion sources that can be checked
/// (ServiceAccounts, federated issuers, `jwksUri`, `jwksFrom`), if its spec is valid.
pub fn checked_trust(key: &ObjKey, outcome: &Outcome) -> Option<AssertionTrust> {
    let spec = &outcome.client.spec;
    let checkable = !spec.service_accounts.is_empty()
        || !spec.federated_identities.is_empty()
        || spec.jwks_uri.is_some()
        || spec.jwks_from.is_some();
    if !checkable || matches!(outcome.state, ClientState::InvalidSpec(_)) {
        return None;
    }
    latchkey_api::assertion_spec::trust(spec, &key.0).ok()
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

/// The Event for a change of the Ready condition: only when a client stops (or cannot start)
/// serving, which someone must look at; becoming ready is routine and the status says it.
pub fn transition_event(previous: Option<&Condition>, next: Option<&Condition>) -> Option<Event> {
    let next = next?;
    if next.status == "True" {
        return None;
    }
    if previous.is_some_and(|p| p.status == next.status && p.reason == next.reason) {
        return None;
    }
    Some(Event {
        type_: EventType::Warning,
        reason: next.reason.clone(),
        note: Some(next.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    })
}

/// The SSA body of a status.
pub fn status_patch(desired: &OAuthClientStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "latchkey.dev/v1alpha1",
        "kind": "OAuthClient",
        "status": desired,
    })
}

/// One write to do: credentials to create, or a client's status with the outcome it shows.
enum Job {
    Create(CredentialsToCreate),
    Status(ObjKey, Box<Outcome>, OAuthClientStatus),
}

/// How a job ended.
enum Done {
    Created {
        owner: ObjKey,
        secret: ObjKey,
        ok: bool,
    },
    Status {
        key: ObjKey,
        written: Option<OAuthClientStatus>,
    },
}

/// The writer's state: the latest outcome of every client, and what is queued.
#[derive(Default)]
pub struct Plan {
    outcomes: HashMap<ObjKey, Outcome>,
    to_create: HashMap<ObjKey, CredentialsToCreate>,
    /// Owners whose credentials are due to be created, in order.
    create_queue: BTreeSet<ObjKey>,
    /// Credentials Secrets created (or being created) and not yet seen by the watch.
    created: HashSet<ObjKey>,
    /// What was written last per client, until the watch echo shows it.
    written: HashMap<ObjKey, OAuthClientStatus>,
    statuses: BTreeSet<ObjKey>,
    in_flight: HashSet<ObjKey>,
    // Issue 11: client authentication by assertion.
    /// Whether trust checks run (a probe is installed).
    probing: bool,
    /// The checkable trust of each client that has some, derived once per outcome.
    checkable: HashMap<ObjKey, AssertionTrust>,
    /// The latest trust findings per client, with the generation they were checked at.
    trust: HashMap<ObjKey, (Option<i64>, TrustFindings)>,
    /// Clients due a trust check, and those being checked.
    check_queue: BTreeSet<ObjKey>,
    checking: HashSet<ObjKey>,
}

fn secret_key(c: &CredentialsToCreate) -> ObjKey {
    (c.owner.0.clone(), c.secret_name.clone())
}

impl Plan {
    /// Take in what the watch resolved.
    pub fn update(&mut self, changes: Changes) {
        // The credentials of the clients that changed replace what was known of them.
        for (key, _) in &changes.outcomes {
            self.to_create.remove(key);
        }
        for c in changes.to_create {
            if !self.created.contains(&secret_key(&c)) {
                self.create_queue.insert(c.owner.clone());
            }
            self.to_create.insert(c.owner.clone(), c);
        }
        for (key, outcome) in changes.outcomes {
            match outcome {
                Some(o) => {
                    if !matches!(o.state, ClientState::CredentialsPending { .. }) {
                        // Its Secret is seen: a later deletion must be able to recreate it.
                        self.created.remove(&(key.0.clone(), o.secret_name.clone()));
                    }
                    if o.client.status.as_ref().is_some_and(|s| {
                        self.written
                            .get(&key)
                            .is_some_and(|w| same_ignoring_times(w, s))
                    }) {
                        self.written.remove(&key);
                    }
                    // Issue 11: a spec not yet checked is checked now.
                    if self.probing {
                        match checked_trust(&key, &o) {
                            None => {
                                self.checkable.remove(&key);
                                self.trust.remove(&key);
                            }
                            Some(trust) => {
                                if !self.checked(&key, &o) {
                                    self.check_queue.insert(key.clone());
                                }
                                self.checkable.insert(key.clone(), trust);
                            }
                        }
                    }
                    self.outcomes.insert(key.clone(), o);
                    self.statuses.insert(key);
                }
                None => {
                    self.outcomes.remove(&key);
                    self.written.remove(&key);
                    self.statuses.remove(&key);
                    self.checkable.remove(&key);
                    self.trust.remove(&key);
                    self.check_queue.remove(&key);
                }
            }
        }
    }

    /// Queue every client again (a resync, or leadership just gained).
    pub fn requeue_all(&mut self) {
        self.statuses.extend(self.outcomes.keys().cloned());
        let due = self
            .to_create
            .values()
            .filter(|c| !self.created.contains(&secret_key(c)))
            .map(|c| c.owner.clone());
        self.create_queue.extend(due);
    }

    // Issue 11: client authentication by assertion.
    /// Whether the trust findings held for `key` are of this outcome's spec.
    fn checked(&self, key: &ObjKey, outcome: &Outcome) -> bool {
        self.trust
            .get(key)
            .is_some_and(|(g, _)| *g == outcome.client.metadata.generation)
    }

    /// Queue every client with checkable trust (the periodic check), or (`all` false) only
    /// those a source of which did not resolve, so a ServiceAccount created or an issuer back
    /// shows within a resync.
    pub fn requeue_checks(&mut self, all: bool) {
        if !self.probing {
            return;
        }
        let unresolved = |k: &ObjKey| {
            self.trust.get(k).is_some_and(|(_, f)| {
                [&f.service_accounts, &f.issuers, &f.keys]
                    .into_iter()
                    .flatten()
                    .any(|v| !v.resolved)
            })
        };
        let due = self
            .checkable
            .keys()
            .filter(|k| all || unresolved(k))
            .cloned()
            .collect::<Vec<_>>();
        self.check_queue.extend(due);
    }

    /// The next trust check: the client, the generation checked and its trust.
    fn next_check(&mut self) -> Option<(ObjKey, Option<i64>, AssertionTrust)> {
        let mut busy = Vec::new();
        let mut next = None;
        while let Some(key) = self.check_queue.pop_first() {
            if self.checking.contains(&key) {
                busy.push(key);
                continue;
            }
            let (Some(outcome), Some(trust)) = (self.outcomes.get(&key), self.checkable.get(&key))
            else {
                continue;
            };
            next = Some((
                key.clone(),
                outcome.client.metadata.generation,
                trust.clone(),
            ));
            self.checking.insert(key);
            break;
        }
        // Checked again once the check in flight is done.
        self.check_queue.extend(busy);
        next
    }

    /// A check is done (`None`: it timed out, the findings held stay); the client's status is
    /// due again.
    fn finish_check(
        &mut self,
        key: ObjKey,
        generation: Option<i64>,
        findings: Option<TrustFindings>,
    ) {
        self.checking.remove(&key);
        let (Some(outcome), true) = (self.outcomes.get(&key), self.checkable.contains_key(&key))
        else {
            return;
        };
        let findings = findings
            .or_else(|| self.trust.get(&key).map(|(_, f)| f.clone()))
            .unwrap_or_default();
        self.trust.insert(key.clone(), (generation, findings));
        if outcome.client.metadata.generation != generation {
            self.check_queue.insert(key.clone());
        }
        self.statuses.insert(key);
    }

    /// The next write, if any is due: credentials first.
    fn next_job(&mut self) -> Option<Job> {
        while let Some(owner) = self.create_queue.pop_first() {
            let Some(c) = self.to_create.get(&owner).cloned() else {
                continue;
            };
            if self.created.contains(&secret_key(&c)) || self.in_flight.contains(&owner) {
                continue;
            }
            self.created.insert(secret_key(&c));
            self.in_flight.insert(owner);
            return Some(Job::Create(c));
        }
        while let Some(key) = self.statuses.pop_first() {
            if self.in_flight.contains(&key) {
                // Checked again when the write in flight is done.
                continue;
            }
            let Some(outcome) = self.outcomes.get(&key) else {
                continue;
            };
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            if let Some(desired) = self.status_to_write(&key, outcome, now) {
                let outcome = Box::new(outcome.clone());
                self.in_flight.insert(key.clone());
                return Some(Job::Status(key, outcome, desired));
            }
        }
        None
    }

    /// The status this client should be written, or `None` when nothing needs writing.
    fn status_to_write(
        &self,
        key: &ObjKey,
        outcome: &Outcome,
        now: Time,
    ) -> Option<OAuthClientStatus> {
        if let ClientState::CredentialsPending { secret } = &outcome.state {
            let creating = self.to_create.contains_key(key)
                || self.created.contains(&(key.0.clone(), secret.clone()));
            if creating {
                return None;
            }
        }
        // Issue 11: a spec with checkable trust waits for its check (queued or in flight).
        if self.checkable.contains_key(key) && !self.checked(key, outcome) {
            return None;
        }
        let trust = self.trust.get(key).map(|(_, f)| f);
        let desired = status::desired(outcome, trust, now);
        if !status::needs_write(outcome, &desired) {
            return None;
        }
        if self
            .written
            .get(key)
            .is_some_and(|w| same_ignoring_times(w, &desired))
        {
            return None;
        }
        Some(desired)
    }

    fn finish(&mut self, done: Done) {
        match done {
            Done::Created { owner, secret, ok } => {
                self.in_flight.remove(&owner);
                if !ok {
                    // Tried again at the next resync.
                    self.created.remove(&secret);
                }
            }
            Done::Status { key, written } => {
                self.in_flight.remove(&key);
                if let Some(w) = written {
                    self.written.insert(key, w);
                }
            }
        }
    }
}

/// The leader's writer.
pub struct Writer {
    client: Client,
    recorder: Recorder,
    token_url: String,
    // Issue 11: client authentication by assertion.
    probe: Option<Arc<dyn TrustProbe>>,
}

impl Writer {
    pub fn new(client: Client, identity: &str, token_url: &str) -> Writer {
        let reporter = Reporter {
            controller: "latchkey".into(),
            instance: Some(identity.to_owned()),
        };
        Writer {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            token_url: token_url.to_owned(),
            probe: None,
        }
    }

    // Issue 11: client authentication by assertion.
    /// Check clients' assertion sources with `probe` and show the verdicts in their status.
    pub fn with_trust_probe(mut self, probe: Arc<dyn TrustProbe>) -> Writer {
        self.probe = Some(probe);
        self
    }

    async fn event(&self, client: &OAuthClient, ev: Event) {
        if let Err(e) = self.recorder.publish(&ev, &client.object_ref(&())).await {
            tracing::debug!(error = %e, "event not recorded");
        }
    }

    /// Server-side apply of one status. `Ok(false)`: the object is gone.
    pub async fn write_status(
        &self,
        key: &ObjKey,
        desired: &OAuthClientStatus,
    ) -> Result<bool, kube::Error> {
        let api: Api<OAuthClient> = Api::namespaced(self.client.clone(), &key.0);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.1, &params, &Patch::Apply(&status_patch(desired)))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn status_job(&self, key: ObjKey, outcome: Outcome, desired: OAuthClientStatus) -> Done {
        match self.write_status(&key, &desired).await {
            Ok(true) => {
                let previous = status::ready(outcome.client.status.as_ref());
                if let Some(ev) = transition_event(previous, status::ready(Some(&desired))) {
                    self.event(&outcome.client, ev).await;
                }
                Done::Status {
                    key,
                    written: Some(desired),
                }
            }
            Ok(false) => Done::Status { key, written: None },
            Err(e) => {
                tracing::warn!(client = %format!("{}/{}", key.0, key.1), error = %e, "status not written");
                Done::Status { key, written: None }
            }
        }
    }

    /// Create one credentials Secret. A Secret that appeared meanwhile is left as it is
    /// (create fails with a conflict): a secret value is never overwritten.
    pub async fn create_credentials(
        &self,
        create: &CredentialsToCreate,
        owner: &OAuthClient,
    ) -> Result<(), OperatorError> {
        let secret = credentials::credentials_secret(
            owner,
            &create.secret_name,
            &create.client_id,
            &credentials::random_secret()?,
            &self.token_url,
        );
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &create.owner.0);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(client = %format!("{}/{}", create.owner.0, create.owner.1), secret = %create.secret_name, "credentials written");
                if create.recreate {
                    let note = format!(
                        "generated Secret {} was missing: made it again with a new client secret (client id kept)",
                        create.secret_name
                    );
                    tracing::warn!(client = %format!("{}/{}", create.owner.0, create.owner.1), "{note}");
                    let ev = Event {
                        type_: EventType::Warning,
                        reason: "CredentialsRecreated".into(),
                        note: Some(note),
                        action: "CreateCredentials".into(),
                        secondary: None,
                    };
                    self.event(owner, ev).await;
                }
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_job(
        &self,
        create: CredentialsToCreate,
        owner: Option<Arc<OAuthClient>>,
    ) -> Done {
        let secret = secret_key(&create);
        let key = create.owner.clone();
        let Some(owner) = owner else {
            return Done::Created {
                owner: key,
                secret,
                ok: false,
            };
        };
        let ok = match self.create_credentials(&create, &owner).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(secret = %format!("{}/{}", secret.0, secret.1), error = %e, "credentials not created");
                false
            }
        };
        Done::Created {
            owner: key,
            secret,
            ok,
        }
    }

    /// Run until `shutdown`: take changes from the watch, write while leading.
    pub async fn run(
        self,
        mut changes: mpsc::UnboundedReceiver<Changes>,
        mut leading: watch::Receiver<bool>,
        on_leading: impl Fn(bool) + Send,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut plan = Plan {
            probing: self.probe.is_some(),
            ..Plan::default()
        };
        let mut in_flight = FuturesUnordered::new();
        let mut tick = tokio::time::interval(RESYNC);
        // Issue 11: trust checks, beside the writes.
        let mut checks = FuturesUnordered::new();
        let mut check_tick = tokio::time::interval(CHECK_EVERY);
        loop {
            if *leading.borrow()
                && let Some(probe) = &self.probe
            {
                while checks.len() < CHECK_CONCURRENCY {
                    let Some((key, generation, trust)) = plan.next_check() else {
                        break;
                    };
                    let probe = probe.clone();
                    checks.push(async move {
                        let found = tokio::time::timeout(CHECK_TIMEOUT, probe.check(&trust)).await;
                        (key, generation, found.ok())
                    });
                }
            }
            if *leading.borrow() {
                while in_flight.len() < CONCURRENCY {
                    let Some(job) = plan.next_job() else { break };
                    let fut = match job {
                        Job::Create(c) => {
                            let owner = plan.outcomes.get(&c.owner).map(|o| o.client.clone());
                            futures::future::Either::Left(self.create_job(c, owner))
                        }
                        Job::Status(key, outcome, desired) => {
                            futures::future::Either::Right(self.status_job(key, *outcome, desired))
                        }
                    };
                    in_flight.push(fut);
                }
            }
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => plan.finish(done),
                c = changes.recv() => match c {
                    Some(c) => plan.update(c),
                    None => return,
                },
                r = leading.changed() => {
                    if r.is_err() { return }
                    let now_leading = *leading.borrow();
                    on_leading(now_leading);
                    if now_leading {
                        plan.requeue_all();
                    }
                }
                _ = tick.tick() => {
                    plan.requeue_all();
                    plan.requeue_checks(false);
                }
                Some((key, generation, found)) = checks.next(), if !checks.is_empty() => {
                    plan.finish_check(key, generation, found);
                }
                _ = check_tick.tick() => plan.requeue_checks(true),
                _ = shutdown.changed() => return,
            }
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
    fn events_only_when_a_client_stops_or_cannot_serve() {
        assert!(
            transition_event(
                Some(&cond("True", "Registered")),
                Some(&cond("True", "Registered"))
            )
            .is_none()
        );
        assert!(
            transition_event(None, Some(&cond("True", "Registered"))).is_none(),
            "becoming ready is routine: no Event"
        );
        let ev = transition_event(
            Some(&cond("True", "Registered")),
            Some(&cond("False", "ClientIdConflict")),
        )
        .unwrap();
        assert_eq!(ev.type_, EventType::Warning);
        assert!(
            transition_event(
                Some(&cond("False", "ClientIdConflict")),
                Some(&cond("False", "ClientIdConflict"))
            )
            .is_none()
        );
    }

    // Issue 11: client authentication by assertion.
    fn assertion_outcome(generation: i64, status: Option<OAuthClientStatus>) -> Outcome {
        let spec: latchkey_api::OAuthClientSpec = serde_json::from_value(serde_json::json!({
            "clientId": "gw",
            "serviceAccounts": [{"namespace": "apps", "name": "gw"}],
        }))
        .unwrap();
        let mut c = OAuthClient::new("gw", spec);
        c.metadata.namespace = Some("apps".into());
        c.metadata.generation = Some(generation);
        c.status = status;
        Outcome {
            client: Arc::new(c),
            client_id: Some("gw".into()),
            secret_name: "gw-credentials".into(),
            state: ClientState::Registered,
            previous_secret: Default::default(),
        }
    }

    fn findings(resolved: bool) -> TrustFindings {
        TrustFindings {
            service_accounts: Some(latchkey_core::trust_check::Verdict {
                resolved,
                reason: if resolved {
                    "Resolved"
                } else {
                    "ServiceAccountNotFound"
                },
                message: "m".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_waits_for_its_trust_check_and_a_same_finding_writes_nothing() {
        let key: ObjKey = ("apps".into(), "gw".into());
        let mut plan = Plan {
            probing: true,
            ..Plan::default()
        };
        plan.update(Changes {
            outcomes: vec![(key.clone(), Some(assertion_outcome(1, None)))],
            to_create: Vec::new(),
        });
        assert!(plan.next_job().is_none(), "no status before the check");
        let (k, generation, trust) = plan.next_check().unwrap();
        assert_eq!((&k, generation), (&key, Some(1)));
        assert_eq!(trust.service_accounts, [("apps".into(), "gw".into())]);
        assert!(
            plan.next_check().is_none(),
            "one check at a time per client"
        );
        plan.finish_check(k, generation, Some(findings(false)));
        let Some(Job::Status(_, _, desired)) = plan.next_job() else {
            panic!("the status is due once checked")
        };
        let sa = desired
            .conditions
            .iter()
            .find(|c| c.type_ == status::SERVICE_ACCOUNTS_RESOLVED)
            .unwrap();
        assert_eq!(sa.status, "False");
        plan.finish(Done::Status {
            key: key.clone(),
            written: Some(desired.clone()),
        });
        // The echo of the write, then the periodic check finding the same: nothing to write.
        plan.update(Changes {
            outcomes: vec![(key.clone(), Some(assertion_outcome(1, Some(desired))))],
            to_create: Vec::new(),
        });
        assert!(plan.next_check().is_none(), "an echo is not a new spec");
        plan.requeue_checks(true);
        let (k, generation, _) = plan.next_check().unwrap();
        plan.finish_check(k, generation, Some(findings(false)));
        assert!(plan.next_job().is_none());
        // The ServiceAccount appears: seen by the resync's check of unresolved clients.
        plan.requeue_checks(false);
        let (k, generation, _) = plan.next_check().unwrap();
        plan.finish_check(k, generation, Some(findings(true)));
        assert!(matches!(plan.next_job(), Some(Job::Status(..))));
        plan.requeue_checks(false);
        assert!(
            plan.next_check().is_none(),
            "a resolved client waits for the periodic check"
        );
        // A client that drops the field is no longer checked.
        let mut plain = assertion_outcome(2, None);
        let mut c = (*plain.client).clone();
        c.spec.service_accounts.clear();
        c.spec.secret_ref = None;
        plain.client = Arc::new(c);
        plan.update(Changes {
            outcomes: vec![(key.clone(), Some(plain))],
            to_create: Vec::new(),
        });
        plan.requeue_checks(true);
        assert!(plan.next_check().is_none());
        assert!(!plan.trust.contains_key(&key));
    }
}
