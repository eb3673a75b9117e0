//! `application/x-www-form-urlencoded` bodies, strictly: malformed encoding and repeated
//! parameters are refused (RFC 6749 §3.2), and a parameter sent without a value counts as
//! omitted (RFC 6749 §3.1).

use std::borrow::Cow;

use latchkey_core::OAuthError;

/// The token request parameters Latchkey reads; others are ignored as RFC 6749 asks.
#[derive(Default)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    // Issue 11: client authentication by assertion.
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

impl std::fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenForm")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            // Issue 11: client authentication by assertion.
            .field("client_assertion_type", &self.client_assertion_type)
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Decode one form-urlencoded component: `+` is a space, `%XX` a byte, and the result must be
/// UTF-8. Shared with HTTP Basic credentials, which RFC 6749 §2.3.1 encodes the same way.
pub fn decode_component(raw: &str) -> Option<String> {
    let plus_as_space: Cow<'_, str> = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    let bytes = raw.as_bytes();
    // A '%' must start a two-hex-digit escape.
    for (i, _) in raw.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
    }
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// Parse a token request body.
pub fn parse_token_form(body: &[u8]) -> Result<TokenForm, OAuthError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the request body is not valid form data"))?;
    let mut form = TokenForm::default();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let malformed = || OAuthError::invalid_request("the request body is not valid form data");
        let name = decode_component(raw_name).ok_or_else(malformed)?;
        let value = decode_component(raw_value).ok_or_else(malformed)?;
        let slot = match name.as_str() {
            "grant_type" => &mut form.grant_type,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            "scope" => &mut form.scope,
            // Issue 11: client authentication by assertion.
            "client_assertion_type" => &mut form.client_assertion_type,
            "client_assertion" => &mut form.client_assertion,
            _ => continue,
        };
        if slot.is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            )));
        }
        // Kept even when empty, so that a second copy still counts as a repeat.
        *slot = Some(value);
    }
    for slot in [
        &mut form.grant_type,
        &mut form.client_id,
        &mut form.client_secret,
        &mut form.scope,
        // Issue 11: client authentication by assertion.
        &mut form.client_assertion_type,
        &mut form.client_assertion,
    ] {
        if slot.as_deref() == Some("") {
            *slot = None;
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let f = parse_token_form(b"grant_type=client_credentials&scope=a+b%3Ac&other=x&other=y")
            .unwrap();
        assert_eq!(f.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(f.scope.as_deref(), Some("a b:c"));
        assert!(f.client_id.is_none());
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let f = parse_token_form(b"grant_type=client_credentials&scope=&client_id").unwrap();
        assert!(f.scope.is_none());
        assert!(f.client_id.is_none());
    }

    #[test]
    fn repeats_and_bad_encoding_are_invalid_request() {
        for body in [
            &b"grant_type=a&grant_type=a"[..],
            b"scope=&scope=x",
            b"grant_type=%zz",
            b"grant_type=%e2%82",
            b"grant_type=%",
            b"grant_type=\xff",
        ] {
            let e = parse_token_form(body).unwrap_err();
            assert_eq!(e.code, latchkey_core::ErrorCode::InvalidRequest, "{body:?}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let f = parse_token_form(b"client_secret=hunter2").unwrap();
        assert!(!format!("{f:?}").contains("hunter2"));
    }
}
