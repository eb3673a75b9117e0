//! Operator and key-driver events become metrics, in both run modes.

use std::sync::Arc;

use latchkey_core::{
    KeySet, Registry,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
};
use latchkey_operator::Observer;
use latchkey_server::Metrics;

use crate::serving;

pub struct MetricsObserver(pub Arc<Metrics>);

impl Observer for MetricsObserver {
    fn registry_swapped(&self, registry: &Registry) {
        self.0.observe_registry(registry);
    }
    fn keys_swapped(&self, _keys: &KeySet, ring: &KeyRing, policy: &RotationPolicy) {
        self.0.observe_key_ring(ring, policy);
        self.0.observe_reload("keys", true);
    }
    fn key_events(&self, events: &[KeyEvent]) {
        self.0.observe_key_events(events);
    }
    fn key_pass_failed(&self) {
        self.0.observe_reload("keys", false);
    }
    fn api_contact(&self) {
        self.0.observe_sync(serving::unix_now());
    }
    fn leading(&self, leading: bool) {
        self.0.observe_leader(leading);
    }
    // Issue 12: people who sign in.
    fn users_swapped(&self, count: usize) {
        self.0.observe_users(count);
    }
}
