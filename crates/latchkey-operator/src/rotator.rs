//! The leader's key work: create the keys Secret when it is missing, carry out rotate and
//! revoke requests, and advance the lifecycle on a timer. Every write is conditional on the
//! version read, so a leader that lost the Lease a moment ago cannot undo a newer ring.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use latchkey_core::keyring::{KeyEvent, KeyRing, RotationPolicy};
use tokio::sync::watch;

use crate::{
    keys::{self, REVOKE_ANNOTATION, ROTATE_ANNOTATION},
    run::{KeysState, Observer, OperatorConfig},
};

/// How often the leader looks at the schedule.
pub const TICK: Duration = Duration::from_secs(1);

/// The policy of this moment: the configured one, with the longest token lifetime in force.
fn policy(cfg: &OperatorConfig, max_lifetime: Duration) -> RotationPolicy {
    RotationPolicy {
        max_token_lifetime: cfg.key_policy.max_token_lifetime.max(max_lifetime),
        ..cfg.key_policy.clone()
    }
}

fn describe(ev: &KeyEvent) -> (EventType, &'static str, String) {
    match ev {
        KeyEvent::Created { kid, state } => (
            EventType::Normal,
            "KeyCreated",
            format!("key {kid} created as {}", state.as_str()),
        ),
        KeyEvent::Activated { kid } => (
            EventType::Normal,
            "KeyActivated",
            format!("key {kid} signs from now"),
        ),
        KeyEvent::Retired { kid } => (
            EventType::Normal,
            "KeyRetired",
            format!("key {kid} no longer signs; still published"),
        ),
        KeyEvent::Removed { kid } => (
            EventType::Normal,
            "KeyRemoved",
            format!("key {kid} is no longer published"),
        ),
        KeyEvent::Revoked { kid } => (
            EventType::Warning,
            "KeyRevoked",
            latchkey_core::keyring::revocation_note(kid),
        ),
    }
}

/// One pass over the keys Secret; `Ok(true)` when something was written.
async fn pass(
    api: &Api<Secret>,
    cfg: &OperatorConfig,
    policy: &RotationPolicy,
    secret: &Secret,
    recorder: &Recorder,
    observer: &dyn Observer,
) -> Result<bool, crate::OperatorError> {
    if keys::is_external(secret) {
        return Ok(false);
    }
    let original = keys::read(secret, &policy.kid)?;
    let mut ring: KeyRing = original.clone();
    let mut annotations: BTreeMap<String, String> = secret.annotations().clone();
    let mut events = Vec::new();
    let mut notes = Vec::new();
    let now = std::time::SystemTime::now();
    if let Some(kid) = annotations.remove(REVOKE_ANNOTATION) {
        match ring.revoke(&kid, policy, now) {
            Ok(ev) => events.extend(ev),
            Err(e) => notes.push(format!("revoke {kid}: {e}")),
        }
    }
    if annotations.remove(ROTATE_ANNOTATION).is_some()
        && let Err(e) = ring.request_rotation(policy, now)
    {
        notes.push(format!("rotate: {e}"));
    }
    events.extend(ring.advance(policy, now)?);
    let handled = annotations.len() != secret.annotations().len();
    if ring == original && !handled {
        return Ok(false);
    }
    let rv = secret.resource_version().unwrap_or_default();
    let written = keys::replace(api, &cfg.keys_secret, &ring, annotations, rv).await?;
    observer.key_events(&events);
    let reference = written.object_ref(&());
    for ev in &events {
        let (type_, reason, note) = describe(ev);
        tracing::info!(reason, note = %note, "signing keys");
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "RotateKeys".into(),
            secondary: None,
        };
        let _ = recorder.publish(&event, &reference).await;
    }
    for note in notes {
        tracing::warn!(note = %note, "a key request could not be carried out");
        let event = Event {
            type_: EventType::Warning,
            reason: "KeyRequestRefused".into(),
            note: Some(note),
            action: "RotateKeys".into(),
            secondary: None,
        };
        let _ = recorder.publish(&event, &reference).await;
    }
    Ok(true)
}

/// Run until `shutdown`; acts only while `leading`.
pub async fn run(
    client: Client,
    cfg: Arc<OperatorConfig>,
    observer: Arc<dyn Observer>,
    mut leading: watch::Receiver<bool>,
    mut keys_state: watch::Receiver<KeysState>,
    max_lifetime: watch::Receiver<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "latchkey".into(),
            instance: Some(cfg.identity.clone()),
        },
    );
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = keys_state.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        if !*leading.borrow() {
            continue;
        }
        let policy = policy(&cfg, *max_lifetime.borrow());
        let state = keys_state.borrow_and_update().clone();
        match state {
            KeysState::Unknown => {}
            KeysState::Absent => match keys::create(&api, &cfg.keys_secret, &policy).await {
                Ok(s) => {
                    let kid = keys::read(&s, &policy.kid)
                        .ok()
                        .and_then(|r| r.active().map(|k| k.kid.clone()));
                    tracing::info!(secret = %s.name_any(), kid = ?kid, alg = %policy.alg, "signing keys created");
                }
                Err(crate::OperatorError::Kube(kube::Error::Api(s))) if s.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "signing keys not created"),
            },
            KeysState::Present(secret) => {
                match pass(&api, &cfg, &policy, &secret, &recorder, &*observer).await {
                    Ok(_) => {}
                    Err(crate::OperatorError::Kube(kube::Error::Api(s))) if s.code == 409 => {
                        tracing::debug!(
                            "keys Secret changed meanwhile; the next pass reads the new version"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "signing keys not advanced"),
                }
            }
        }
    }
}
