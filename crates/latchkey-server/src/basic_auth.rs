//! HTTP Basic client authentication as RFC 6749 §2.3.1 defines it: the client id and secret
//! are each form-urlencoded before being joined by ':' and base64-encoded.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use latchkey_core::{ErrorCode, OAuthError};

use crate::form::decode_component;

/// Client credentials taken from an `Authorization` header.
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// Parse an `Authorization` header value. `Ok(None)`: not the Basic scheme.
pub fn parse(header: &[u8]) -> Result<Option<BasicCredentials>, OAuthError> {
    let malformed = || OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials");
    let text = std::str::from_utf8(header).map_err(|_| malformed())?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
    let joined = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = joined.split_once(':').ok_or_else(malformed)?;
    Ok(Some(BasicCredentials {
        client_id: decode_component(id).ok_or_else(malformed)?,
        client_secret: decode_component(secret).ok_or_else(malformed)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn decodes_the_apk_seed_header() {
        let c = parse(b"Basic NDVmMWM1YzgtYTkyZS0xMWVkLWFmYTEtMDI0MmFjMTIwMDAyOjRmYmQ2MmVjLWE5MmUtMTFlZC1hZmExLTAyNDJhYzEyMDAwMg==")
            .unwrap()
            .unwrap();
        assert_eq!(c.client_id, "45f1c5c8-a92e-11ed-afa1-0242ac120002");
        assert_eq!(c.client_secret, "4fbd62ec-a92e-11ed-afa1-0242ac120002");
    }

    #[test]
    fn form_decodes_each_part() {
        let c = parse(header("my%3Aid:a%3Ab%25c%2Bd+e").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(c.client_id, "my:id");
        assert_eq!(c.client_secret, "a:b%c+d e");
    }

    #[test]
    fn other_schemes_are_not_basic_and_garbage_is_refused() {
        assert!(parse(b"Bearer abc").unwrap().is_none());
        assert!(parse(b"basic !!!").is_err());
        assert!(parse(header("no-colon").as_bytes()).is_err());
        assert!(parse(header("a:%zz").as_bytes()).is_err());
    }
}
