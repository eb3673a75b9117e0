//! Cross-origin access (the Fetch standard's CORS protocol). The JWKS, the metadata and the
//! certificate are public documents: any origin may read them, so browser-side verifiers work.
//! The token endpoint takes credentials, so only the configured origins may call it.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::response::Body;

/// How long a browser may keep a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// Who may read a resource from another origin.
#[derive(Clone, Copy)]
pub enum Policy<'a> {
    /// Any origin, no credentials.
    Public,
    /// Exactly these origins (`https://app.example.com`).
    Origins(&'a [String]),
}

impl Policy<'_> {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it may read.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Policy::Public => Some(HeaderValue::from_static("*")),
            Policy::Origins(allowed) => {
                let origin = origin?;
                let origin_str = origin.to_str().ok()?;
                allowed
                    .iter()
                    .any(|a| a == origin_str)
                    .then(|| origin.clone())
            }
        }
    }
}

/// Add the CORS headers of an actual (non-preflight) response to a request from `origin`
/// (its `Origin` header).
pub fn decorate(policy: Policy<'_>, origin: Option<&HeaderValue>, res: &mut Response<Body>) {
    let h = res.headers_mut();
    if let Policy::Origins(allowed) = policy {
        if allowed.is_empty() {
            return;
        }
        // The answer depends on Origin: caches must keep one per origin.
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = policy.allow_origin(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag, WWW-Authenticate"),
        );
    }
}

/// Answer `OPTIONS`: `Allow` always, and the preflight grant when the origin may call.
pub fn options(
    policy: Policy<'_>,
    req: &HeaderMap,
    allow: &'static str,
    request_headers: &'static str,
) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let is_preflight = req.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let origin = policy.allow_origin(req.get(header::ORIGIN));
    let h = res.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    if let Policy::Origins(allowed) = policy
        && !allowed.is_empty()
    {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let (true, Some(origin)) = (is_preflight, origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(allow),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(request_headers),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
    }
    res
}

/// Whether `origin` is a serialized origin a browser sends: `http(s)://host[:port]`, nothing
/// after the authority, lowercase scheme and host.
pub fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get(res: &Response<Body>, name: &str) -> Option<String> {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn public_documents_are_readable_from_any_origin() {
        let req = headers(&[("origin", "https://spa.example")]);
        let mut res = Response::new(Body::default());
        decorate(Policy::Public, req.get(header::ORIGIN), &mut res);
        assert_eq!(
            get(&res, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        let pre = headers(&[
            ("origin", "https://spa.example"),
            ("access-control-request-method", "GET"),
        ]);
        let res = options(Policy::Public, &pre, "GET, HEAD, OPTIONS", "*");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            get(&res, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        assert_eq!(
            get(&res, "access-control-allow-methods").as_deref(),
            Some("GET, HEAD, OPTIONS")
        );
    }

    #[test]
    fn the_token_endpoint_answers_only_configured_origins() {
        let allowed = vec!["https://app.example".to_owned()];
        let policy = Policy::Origins(&allowed);
        for (origin, granted) in [
            ("https://app.example", true),
            ("https://evil.example", false),
            ("https://app.example.evil", false),
        ] {
            let pre = headers(&[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ]);
            let res = options(policy, &pre, "POST, OPTIONS", "Authorization, Content-Type");
            assert_eq!(
                get(&res, "access-control-allow-origin").is_some(),
                granted,
                "{origin}"
            );
            assert_eq!(get(&res, "vary").as_deref(), Some("Origin"));
            let mut res = Response::new(Body::default());
            decorate(
                policy,
                headers(&[("origin", origin)]).get(header::ORIGIN),
                &mut res,
            );
            assert_eq!(
                get(&res, "access-control-allow-origin").as_deref(),
                granted.then_some(origin),
            );
        }
        // None configured: no CORS at all.
        let mut res = Response::new(Body::default());
        decorate(
            Policy::Origins(&[]),
            Some(&HeaderValue::from_static("https://app.example")),
            &mut res,
        );
        assert!(res.headers().is_empty());
    }

    #[test]
    fn origins_are_scheme_and_authority_only() {
        for ok in [
            "https://app.example",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "app.example",
            "https://app.example/",
            "https://App.example",
            "ftp://a",
            "https://",
            "*",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
