//! The documents verifiers read: the JWK Set, the active key's certificate, and the
//! authorization server metadata (RFC 8414).
//!
//! No OpenID Connect discovery document is served: until Latchkey signs users in, one would
//! have to claim an authorization endpoint and ID tokens that do not exist.

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::{
    App, conditional,
    response::{self, Body},
    routes::{JWKS_PATHS, TOKEN_PATH},
};

/// `public, max-age=N` for documents every client may cache for the configured period.
fn shared_cache(app: &App) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "public, max-age={}",
        app.config.jwks_max_age.as_secs()
    ))
    .ok()
}

/// The JWK Set, cacheable for the configured period and revalidated by ETag.
pub fn jwks<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let Some(keys) = app.issuer.keys() else {
        // Nothing to publish yet; not cacheable.
        let mut res = response::json(StatusCode::OK, r#"{"keys":[]}"#);
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    };
    let etag = keys.etag();
    let mut res = if conditional::none_match(req.headers(), etag) {
        let mut r = Response::new(Body::default());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = response::json(StatusCode::OK, keys.jwks_json().to_owned());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        r
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = shared_cache(app) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// The active key's certificate as PEM; 404 while there is none.
pub fn certificate<B>(app: &App, _req: &Request<B>) -> Response<Body> {
    let pem = app.issuer.keys().and_then(|k| k.active().certificate_pem());
    let Some(pem) = pem else {
        return response::json(
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","error_description":"the active key has no certificate"}"#,
        );
    };
    let mut res = Response::new(Body::from(pem));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    // It changes on rotation: short caching, like the JWKS.
    if let Some(v) = shared_cache(app) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// The base URL to advertise: the configured one, else scheme + the request's authority.
fn base_url<B>(app: &App, req: &Request<B>) -> String {
    base_url_of(app, req.uri(), req.headers())
}

/// The base URL clients reach this server at (see [`base_url`]), from a request's parts.
pub(crate) fn base_url_of(app: &App, uri: &http::Uri, headers: &http::HeaderMap) -> String {
    if let Some(url) = &app.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{}://{authority}", app.config.scheme)
}

/// The RFC 8414 metadata document: only standard members, each one true of this server.
pub fn metadata_document(issuer: &str, base: &str) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}{}", JWKS_PATHS[0]),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        // Issue 12: people sign in with the authorization code flow only.
        "response_types_supported": ["code"],
        "scopes_supported": [latchkey_core::scope::DEFAULT_SCOPE, "openid"],
        // Issue 13
        "introspection_endpoint": format!("{base}{}", crate::routes::INTROSPECTION_PATH),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint": format!("{base}{}", crate::routes::REVOCATION_PATH),
        // Issue 12: a public client revokes its own tokens with its client_id (RFC 7009 §5).
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        // Issue 12: sign-in and OpenID Connect (Discovery 1.0 §3; these members are also
        // registered for RFC 8414 metadata, so one document serves both).
        "authorization_endpoint": format!("{base}{}", crate::routes::AUTHORIZE_PATH),
        "userinfo_endpoint": format!("{base}{}", crate::routes::USERINFO_PATH),
        "end_session_endpoint": format!("{base}{}", crate::routes::LOGOUT_PATH),
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "subject_types_supported": ["public"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp",
            "preferred_username", "name", "email", "email_verified", "organization", "groups"
        ],
    });
    // Issue 11: client authentication by assertion (RFC 7523 private_key_jwt; federated
    // and ServiceAccount assertions use the same parameters).
    if let Some(methods) = doc["token_endpoint_auth_methods_supported"].as_array_mut() {
        methods.push("private_key_jwt".into());
        // Issue 12: public clients (client_id alone, PKCE required).
        methods.push("none".into());
    }
    doc["token_endpoint_auth_signing_alg_values_supported"] =
        serde_json::json!(latchkey_core::assertion::ALLOWED_ALGS);
    doc
}

/// Issue 12: the algorithm ID tokens are signed with (the active key's; RS256 until a key is
/// loaded, Latchkey's default).
fn id_token_algs(app: &App) -> serde_json::Value {
    let alg = app
        .issuer
        .keys()
        .map_or("RS256", |k| k.active().alg().as_str());
    serde_json::json!([alg])
}

/// RFC 8414 metadata of this issuer. With `--public-url` every client sees the same document;
/// without it the endpoints follow the request's Host, so the answer varies by Host and is
/// kept out of shared caches.
pub fn metadata<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let base = base_url(app, req);
    let mut doc = metadata_document(&app.issuer.settings().issuer, &base);
    // Issue 13: the registration endpoint, when registration is enabled.
    if app.config.registration.mode != crate::register::RegistrationMode::Closed
        && app.registrar.get().is_some()
        && let Some(members) = doc.as_object_mut()
    {
        members.insert(
            "registration_endpoint".into(),
            format!("{base}{}", crate::routes::REGISTRATION_PATH).into(),
        );
    }
    // Issue 12
    doc["id_token_signing_alg_values_supported"] = id_token_algs(app);
    let mut res = response::json(StatusCode::OK, doc.to_string());
    let h = res.headers_mut();
    let max_age = app.config.jwks_max_age.as_secs();
    let cache = if app.config.public_url.is_some() {
        format!("public, max-age={max_age}")
    } else {
        h.insert(header::VARY, HeaderValue::from_static("Host"));
        format!("private, max-age={max_age}")
    };
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}
