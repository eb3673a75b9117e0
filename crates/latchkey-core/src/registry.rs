//! The client registry: an immutable snapshot, built whole and swapped whole.

use std::{collections::HashMap, sync::Arc};

use crate::{ClientRecord, CoreError, OAuthError, SecretDigest};

/// Every client the token endpoint knows, by client id.
#[derive(Debug)]
pub struct Registry {
    clients: HashMap<String, Arc<ClientRecord>>,
    /// Checked against when the client id is unknown, so unknown ids cost the same work.
    decoy: SecretDigest,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            clients: HashMap::new(),
            decoy: SecretDigest::decoy(),
        }
    }
}

impl Registry {
    /// Build a snapshot. Two records with one client id are an error: the caller decides who
    /// keeps an id before building.
    pub fn new(records: impl IntoIterator<Item = ClientRecord>) -> Result<Registry, CoreError> {
        let mut clients = HashMap::new();
        for record in records {
            let id = record.client_id().to_owned();
            if clients.insert(id.clone(), Arc::new(record)).is_some() {
                return Err(CoreError::DuplicateClientId(id));
            }
        }
        Ok(Registry {
            clients,
            decoy: SecretDigest::decoy(),
        })
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

    /// Authenticate a client by id and secret. Unknown id, wrong secret and disabled client
    /// give the same error after the same work: one digest and one constant-time comparison.
    pub fn authenticate(
        &self,
        client_id: &str,
        secret: &[u8],
    ) -> Result<&Arc<ClientRecord>, OAuthError> {
        let record = self.clients.get(client_id);
        let digest = record.map_or(&self.decoy, |r| r.secret_digest());
        let secret_ok = digest.matches(secret);
        match record {
            Some(r) if secret_ok && !r.is_disabled() => Ok(r),
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
        assert_eq!(r.authenticate("a", b"pw-a").unwrap().client_id(), "a");
        let wrong = r.authenticate("a", b"pw-b").unwrap_err();
        let unknown = r.authenticate("zzz", b"pw-a").unwrap_err();
        let disabled = r.authenticate("off", b"pw").unwrap_err();
        assert_eq!(wrong, unknown);
        assert_eq!(wrong, disabled);
        assert_eq!(wrong, OAuthError::client_authentication_failed());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err =
            Registry::new([spec("a", "1"), spec("a", "2")].map(|s| ClientRecord::new(s).unwrap()))
                .unwrap_err();
        assert_eq!(err, CoreError::DuplicateClientId("a".into()));
    }
}
