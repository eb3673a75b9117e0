//! Issue 12: `GET`/`POST /oauth2/userinfo` (OpenID Connect Core §5.3). The access token comes
//! as a Bearer token (RFC 6750 §2.1) and is verified as at introspection (signature by a
//! published key, this issuer, not expired, its client enabled, not revoked); it must be a
//! person's token with `openid` in its scope, and the person must still be in the directory.
//! Errors are RFC 6750 §3 challenges.

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::{
    App,
    authorize_request::OPENID_SCOPE,
    response::{self, Body},
};

/// A 401 or 403 with the challenge RFC 6750 §3 describes.
fn challenge(status: StatusCode, error: &'static str) -> Response<Body> {
    let mut res = response::no_store(response::json(status, format!("{{\"error\":\"{error}\"}}")));
    let value = format!("Bearer error=\"{error}\"");
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// The Bearer token of the request's one Authorization header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token.trim())
}

/// Answer a userinfo request from its headers.
pub fn handle(app: &App, headers: &HeaderMap) -> Response<Body> {
    let Some(token) = bearer(headers) else {
        // RFC 6750 §3.1: no credentials, no error code.
        let mut res = response::no_store(response::json(StatusCode::UNAUTHORIZED, "{}"));
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return res;
    };
    let Some(claims) = app
        .introspector
        .active_claims(&app.issuer, token, SystemTime::now())
    else {
        return challenge(StatusCode::UNAUTHORIZED, "invalid_token");
    };
    let Some(sign_in) = app.sign_in.get() else {
        return challenge(StatusCode::UNAUTHORIZED, "invalid_token");
    };
    let users = sign_in.users.load();
    let Some(user) = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .and_then(|sub| users.by_id(sub))
    else {
        return challenge(StatusCode::UNAUTHORIZED, "invalid_token");
    };
    let openid = claims
        .get("scope")
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.split(' ').any(|s| s == OPENID_SCOPE));
    if !openid {
        return challenge(StatusCode::FORBIDDEN, "insufficient_scope");
    }
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), user.id.clone().into());
    body.insert("preferred_username".into(), user.username.clone().into());
    if let Some(name) = &user.display_name {
        body.insert("name".into(), name.clone().into());
    }
    if let Some(email) = &user.email {
        body.insert("email".into(), email.clone().into());
        body.insert("email_verified".into(), user.email_verified.into());
    }
    if let Some(org) = claims.get("organization") {
        body.insert("organization".into(), org.clone());
    }
    body.insert("groups".into(), user.groups.clone().into());
    response::no_store(response::json(
        StatusCode::OK,
        serde_json::Value::Object(body).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_comes_from_one_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(bearer(&h), None, "two headers: neither");
    }
}
