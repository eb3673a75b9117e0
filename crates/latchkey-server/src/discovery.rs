//! The documents verifiers read: the JWK Set and the authorization server metadata
//! (RFC 8414, also served as OpenID discovery).

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::{
    App,
    app::{JWKS_PATHS, TOKEN_PATH},
    response::{self, Body},
};

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
    let cache = format!("public, max-age={}", app.config.jwks_max_age.as_secs());
    let not_modified = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut res = if not_modified {
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
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// The active key's certificate as PEM; 404 while there is none.
pub fn certificate(app: &App) -> Response<Body> {
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
    let cache = format!("public, max-age={}", app.config.jwks_max_age.as_secs());
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    res
}

/// The base URL to advertise: the configured one, else scheme + the request's authority.
fn base_url<B>(app: &App, req: &Request<B>) -> String {
    if let Some(url) = &app.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
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

/// RFC 8414 metadata of this issuer.
pub fn metadata<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let base = base_url(app, req);
    let keys = app.issuer.keys();
    let mut algs: Vec<&str> = keys
        .iter()
        .flat_map(|k| k.published().iter().map(|k| k.alg().as_str()))
        .collect();
    algs.sort_unstable();
    algs.dedup();
    let doc = serde_json::json!({
        "issuer": app.issuer.settings().issuer,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}{}", JWKS_PATHS[0]),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": ["default"],
        "token_signing_alg_values_supported": algs,
    });
    let mut res = response::json(StatusCode::OK, doc.to_string());
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}
