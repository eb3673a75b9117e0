//! The client registry: an immutable snapshot that readers load whole.
//!
//! It is a persistent map, so a writer derives the next snapshot from the last one by changing
//! one client in O(log n) and swaps it in: a registry of 10,000 clients is not rebuilt when one
//! of them changes, and requests in flight keep the snapshot they loaded.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    ClientRecord, CoreError, OAuthError, SecretDigest,
    token_endpoint_auth::{self, TokenEndpointAuthMethod},
};

/// Every client the token endpoint knows, by client id.
#[derive(Debug, Clone)]
pub struct Registry {
    clients: imbl::HashMap<String, Arc<ClientRecord>>,
    /// Checked against when the client id is unknown, so unknown ids cost the same work.
    decoy: SecretDigest,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            clients: imbl::HashMap::new(),
            decoy: SecretDigest::decoy(),
        }
    }
}

impl Registry {
    /// Build a snapshot. Two records with one client id are an error: the caller decides who
    /// keeps an id before building.
    pub fn new(records: impl IntoIterator<Item = ClientRecord>) -> Result<Registry, CoreError> {
        let mut registry = Registry::default();
        for record in records {
            let id = record.client_id().to_owned();
            if registry
                .clients
                .insert(id.clone(), Arc::new(record))
                .is_some()
            {
                return Err(CoreError::DuplicateClientId(id));
            }
        }
        Ok(registry)
    }

    /// Add or replace the record of its client id.
    pub fn insert(&mut self, record: ClientRecord) {
        self.clients
            .insert(record.client_id().to_owned(), Arc::new(record));
    }

    /// Remove a client id; `false` when it was not there.
    pub fn remove(&mut self, client_id: &str) -> bool {
        self.clients.remove(client_id).is_some()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn get(&self, client_id: &str) -> Option<&Arc<ClientRecord>> {
        self.clients.get(client_id)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Arc<ClientRecord>> {
        self.clients.values()
    }

    /// The longest lifetime any client sets for its tokens (zero when none sets one). Key
    /// rotation keeps a retired key published at least this long.
    pub fn longest_token_lifetime(&self) -> Duration {
        self.clients
            .values()
            .filter_map(|c| c.token_lifetime())
            .max()
            .unwrap_or_default()
    }

    /// Authenticate a client by id and secret at `now` (a previous secret counts until its
    /// stated end). Unknown id, wrong secret and disabled client give the same error after the
    /// same work: one digest and two constant-time comparisons.
    pub fn authenticate(
        &self,
        client_id: &str,
        secret: &[u8],
        now: SystemTime,
    ) -> Result<&Arc<ClientRecord>, OAuthError> {
        let record = self.clients.get(client_id);
        let presented = SecretDigest::of(secret);
        let secret_ok = match record {
            Some(r) => r.secret_matches(&presented, now),
            // The same two comparisons as a known client's current and previous secret.
            None => {
                let a = self.decoy.ct_eq(&presented);
                std::hint::black_box(self.decoy.ct_eq(&presented)) & a
            }
        };
        match record {
            Some(r) if secret_ok && !r.is_disabled() => Ok(r),
            // A public client has no secret to get wrong: say what it should send instead.
            Some(r) if r.is_public() && !r.is_disabled() => {
                Err(token_endpoint_auth::public_client_sent_secret())
            }
            _ => Err(OAuthError::client_authentication_failed()),
        }
    }

    /// [`Registry::authenticate`] for a secret presented by `method` (HTTP Basic or the
    /// form), which must be the client's method when it names one.
    pub fn authenticate_by(
        &self,
        client_id: &str,
        secret: &[u8],
        method: TokenEndpointAuthMethod,
        now: SystemTime,
    ) -> Result<&Arc<ClientRecord>, OAuthError> {
        let record = self.authenticate(client_id, secret, now)?;
        token_endpoint_auth::check(record.token_endpoint_auth_method(), method.as_str())?;
        Ok(record)
    }

    /// A public client, identified by its id alone (RFC 6749 §2.1; it proves nothing, so
    /// PKCE binds its codes). Any other client, unknown, confidential or disabled, gets the
    /// answer a wrong secret gets.
    pub fn public_client(&self, client_id: &str) -> Result<&Arc<ClientRecord>, OAuthError> {
        match self.clients.get(client_id) {
            Some(r) if r.is_public() && !r.is_disabled() => Ok(r),
            _ => Err(OAuthError::client_authentication_failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::spec;

    fn registry() -> Registry {
        let mut off = spec("off", "pw");
        off.disabled = true;
        Registry::new(
            [spec("a", "pw-a"), spec("b", "pw-b"), off].map(|s| ClientRecord::new(s).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn authenticates_the_right_secret_only() {
        let r = registry();
        assert_eq!(
            r.authenticate("a", b"pw-a", SystemTime::UNIX_EPOCH)
                .unwrap()
                .client_id(),
            "a"
        );
        let wrong = r
            .authenticate("a", b"pw-b", SystemTime::UNIX_EPOCH)
            .unwrap_err();
        let unknown = r
            .authenticate("zzz", b"pw-a", SystemTime::UNIX_EPOCH)
            .unwrap_err();
        let disabled = r
            .authenticate("off", b"pw", SystemTime::UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(wrong, unknown);
        assert_eq!(wrong, disabled);
        assert_eq!(wrong, OAuthError::client_authentication_failed());
    }

    #[test]
    fn a_public_client_is_known_by_its_id_and_never_by_a_secret() {
        let mut public = spec("spa", "unused");
        public.secret = SecretDigest::decoy();
        public.token_endpoint_auth_method = Some(TokenEndpointAuthMethod::None);
        let mut off = public.clone();
        off.client_id = "spa-off".into();
        off.disabled = true;
        let mut post = spec("post", "pw");
        post.token_endpoint_auth_method = Some(TokenEndpointAuthMethod::ClientSecretPost);
        let r = Registry::new(
            [public, off, post, spec("a", "pw-a")].map(|s| ClientRecord::new(s).unwrap()),
        )
        .unwrap();
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(r.public_client("spa").unwrap().client_id(), "spa");
        for other in ["spa-off", "post", "a", "nobody"] {
            assert_eq!(
                r.public_client(other).unwrap_err(),
                OAuthError::client_authentication_failed(),
                "{other}"
            );
        }
        let sent = r.authenticate("spa", b"anything", now).unwrap_err();
        assert_eq!(sent, token_endpoint_auth::public_client_sent_secret());
        assert_eq!(
            r.authenticate("spa-off", b"anything", now).unwrap_err(),
            OAuthError::client_authentication_failed()
        );
        let basic = TokenEndpointAuthMethod::ClientSecretBasic;
        let form = TokenEndpointAuthMethod::ClientSecretPost;
        assert!(r.authenticate_by("post", b"pw", form, now).is_ok());
        let e = r.authenticate_by("post", b"pw", basic, now).unwrap_err();
        assert!(e.description().contains("client_secret_post only"), "{e:?}");
        // A wrong secret is a wrong secret, whatever the method.
        assert_eq!(
            r.authenticate_by("post", b"bad", basic, now).unwrap_err(),
            OAuthError::client_authentication_failed()
        );
        assert!(r.authenticate_by("a", b"pw-a", basic, now).is_ok());
        assert!(r.authenticate_by("a", b"pw-a", form, now).is_ok());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err =
            Registry::new([spec("a", "1"), spec("a", "2")].map(|s| ClientRecord::new(s).unwrap()))
                .unwrap_err();
        assert_eq!(err, CoreError::DuplicateClientId("a".into()));
    }

    #[test]
    fn a_changed_copy_leaves_the_snapshot_it_came_from_alone() {
        let before = registry();
        let mut after = before.clone();
        after.insert(ClientRecord::new(spec("a", "new")).unwrap());
        assert!(after.remove("b"));
        assert!(!after.remove("b"));
        assert!(
            before
                .authenticate("a", b"pw-a", SystemTime::UNIX_EPOCH)
                .is_ok()
        );
        assert!(before.get("b").is_some());
        assert!(
            after
                .authenticate("a", b"new", SystemTime::UNIX_EPOCH)
                .is_ok()
        );
        assert!(after.get("b").is_none());
    }

    #[test]
    fn the_longest_client_lifetime_is_known() {
        let mut r = registry();
        assert_eq!(r.longest_token_lifetime(), Duration::ZERO);
        let mut s = spec("long", "x");
        s.token_lifetime = Some(Duration::from_secs(7200));
        r.insert(ClientRecord::new(s).unwrap());
        assert_eq!(r.longest_token_lifetime(), Duration::from_secs(7200));
    }
}
