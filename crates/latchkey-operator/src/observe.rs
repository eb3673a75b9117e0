//! Hooks for metrics: the operator reports what happens; how it is exported is the binary's
//! business (the operator crate stays free of Prometheus).

use latchkey_core::{
    KeySet, Registry,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
};

pub trait Observer: Send + Sync + 'static {
    fn registry_swapped(&self, registry: &Registry);
    /// A new key set is serving, under `policy` (which says when the next rotation is due and
    /// when a next key signs).
    fn keys_swapped(&self, keys: &KeySet, ring: &KeyRing, policy: &RotationPolicy);
    /// The keys were changed (by this process).
    fn key_events(&self, events: &[KeyEvent]);
    /// A key pass failed; the keys in use keep serving.
    fn key_pass_failed(&self) {}
    /// The API server answered (a watch event or a Lease call).
    fn api_contact(&self);
    fn leading(&self, leading: bool);
    // Issue 12: people who sign in.
    /// A new user directory is in use, with `count` users who may sign in.
    fn users_swapped(&self, _count: usize) {}
}
