//! Building responses: JSON bodies and the headers every answer of a kind carries.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use latchkey_core::{ErrorCode, OAuthError};

pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Token endpoint answers must never be cached (RFC 6749 §5.1).
pub fn no_store(mut res: Response<Body>) -> Response<Body> {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// How the client tried to authenticate, which decides how `invalid_client` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// It sent an `Authorization` header.
    Header,
    /// Form parameters or nothing.
    NoHeader,
}

/// An RFC 6749 §5.2 error. `invalid_client` is 401 with the Basic challenge when the client
/// tried the `Authorization` header (RFC 6749 §5.2, RFC 9110 §15.5.2: a 401 carries a
/// challenge), and 400 without one otherwise: some libraries throw on a 401 before reading the
/// body of a request that never used HTTP authentication.
pub fn oauth_error(err: &OAuthError, attempt: Attempt) -> Response<Body> {
    let status = match (err.code, attempt) {
        (ErrorCode::InvalidClient, Attempt::Header) => StatusCode::UNAUTHORIZED,
        (ErrorCode::InvalidClient, Attempt::NoHeader) => StatusCode::BAD_REQUEST,
        (code, _) => StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
    };
    let mut res = no_store(json(status, err.to_json()));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"latchkey\""),
        );
    }
    res
}

/// 405 with the methods the resource does take.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let body = serde_json::json!({
        "error": "method_not_allowed",
        "error_description": format!("allowed methods: {allow}"),
    });
    let mut res = json(StatusCode::METHOD_NOT_ALLOWED, body.to_string());
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

pub fn not_found() -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        r#"{"error":"not_found","error_description":"no such resource"}"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_with_challenge_only_after_a_header_attempt() {
        let e = OAuthError::client_authentication_failed();
        let res = oauth_error(&e, Attempt::Header);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"latchkey\""
        );
        let res = oauth_error(&e, Attempt::NoHeader);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
        let scope = OAuthError::new(ErrorCode::InvalidScope, "x");
        for attempt in [Attempt::Header, Attempt::NoHeader] {
            let res = oauth_error(&scope, attempt);
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }
}
