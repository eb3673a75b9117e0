//! Reading credentials out of a Kubernetes `Secret`.

use k8s_openapi::api::core::v1::Secret;

/// The key a `secretRef` reads when it names none.
pub const DEFAULT_SECRET_KEY: &str = "clientSecret";
/// Keys of a generated credentials Secret.
pub const CLIENT_ID_KEY: &str = "clientId";
pub const TOKEN_URL_KEY: &str = "tokenUrl";
/// Issue 13: the key `spec.previousSecret` reads when it names none.
pub const PREVIOUS_SECRET_KEY: &str = "previousClientSecret";

/// The value under `key`, from `stringData` (which wins, as in the API server) or `data`.
pub fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.as_bytes().to_vec());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
}

/// The name of the Secret the operator generates for an `OAuthClient` without `secretRef`.
pub fn generated_name(client_name: &str) -> String {
    format!("{client_name}-credentials")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn string_data_wins_over_data() {
        let s = Secret {
            data: Some(BTreeMap::from([
                ("a".to_string(), ByteString(b"from-data".to_vec())),
                ("b".to_string(), ByteString(b"only-data".to_vec())),
            ])),
            string_data: Some(BTreeMap::from([(
                "a".to_string(),
                "from-string".to_string(),
            )])),
            ..Secret::default()
        };
        assert_eq!(value(&s, "a").unwrap(), b"from-string");
        assert_eq!(value(&s, "b").unwrap(), b"only-data");
        assert_eq!(value(&s, "c"), None);
    }
}
