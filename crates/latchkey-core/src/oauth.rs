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
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// An error answer of the token endpoint: a code and a human-readable description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
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
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_and_the_rest_400() {
        assert_eq!(ErrorCode::InvalidClient.http_status(), 401);
        assert_eq!(ErrorCode::InvalidScope.http_status(), 400);
        assert_eq!(ErrorCode::ServerError.http_status(), 500);
    }

    #[test]
    fn json_body_has_error_and_description() {
        let body = OAuthError::new(ErrorCode::InvalidScope, "scope \"x\" is not allowed").to_json();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "invalid_scope");
        assert_eq!(v["error_description"], "scope \"x\" is not allowed");
    }
}
