//! The signing keys Secret: one `keyring.json` entry holding every key and its state. Every
//! replica reads it; only the Lease holder writes it, always with a resourceVersion
//! precondition (create, or replace of exactly the version it read), so a stale writer
//! cannot overwrite a newer key set.
//!
//! Requests from `latchkey keys rotate|revoke` arrive as annotations that the leader carries
//! out and removes. A Secret annotated as externally managed (cert-manager, a vault operator)
//! is read, never written: `keyring.json`, or a `tls.key` (+ `tls.crt`) pair.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, ResourceExt, api::PostParams};
use latchkey_core::{
    CoreError, KeyMaterial,
    keyring::{KeyRing, KidStrategy, RotationPolicy},
};

use crate::{
    OperatorError,
    index::{MANAGED_BY_LABEL, MANAGED_BY_VALUE},
};

/// The data key of the key ring document.
pub const KEYRING_KEY: &str = "keyring.json";
/// Annotation asking the leader to start a rotation (any value).
pub const ROTATE_ANNOTATION: &str = "latchkey.dev/rotate";
/// Annotation asking the leader to revoke the key with this kid.
pub const REVOKE_ANNOTATION: &str = "latchkey.dev/revoke";
/// Annotation (`"true"`) marking a keys Secret that Latchkey must never write.
pub const EXTERNAL_ANNOTATION: &str = "latchkey.dev/externally-managed";

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

/// Whether Latchkey must leave this Secret alone.
pub fn is_external(secret: &Secret) -> bool {
    secret
        .annotations()
        .get(EXTERNAL_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// The key ring a Secret holds. An external `tls.key` becomes a one-key ring whose kid
/// follows `kid` (its thumbprint, or the static id).
pub fn read(secret: &Secret, kid: &KidStrategy) -> Result<KeyRing, CoreError> {
    if let Some(bytes) = data(secret, KEYRING_KEY) {
        return KeyRing::from_json(bytes);
    }
    if is_external(secret)
        && let Some(key) = data(secret, "tls.key")
    {
        let text = std::str::from_utf8(key)
            .map_err(|_| CoreError::Key("tls.key is not PEM text".into()))?;
        let material = KeyMaterial::from_any_pem(text)?;
        let kid = match kid {
            KidStrategy::Static(kid) => kid.clone(),
            KidStrategy::Thumbprint => {
                latchkey_core::SigningKey::new("t", &material)?.thumbprint()?
            }
        };
        let created = secret.metadata.creation_timestamp.as_ref().map_or(
            std::time::SystemTime::UNIX_EPOCH,
            |t| {
                std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(t.0.as_second().max(0) as u64)
            },
        );
        let mut ring = KeyRing::import(&kid, &material, created)?;
        if let Some(cert) = data(secret, "tls.crt").and_then(|c| std::str::from_utf8(c).ok()) {
            ring.keys[0].certificate_pem = Some(cert.to_owned());
        }
        return Ok(ring);
    }
    Err(CoreError::KeySet(format!(
        "the Secret has no {KEYRING_KEY:?} key"
    )))
}

/// A Secret holding `ring`, with the given annotations; `resource_version` makes a replace
/// conditional on exactly that version.
pub fn secret(
    name: &str,
    namespace: &str,
    ring: &KeyRing,
    annotations: BTreeMap<String, String>,
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
            annotations: (!annotations.is_empty()).then_some(annotations),
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

/// Replace the keys Secret, but only if it is still at `resource_version`: a writer that
/// read an older version gets a 409 Conflict and writes nothing.
pub async fn replace(
    api: &Api<Secret>,
    name: &str,
    ring: &KeyRing,
    annotations: BTreeMap<String, String>,
    resource_version: String,
) -> Result<Secret, kube::Error> {
    let namespace = api.namespace().unwrap_or_default().to_owned();
    let new = secret(name, &namespace, ring, annotations, Some(resource_version));
    api.replace(name, &PostParams::default(), &new).await
}

/// Create the keys Secret with a first key (a 409 Conflict if it exists).
pub async fn create(
    api: &Api<Secret>,
    name: &str,
    policy: &RotationPolicy,
) -> Result<Secret, OperatorError> {
    let ring = KeyRing::bootstrap(policy, std::time::SystemTime::now())?;
    let namespace = api.namespace().unwrap_or_default().to_owned();
    Ok(api
        .create(
            &PostParams::default(),
            &secret(name, &namespace, &ring, BTreeMap::new(), None),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::SigningAlgorithm;
    use std::time::Duration;

    fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlgorithm::EdDSA,
            rsa_bits: 2048,
            kid: KidStrategy::Thumbprint,
            rotation_period: Duration::from_secs(3600),
            verifier_cache: Duration::from_secs(120),
            clock_skew: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_ring_survives_the_secret() {
        let ring = KeyRing::bootstrap(&policy(), std::time::SystemTime::UNIX_EPOCH).unwrap();
        let s = secret("keys", "ns", &ring, BTreeMap::new(), Some("7".into()));
        assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(read(&s, &KidStrategy::Thumbprint).unwrap(), ring);
        assert!(read(&Secret::default(), &KidStrategy::Thumbprint).is_err());
    }

    #[test]
    fn an_external_tls_secret_is_one_key() {
        let m = KeyMaterial::generate(SigningAlgorithm::ES256, 2048).unwrap();
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([(
            EXTERNAL_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        s.data = Some(BTreeMap::from([(
            "tls.key".to_owned(),
            ByteString(m.to_pem().into_bytes()),
        )]));
        assert!(is_external(&s));
        let ring = read(&s, &KidStrategy::Static("pinned".into())).unwrap();
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.keys[0].kid, "pinned");
        assert_eq!(
            ring.key_set().unwrap().active().alg(),
            SigningAlgorithm::ES256
        );
        // Without the annotation, a tls.key is not read as keys.
        s.metadata.annotations = None;
        assert!(read(&s, &KidStrategy::Thumbprint).is_err());
    }
}
