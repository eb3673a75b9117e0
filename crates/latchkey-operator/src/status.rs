//! The status an `OAuthClient` should show for its outcome, and whether it differs from what
//! it shows now. Written only when something changed, so watch echoes cause no writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use latchkey_api::OAuthClientStatus;

use latchkey_api::resolve::{ClientState, Outcome, PreviousSecretState, system_time};
use latchkey_core::trust_check::TrustFindings;

pub const READY: &str = "Ready";
pub const SECRET_RESOLVED: &str = "SecretResolved";
pub const SPEC_VALID: &str = "SpecValid";
/// Issue 13: present while `spec.previousSecret` is set.
pub const PREVIOUS_SECRET_ACCEPTED: &str = "PreviousSecretAccepted";
// Issue 11: whether the sources a client trusts for assertions resolve. Each is present only
// while its field is set; Ready does not depend on them (the client serves whatever else it
// trusts), they say which source cannot work and why.
/// While `spec.serviceAccounts` is set.
pub const SERVICE_ACCOUNTS_RESOLVED: &str = "ServiceAccountsResolved";
/// While `spec.federatedIdentities` is set.
pub const ISSUERS_RESOLVED: &str = "IssuersResolved";
/// While `spec.jwksUri` or `spec.jwksFrom` is set.
pub const KEYS_RESOLVED: &str = "KeysResolved";

/// `(status, reason, message)` of one condition.
type Cond = (bool, &'static str, String);

fn conditions(state: &ClientState) -> [(&'static str, Cond); 3] {
    let ok_secret = (true, "Resolved", "credentials found".to_owned());
    let ok_spec = (true, "Valid", "spec is valid".to_owned());
    let (ready, secret, spec): (Cond, Cond, Cond) = match state {
        ClientState::Registered => (
            (true, "Registered", "issuing tokens".into()),
            ok_secret,
            ok_spec,
        ),
        ClientState::Disabled => (
            (
                false,
                "Disabled",
                "spec.disabled is true: no tokens are issued".into(),
            ),
            ok_secret,
            ok_spec,
        ),
        ClientState::InvalidSpec(m) => {
            let c = (false, "InvalidSpec", m.clone());
            (
                c.clone(),
                (true, "Resolved", "not checked: spec is invalid".into()),
                c,
            )
        }
        ClientState::SecretNotFound { secret } => {
            let c = (
                false,
                "SecretNotFound",
                format!("Secret {secret} does not exist"),
            );
            (c.clone(), c, ok_spec)
        }
        ClientState::SecretKeyMissing { secret, key } => {
            let c = (
                false,
                "SecretKeyMissing",
                format!("Secret {secret} has no key {key:?}"),
            );
            (c.clone(), c, ok_spec)
        }
        ClientState::ClientIdMissing { secret } => {
            let c = (
                false,
                "ClientIdMissing",
                format!("spec.clientId is omitted and Secret {secret} has no \"clientId\" key"),
            );
            (c.clone(), c, ok_spec)
        }
        ClientState::CredentialsPending { secret } => {
            let c = (
                false,
                "CredentialsPending",
                format!("waiting for Secret {secret}"),
            );
            (c.clone(), c, ok_spec)
        }
        ClientState::ClientIdConflict { client_id, holder } => (
            (
                false,
                "ClientIdConflict",
                format!(
                    "client id {client_id:?} is already used by OAuthClient {}/{}, which is older",
                    holder.0, holder.1
                ),
            ),
            ok_secret,
            ok_spec,
        ),
    };
    [
        (READY, ready),
        (SECRET_RESOLVED, secret),
        (SPEC_VALID, spec),
    ]
}

/// The status this outcome calls for, with the findings of its trust check if any (issue
/// 11). Conditions whose status did not change keep their `lastTransitionTime`.
pub fn desired(outcome: &Outcome, trust: Option<&TrustFindings>, now: Time) -> OAuthClientStatus {
    let current = outcome.client.status.as_ref();
    let generation = outcome.client.metadata.generation;
    // Issue 11: client authentication by assertion. A client without secretRef that trusts
    // assertions has no Secret at all.
    // Issue 12: nor has a public client.
    let spec = &outcome.client.spec;
    let secretless = latchkey_api::auth_method::has_no_secret(spec);
    let no_secret = if latchkey_api::auth_method::is_public(spec) {
        "the client is public (tokenEndpointAuthMethod none): no Secret"
    } else {
        "the client authenticates by assertion only: no Secret"
    };
    let conditions = conditions(&outcome.state)
        .into_iter()
        .map(|(type_, cond)| match type_ {
            SECRET_RESOLVED if secretless => (type_, (true, "NotNeeded", no_secret.to_owned())),
            _ => (type_, cond),
        })
        .chain(previous_secret_condition(outcome, &now))
        .chain(trust_conditions(trust))
        .map(|(type_, (ok, reason, message))| {
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
    OAuthClientStatus {
        client_id: outcome.client_id.clone(),
        secret_name: (!secretless).then(|| outcome.secret_name.clone()),
        observed_generation: generation,
        conditions,
        // Issue 13
        previous_secret_expires_at: match &outcome.previous_secret {
            PreviousSecretState::Until(t) => Some(t.clone()),
            _ => None,
        },
    }
}

// Issue 11: client authentication by assertion.
/// The conditions of a trust check's verdicts (only the kinds the spec uses have one).
fn trust_conditions(trust: Option<&TrustFindings>) -> Vec<(&'static str, Cond)> {
    let Some(t) = trust else { return Vec::new() };
    [
        (SERVICE_ACCOUNTS_RESOLVED, &t.service_accounts),
        (ISSUERS_RESOLVED, &t.issuers),
        (KEYS_RESOLVED, &t.keys),
    ]
    .into_iter()
    .filter_map(|(type_, v)| {
        v.as_ref()
            .map(|v| (type_, (v.resolved, v.reason, v.message.clone())))
    })
    .collect()
}

// Issue 13: secret rotation.
/// Whether the previous secret is accepted at `now`, while the spec names one.
fn previous_secret_condition(outcome: &Outcome, now: &Time) -> Option<(&'static str, Cond)> {
    let secret = &outcome.secret_name;
    let cond = match &outcome.previous_secret {
        PreviousSecretState::None => return None,
        PreviousSecretState::KeyMissing { key } => (
            false,
            "KeyMissing",
            format!("Secret {secret} has no key {key:?}: only the current secret is accepted"),
        ),
        PreviousSecretState::Until(t) if system_time(now) < system_time(t) => (
            true,
            "InGracePeriod",
            format!(
                "the previous secret (Secret {secret}) is accepted until {}",
                t.0
            ),
        ),
        PreviousSecretState::Until(t) => (
            false,
            "Expired",
            format!(
                "the previous secret stopped being accepted at {}; only the current one is",
                t.0
            ),
        ),
    };
    Some((PREVIOUS_SECRET_ACCEPTED, cond))
}

/// Issue 13: when the status of this outcome changes by itself (its previous secret stops
/// being accepted), if that is still ahead of `now`.
pub fn changes_at(outcome: &Outcome, now: std::time::SystemTime) -> Option<std::time::SystemTime> {
    match &outcome.previous_secret {
        PreviousSecretState::Until(t) => Some(system_time(t)).filter(|at| *at > now),
        _ => None,
    }
}

/// Whether the object must be written to show `desired` (timestamps of unchanged conditions
/// are carried over by `desired`, so plain equality is the test).
pub fn needs_write(outcome: &Outcome, desired: &OAuthClientStatus) -> bool {
    outcome.client.status.as_ref() != Some(desired)
}

/// The Ready condition of a status, if any.
pub fn ready(status: Option<&OAuthClientStatus>) -> Option<&Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_api::OAuthClient;
    use std::sync::Arc;

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn outcome(status: Option<OAuthClientStatus>, state: ClientState) -> Outcome {
        let mut c = OAuthClient::new("c", Default::default());
        c.metadata.generation = Some(3);
        c.status = status;
        Outcome {
            client: Arc::new(c),
            client_id: Some("id".into()),
            secret_name: "s".into(),
            state,
            previous_secret: Default::default(),
        }
    }

    #[test]
    fn registered_is_ready_with_every_condition_true() {
        let s = desired(&outcome(None, ClientState::Registered), None, time(100));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.client_id.as_deref(), Some("id"));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.status == "True" && c.observed_generation == Some(3))
        );
        assert_eq!(ready(Some(&s)).unwrap().reason, "Registered");
    }

    #[test]
    fn an_echo_of_the_written_status_needs_no_write() {
        let first = desired(&outcome(None, ClientState::Registered), None, time(100));
        let o = outcome(Some(first.clone()), ClientState::Registered);
        let again = desired(&o, None, time(200));
        assert_eq!(again, first, "transition times must be kept");
        assert!(!needs_write(&o, &again));
    }

    #[test]
    fn a_change_moves_only_the_changed_conditions_times() {
        let first = desired(&outcome(None, ClientState::Registered), None, time(100));
        let o = outcome(
            Some(first),
            ClientState::ClientIdConflict {
                client_id: "id".into(),
                holder: ("a".into(), "b".into()),
            },
        );
        let next = desired(&o, None, time(200));
        assert!(needs_write(&o, &next));
        let r = ready(Some(&next)).unwrap();
        assert_eq!(
            (
                r.status.as_str(),
                r.reason.as_str(),
                &r.last_transition_time
            ),
            ("False", "ClientIdConflict", &time(200))
        );
        assert!(r.message.contains("a/b"));
        let secret = next
            .conditions
            .iter()
            .find(|c| c.type_ == SECRET_RESOLVED)
            .unwrap();
        assert_eq!(secret.last_transition_time, time(100));
    }

    #[test]
    fn each_state_has_a_specific_reason() {
        let reasons: Vec<String> = [
            ClientState::Disabled,
            ClientState::InvalidSpec("x".into()),
            ClientState::SecretNotFound { secret: "s".into() },
            ClientState::SecretKeyMissing {
                secret: "s".into(),
                key: "k".into(),
            },
            ClientState::ClientIdMissing { secret: "s".into() },
            ClientState::CredentialsPending { secret: "s".into() },
        ]
        .into_iter()
        .map(|st| {
            ready(Some(&desired(&outcome(None, st), None, time(1))))
                .unwrap()
                .reason
                .clone()
        })
        .collect();
        assert_eq!(
            reasons,
            [
                "Disabled",
                "InvalidSpec",
                "SecretNotFound",
                "SecretKeyMissing",
                "ClientIdMissing",
                "CredentialsPending"
            ]
        );
    }

    // Issue 12: public clients.
    #[test]
    fn a_public_client_is_ready_without_a_secret_name() {
        let spec: latchkey_api::OAuthClientSpec = serde_json::from_value(serde_json::json!({
            "clientId": "spa",
            "tokenEndpointAuthMethod": "none",
            "grantTypes": ["authorization_code"],
            "redirectUris": ["http://127.0.0.1:8400/cb"]
        }))
        .unwrap();
        let mut o = outcome(None, ClientState::Registered);
        let mut c = (*o.client).clone();
        c.spec = spec;
        o.client = Arc::new(c);
        let s = desired(&o, None, time(100));
        assert_eq!(s.secret_name, None);
        assert_eq!(ready(Some(&s)).unwrap().status, "True");
        let secret = s
            .conditions
            .iter()
            .find(|c| c.type_ == SECRET_RESOLVED)
            .unwrap();
        assert_eq!(
            (secret.status.as_str(), secret.reason.as_str()),
            ("True", "NotNeeded")
        );
        assert!(secret.message.contains("public"), "{}", secret.message);
        // A confidential client of the same outcome names its Secret.
        let plain = desired(&outcome(None, ClientState::Registered), None, time(100));
        assert_eq!(plain.secret_name.as_deref(), Some("s"));
    }

    // Issue 13: secret rotation.
    #[test]
    fn the_previous_secret_shows_until_it_stops() {
        let mut o = outcome(None, ClientState::Registered);
        assert!(
            desired(&o, None, time(100))
                .conditions
                .iter()
                .all(|c| c.type_ != PREVIOUS_SECRET_ACCEPTED)
        );
        o.previous_secret = PreviousSecretState::Until(time(500));
        let cond = |s: &OAuthClientStatus| {
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == PREVIOUS_SECRET_ACCEPTED)
                .unwrap();
            (c.status.clone(), c.reason.clone())
        };
        let before = desired(&o, None, time(100));
        assert_eq!(before.previous_secret_expires_at, Some(time(500)));
        assert_eq!(cond(&before), ("True".into(), "InGracePeriod".into()));
        assert_eq!(ready(Some(&before)).unwrap().status, "True");
        let after = desired(&o, None, time(500));
        assert_eq!(cond(&after), ("False".into(), "Expired".into()));
        let now = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(changes_at(&o, now(100)), Some(now(500)));
        assert_eq!(changes_at(&o, now(500)), None);
        o.previous_secret = PreviousSecretState::KeyMissing { key: "k".into() };
        assert_eq!(
            cond(&desired(&o, None, time(100))),
            ("False".into(), "KeyMissing".into())
        );
    }

    // Issue 11: client authentication by assertion.
    #[test]
    fn trust_verdicts_become_conditions_that_keep_their_time_and_leave_ready_alone() {
        use latchkey_core::trust_check::{SERVICE_ACCOUNT_NOT_FOUND, TrustFindings, Verdict};
        let o = outcome(None, ClientState::Registered);
        let gone = TrustFindings {
            service_accounts: Some(Verdict {
                resolved: false,
                reason: SERVICE_ACCOUNT_NOT_FOUND,
                message: "ServiceAccount apps/gw: does not exist".into(),
            }),
            ..Default::default()
        };
        let first = desired(&o, Some(&gone), time(100));
        let types: Vec<&str> = first.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                READY,
                SECRET_RESOLVED,
                SPEC_VALID,
                SERVICE_ACCOUNTS_RESOLVED
            ],
            "only the kinds the spec uses"
        );
        let sa = |s: &OAuthClientStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == SERVICE_ACCOUNTS_RESOLVED)
                .unwrap()
                .clone()
        };
        assert_eq!(
            (sa(&first).status.as_str(), sa(&first).reason.as_str()),
            ("False", SERVICE_ACCOUNT_NOT_FOUND)
        );
        assert_eq!(ready(Some(&first)).unwrap().status, "True", "Ready stays");
        let seen = outcome(Some(first.clone()), ClientState::Registered);
        let again = desired(&seen, Some(&gone), time(200));
        assert!(
            !needs_write(&seen, &again),
            "a periodic check that finds the same writes nothing"
        );
        let found = TrustFindings {
            service_accounts: Some(Verdict {
                resolved: true,
                reason: "Resolved",
                message: "every listed ServiceAccount exists".into(),
            }),
            ..Default::default()
        };
        let fixed = desired(&seen, Some(&found), time(300));
        assert_eq!(sa(&fixed).last_transition_time, time(300));
        assert_eq!(ready(Some(&fixed)).unwrap().last_transition_time, time(100));
    }
}
