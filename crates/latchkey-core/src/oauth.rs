//! OAuth 2.0 error responses (RFC 6749 §5.2).

use std::borrow::Cow;

/// The `error` codes of RFC 6749 §5.2 that the token endpoint can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// Not in §5.2's list for the token endpoint, but the registered code for an internal fault.
    ServerError,
    /// Registered (RFC 6749 §4.1.2.1) for a server that cannot serve yet; answered with 503.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// Every code, for pre-registering metric label sets.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
    ];

    /// The wire name, as in the `error` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// HTTP status: 401 for a failed client authentication, 500 for our own fault, else 400.
    /// The transport answers `invalid_client` with 400 instead when the client did not try the
    /// `Authorization` header (a 401 must carry a challenge for the scheme it tried).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// Whether `b` may appear in an `error_description`: RFC 6749 §5.2 allows only
/// `%x20-21 / %x23-5B / %x5D-7E` (printable ASCII but double quote and backslash), and strict client
/// libraries refuse anything else.
pub fn is_description_byte(b: u8) -> bool {
    matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// `text` within the allowed set: a double quote becomes a single one, a backslash a slash,
/// anything else outside it '?'. Descriptions never echo raw input; this is the last guard.
fn within_charset(text: Cow<'static, str>) -> Cow<'static, str> {
    if text.bytes().all(is_description_byte) {
        return text;
    }
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_ascii() && is_description_byte(c as u8) => c,
            _ => '?',
        })
        .collect::<String>()
        .into()
}

/// An error answer of the token endpoint: a code and a human-readable description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Always within the RFC 6749 §5.2 charset (see [`is_description_byte`]).
    description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: within_charset(description.into()),
        }
    }

    /// The `error_description`, within the RFC 6749 §5.2 charset.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// The one answer for unknown client, wrong secret and disabled client alike, so that a
    /// caller cannot tell which client ids exist.
    pub fn client_authentication_failed() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
    }

    /// The JSON body: `{"error": …, "error_description": …}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        })
        .to_string()
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl std::error::Error for OAuthError {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_and_the_rest_400() {
        assert_eq!(ErrorCode::InvalidClient.http_status(), 401);
        assert_eq!(ErrorCode::InvalidScope.http_status(), 400);
        assert_eq!(ErrorCode::ServerError.http_status(), 500);
    }

    #[test]
    fn json_body_has_error_and_description() {
        let body = OAuthError::new(ErrorCode::InvalidScope, "scope x is not allowed").to_json();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "invalid_scope");
        assert_eq!(v["error_description"], "scope x is not allowed");
    }

    #[test]
    fn descriptions_stay_within_the_rfc_6749_charset() {
        let e = OAuthError::new(ErrorCode::InvalidScope, "\"café\" \\u{7f}\x7f\n\t");
        assert_eq!(e.description(), "'caf?' /u{7f}???");
        assert!(e.to_json().contains("'caf?'"));
    }

    /// A small deterministic generator, so that the property runs the same on every machine.
    pub(crate) struct Arbitrary(u64);

    impl Arbitrary {
        pub(crate) fn new(seed: u64) -> Self {
            Arbitrary(seed | 1)
        }

        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A string of up to `max` characters, mostly ASCII (controls and quotes included),
        /// some from anywhere in Unicode.
        pub(crate) fn string(&mut self, max: usize) -> String {
            let len = (self.next() % (max as u64 + 1)) as usize;
            (0..len)
                .map(|_| {
                    let r = self.next();
                    if r.is_multiple_of(4) {
                        char::from_u32((r >> 8) as u32 % 0x11_0000).unwrap_or('\u{fffd}')
                    } else {
                        char::from((r >> 8) as u8 & 0x7f)
                    }
                })
                .collect()
        }
    }

    #[test]
    fn property_any_description_is_within_the_charset() {
        let mut arb = Arbitrary::new(0x5eed);
        for _ in 0..5000 {
            let raw = arb.string(80);
            let e = OAuthError::new(ErrorCode::InvalidRequest, raw.clone());
            assert!(e.description().bytes().all(is_description_byte), "{raw:?}");
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
            assert_eq!(v["error_description"], e.description());
        }
    }
}
