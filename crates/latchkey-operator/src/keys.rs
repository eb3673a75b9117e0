//! The signing keys Secret: one `keyring.json` entry holding every key and its state. Every
//! replica reads it; only the Lease holder writes it, always with a resourceVersion
//! precondition (create, or replace of the version it read).

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use latchkey_core::{CoreError, keyring::KeyRing};

use crate::index::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// The data key of the key ring document.
pub const KEYRING_KEY: &str = "keyring.json";

/// The key ring stored in a Secret.
pub fn parse(secret: &Secret) -> Result<KeyRing, CoreError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYRING_KEY))
        .ok_or_else(|| CoreError::KeySet(format!("the Secret has no {KEYRING_KEY:?} key")))?;
    KeyRing::from_json(&bytes.0)
}

/// A Secret holding `ring`; `resource_version` makes a replace conditional on that version.
pub fn secret(
    name: &str,
    namespace: &str,
    ring: &KeyRing,
    resource_version: Option<String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY_VALUE.to_owned(),
            )])),
            resource_version,
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEYRING_KEY.to_owned(),
            ByteString(ring.to_json()),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::SigningAlgorithm;

    #[test]
    fn a_ring_survives_the_secret() {
        let ring = KeyRing::bootstrap(
            "k",
            SigningAlgorithm::EdDSA,
            0,
            std::time::SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let s = secret("keys", "ns", &ring, Some("7".into()));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(parse(&s).unwrap(), ring);
        assert!(parse(&Secret::default()).is_err());
    }
}
