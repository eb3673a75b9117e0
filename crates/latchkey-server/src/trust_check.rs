//! Issue 11: whether the sources a client trusts for assertions resolve, checked off the
//! token path (a client's status in `latchkey run`, a warning line in standalone). Each check
//! goes through the caches the token endpoint uses ([`crate::remote_jwks`],
//! [`crate::object_jwks`], [`crate::service_account`]): a fresh cache answers without I/O, and
//! what a check fetches is what the next assertion finds. Every fetch is bounded in time by
//! those caches (5 s per URL or API call), and the entries of one client are checked at once.

use latchkey_core::{
    assertion::AssertionTrust,
    trust_check::{
        DISCOVERY_FAILED, FORBIDDEN, Finding, ISSUER_UNKNOWN, KEYS_UNAVAILABLE, TrustFindings,
        issuer_entry, verdict,
    },
};

use crate::{App, object_jwks, remote_jwks::IssuerUnavailable};

const NO_HTTPS_CLIENT: Finding = Finding::Unresolved {
    reason: KEYS_UNAVAILABLE,
    why: "client assertions are not available on this server (no HTTPS client)",
};

/// Each entry's finding, by kind of source; each entry named for a message (e.g.
/// `ServiceAccount apps/gateway`, `jwksUri https://…`).
#[derive(Debug, Default)]
pub struct Entries {
    pub service_accounts: Vec<(String, Finding)>,
    pub issuers: Vec<(String, Finding)>,
    pub keys: Vec<(String, Finding)>,
}

/// Check every source `trust` names, and give one verdict per kind.
pub async fn check(app: &App, trust: &AssertionTrust) -> TrustFindings {
    let e = entries(app, trust).await;
    TrustFindings {
        service_accounts: verdict(&e.service_accounts, "every listed ServiceAccount exists"),
        issuers: verdict(&e.issuers, "every federated issuer's keys can be fetched"),
        keys: verdict(&e.keys, "the client's keys can be read"),
    }
}

/// Check every source `trust` names.
pub async fn entries(app: &App, trust: &AssertionTrust) -> Entries {
    let remote = app.assertions.as_ref().map(|a| a.remote());
    let service_accounts =
        futures::future::join_all(trust.service_accounts.iter().map(|(ns, name)| async move {
            let finding = match app.service_accounts.get() {
                Some(sa) => sa.account(ns, name).await,
                None => Finding::Unresolved {
                    reason: ISSUER_UNKNOWN,
                    why: "the cluster's service-account issuer is not discovered yet \
                          (ServiceAccount tokens are refused until it is)",
                },
            };
            (format!("ServiceAccount {ns}/{name}"), finding)
        }));
    let issuers = futures::future::join_all(trust.federated.iter().map(|f| async move {
        let finding = match (&f.jwks, remote) {
            (Some(_), _) => Finding::Resolved,
            (None, None) => NO_HTTPS_CLIENT,
            (None, Some(remote)) => match remote.issuer_keys(&f.issuer, None).await {
                Ok(_) => Finding::Resolved,
                Err(IssuerUnavailable::Discovery(why)) => Finding::Unresolved {
                    reason: DISCOVERY_FAILED,
                    why,
                },
                Err(IssuerUnavailable::Keys(why)) => Finding::Unresolved {
                    reason: KEYS_UNAVAILABLE,
                    why,
                },
            },
        };
        (issuer_entry(&f.issuer, &f.subject), finding)
    }));
    let keys = async {
        let unavailable = |why| Finding::Unresolved {
            reason: if why == object_jwks::FORBIDDEN {
                FORBIDDEN
            } else {
                KEYS_UNAVAILABLE
            },
            why,
        };
        let mut entries = Vec::new();
        if let Some(uri) = &trust.jwks_uri {
            let finding = match remote {
                None => NO_HTTPS_CLIENT,
                Some(remote) => remote
                    .jwks(uri, None)
                    .await
                    .map_or_else(unavailable, |_| Finding::Resolved),
            };
            entries.push((format!("jwksUri {uri}"), finding));
        }
        if let Some(object) = &trust.jwks_from {
            let finding = match app.object_jwks.get() {
                None => unavailable("jwksFrom needs latchkey run (a cluster)"),
                Some(reader) => reader
                    .jwks(object, None)
                    .await
                    .map_or_else(unavailable, |_| Finding::Resolved),
            };
            let entry = format!(
                "jwksFrom {} {}/{} key {:?}",
                object.kind, object.namespace, object.name, object.key
            );
            entries.push((entry, finding));
        }
        entries
    };
    let (service_accounts, issuers, keys) = futures::join!(service_accounts, issuers, keys);
    Entries {
        service_accounts,
        issuers,
        keys,
    }
}
