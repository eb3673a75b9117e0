//! Generated client credentials: a Secret owned by its OAuthClient, holding `clientId`,
//! `clientSecret` (256 random bits) and `tokenUrl`. Only ever created, never overwritten.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};
use latchkey_api::{
    OAuthClient,
    resolve::{MANAGED_BY_LABEL, MANAGED_BY_VALUE},
    secret_data,
};

use crate::OperatorError;

/// Label naming the OAuthClient a generated Secret belongs to.
pub const CLIENT_LABEL: &str = "latchkey.dev/oauthclient";

/// A new client secret: 32 random bytes, base64url without padding (43 characters).
pub fn random_secret() -> Result<String, OperatorError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| OperatorError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The credentials Secret for `owner`.
pub fn credentials_secret(
    owner: &OAuthClient,
    name: &str,
    client_id: &str,
    client_secret: &str,
    token_url: &str,
) -> Secret {
    let owner_ref = OwnerReference {
        api_version: OAuthClient::api_version(&()).into_owned(),
        kind: OAuthClient::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let data = BTreeMap::from([
        (
            secret_data::CLIENT_ID_KEY.to_owned(),
            ByteString(client_id.as_bytes().to_vec()),
        ),
        (
            secret_data::DEFAULT_SECRET_KEY.to_owned(),
            ByteString(client_secret.as_bytes().to_vec()),
        ),
        (
            secret_data::TOKEN_URL_KEY.to_owned(),
            ByteString(token_url.as_bytes().to_vec()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: owner.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (CLIENT_LABEL.to_owned(), owner.name_any()),
            ])),
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_fresh() {
        let a = random_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_secret().unwrap());
    }

    #[test]
    fn the_secret_is_owned_labelled_and_complete() {
        let mut owner = OAuthClient::new("gw", Default::default());
        owner.metadata.namespace = Some("apps".into());
        owner.metadata.uid = Some("u1".into());
        let s = credentials_secret(
            &owner,
            "gw-credentials",
            "id",
            "pw",
            "https://x/oauth2/token",
        );
        let r = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.uid.as_str(),
                r.controller
            ),
            ("OAuthClient", "gw", "u1", Some(true))
        );
        assert_eq!(r.api_version, "latchkey.dev/v1alpha1");
        let data = s.data.unwrap();
        assert_eq!(data["clientId"].0, b"id");
        assert_eq!(data["clientSecret"].0, b"pw");
        assert_eq!(data["tokenUrl"].0, b"https://x/oauth2/token");
        assert_eq!(s.metadata.labels.unwrap()[MANAGED_BY_LABEL], "latchkey");
    }
}
