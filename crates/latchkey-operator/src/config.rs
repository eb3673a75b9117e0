//! What the operator is told at start.

use std::time::Duration;

use latchkey_core::keyring::RotationPolicy;

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Watch these namespaces; `None`: all.
    pub namespaces: Option<Vec<String>>,
    /// The operator's own namespace: Lease and signing-key Secret.
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
    pub keys_secret: String,
    /// Kind of keys and their schedule; `max_token_lifetime` is the server default (clients
    /// with longer lifetimes extend it).
    pub key_policy: RotationPolicy,
    /// Written into generated credentials as `tokenUrl`.
    pub token_url: String,
}

impl OperatorConfig {
    /// The scopes the watches run in: each namespace, or `None` for all.
    pub fn scopes(&self) -> Vec<Option<String>> {
        match &self.namespaces {
            None => vec![None],
            Some(list) => list.iter().cloned().map(Some).collect(),
        }
    }
}
