//! Issue 13: dynamic client registration (RFC 7591) at `POST /oauth2/register` and APK's
//! `/dcr/register`, and its management (RFC 7592) at `<that path>/<client_id>` with the
//! registration access token as a Bearer token.
//!
//! This module decides who may register (the policy), limits how often a source may call, and
//! shapes the answers; what a registration is and where it is kept belongs to the run mode,
//! behind [`Registrar`] (files in the state directory standalone), which checks the metadata
//! with the rules of `latchkey_api::registration`.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value};

use crate::{
    App,
    response::{self, Body},
    routes::{APK_REGISTRATION_PATH, REGISTRATION_PATH},
    sources::Peer,
    token_endpoint::{self, Failure},
};

/// Who may register clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// Nobody: the endpoint answers 403 and the metadata does not list it.
    #[default]
    Closed,
    /// Anybody who can reach the endpoint.
    Open,
    /// Callers presenting an active Latchkey access token carrying this scope.
    InitialToken { scope: String },
}

/// Registration settings of the public listener.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub mode: RegistrationMode,
    /// Registration and management requests per source address per minute.
    pub per_minute: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            mode: RegistrationMode::Closed,
            per_minute: 10,
        }
    }
}

/// Why the registrar refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarError {
    /// RFC 7591 §3.2.2: `error` code and description (400).
    Metadata {
        code: &'static str,
        description: String,
    },
    /// No such registration, or the token is not its registration access token (RFC 7592
    /// §2: 401, saying neither which).
    InvalidToken,
    /// The store could not be read or written (503); the message is for the log.
    Unavailable(String),
}

/// A future a [`Registrar`] returns.
pub type RegistrarFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RegistrarError>> + Send + 'a>>;

/// Where a deployment keeps registrations. Each call answers once this process serves the
/// result (a registered client gets tokens as soon as the answer arrives). The answers are
/// RFC 7591 §3.2.1 members without `registration_client_uri`, which this module adds.
pub trait Registrar: Send + Sync {
    /// Register a client from a JSON body; the answer includes the registration access token.
    fn create<'a>(
        &'a self,
        body: &'a [u8],
        now: SystemTime,
    ) -> RegistrarFuture<'a, Map<String, Value>>;
    fn read<'a>(
        &'a self,
        client_id: &'a str,
        token: &'a str,
    ) -> RegistrarFuture<'a, Map<String, Value>>;
    /// Replace the metadata (RFC 7592 §2.2); a body without `client_secret` rotates it.
    fn update<'a>(
        &'a self,
        client_id: &'a str,
        token: &'a str,
        body: &'a [u8],
    ) -> RegistrarFuture<'a, Map<String, Value>>;
    fn delete<'a>(&'a self, client_id: &'a str, token: &'a str) -> RegistrarFuture<'a, ()>;
}

/// The registrar of a deployment, set once at start.
#[derive(Default)]
pub struct RegistrarSlot(std::sync::OnceLock<Arc<dyn Registrar>>);

impl RegistrarSlot {
    pub fn get(&self) -> Option<&Arc<dyn Registrar>> {
        self.0.get()
    }

    /// Set it; only the first call counts.
    pub fn set(&self, registrar: Arc<dyn Registrar>) {
        let _ = self.0.set(registrar);
    }
}

impl std::fmt::Debug for RegistrarSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "RegistrarSlot(set)"
        } else {
            "RegistrarSlot(unset)"
        })
    }
}

/// Most sources the rate limiter tracks in one window; past that, new sources wait for the
/// next window (the table never grows without bound).
const MAX_SOURCES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

/// Requests per source in fixed one-minute windows.
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<(Instant, HashMap<IpAddr, u32>)>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            state: Mutex::new((Instant::now(), HashMap::new())),
        }
    }
}

impl RateLimit {
    /// Count a request from `source`; `Err(seconds)` to wait when over `per_minute`.
    pub fn admit(&self, source: Option<IpAddr>, per_minute: u32, now: Instant) -> Result<(), u64> {
        let source = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (start, counts) = &mut *guard;
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            counts.clear();
        }
        let wait = (WINDOW.saturating_sub(now.duration_since(*start)).as_secs()).max(1);
        if !counts.contains_key(&source) && counts.len() >= MAX_SOURCES {
            return Err(wait);
        }
        let n = counts.entry(source).or_insert(0);
        if *n >= per_minute {
            return Err(wait);
        }
        *n += 1;
        Ok(())
    }
}

/// Whether `path` is a registration path; `Some(None)` for the collection,
/// `Some(Some(id))` for one registration.
pub fn route(path: &str) -> Option<Option<&str>> {
    for base in [REGISTRATION_PATH, APK_REGISTRATION_PATH] {
        if let Some(rest) = path.strip_prefix(base) {
            if rest.is_empty() {
                return Some(None);
            }
            if let Some(id) = rest.strip_prefix('/')
                && !id.is_empty()
                && !id.contains('/')
            {
                return Some(Some(id));
            }
        }
    }
    None
}

fn error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "error_description": description });
    response::no_store(response::json(status, body.to_string()))
}

fn invalid_token(description: &str) -> Response<Body> {
    let mut res = error(StatusCode::UNAUTHORIZED, "invalid_token", description);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    res
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

fn registrar_error(e: RegistrarError) -> Response<Body> {
    match e {
        RegistrarError::Metadata { code, description } => {
            error(StatusCode::BAD_REQUEST, code, &description)
        }
        RegistrarError::InvalidToken => {
            invalid_token("no such registration, or not its registration access token")
        }
        RegistrarError::Unavailable(why) => {
            tracing::warn!(error = %why, "a registration could not be read or written");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the registration could not be stored; retry shortly",
            )
        }
    }
}

fn body_error(f: Failure) -> Response<Body> {
    let mut res = error(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        "the request body could not be read",
    );
    match f {
        Failure::TooLarge(_) => *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE,
        Failure::Timeout => *res.status_mut() = StatusCode::REQUEST_TIMEOUT,
        Failure::OAuth(_) => {}
    }
    res
}

/// What a client id keeps unescaped in a path: RFC 3986 unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The answer of a registration or a read, with where to manage it.
fn answer(
    app: &App,
    req_headers: &HeaderMap,
    uri: &http::Uri,
    status: StatusCode,
    mut members: Map<String, Value>,
) -> Response<Body> {
    let base = crate::discovery::base_url_of(app, uri, req_headers);
    if let Some(id) = members.get("client_id").and_then(Value::as_str) {
        let id = percent_encoding::utf8_percent_encode(id, UNRESERVED);
        members.insert(
            "registration_client_uri".into(),
            format!("{base}{REGISTRATION_PATH}/{id}").into(),
        );
    }
    response::no_store(response::json(status, Value::Object(members).to_string()))
}

/// Answer a request at a registration path (see [`route`]).
pub async fn handle<B>(app: &App, req: Request<B>, id: Option<&str>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let allow = if id.is_some() {
        "GET, PUT, DELETE"
    } else {
        "POST"
    };
    let allowed = match id {
        None => req.method() == Method::POST,
        Some(_) => matches!(*req.method(), Method::GET | Method::PUT | Method::DELETE),
    };
    if !allowed {
        return response::method_not_allowed(allow);
    }
    let Some(registrar) = app.registrar.get() else {
        return closed();
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let per_minute = app.config.registration.per_minute;
    if let Err(wait) = app
        .registration_limit
        .admit(peer, per_minute, Instant::now())
    {
        let mut res = error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many registration requests from this address; retry later",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let result = match id {
        None => register(app, registrar.as_ref(), req).await,
        Some(id) => manage(app, registrar.as_ref(), req, id).await,
    };
    tracing::info!(
        target: "latchkey::access",
        status = result.status().as_u16(),
        management = id.is_some(),
        "registration request"
    );
    result
}

fn closed() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "access_denied",
        "client registration is closed on this server",
    )
}

async fn register<B>(app: &App, registrar: &dyn Registrar, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match &app.config.registration.mode {
        RegistrationMode::Closed => return closed(),
        RegistrationMode::Open => {}
        RegistrationMode::InitialToken { scope } => {
            let Some(token) = bearer(req.headers()) else {
                return invalid_token("an initial access token (Bearer) is required to register");
            };
            let now = SystemTime::now();
            let Some(claims) = app.introspector.active_claims(&app.issuer, token, now) else {
                return invalid_token("the initial access token is not active");
            };
            let carries = claims
                .get("scope")
                .and_then(Value::as_str)
                .is_some_and(|s| s.split(' ').any(|s| s == scope));
            if !carries {
                let mut res = error(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "the initial access token lacks the registration scope",
                );
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                );
                return res;
            }
        }
    }
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "the request body must be JSON (Content-Type: application/json)",
        );
    }
    let body = match token_endpoint::read_body(app, &parts.headers, body).await {
        Ok(b) => b,
        Err(f) => return body_error(f),
    };
    match registrar.create(&body, SystemTime::now()).await {
        Ok(members) => answer(
            app,
            &parts.headers,
            &parts.uri,
            StatusCode::CREATED,
            members,
        ),
        Err(e) => registrar_error(e),
    }
}

async fn manage<B>(
    app: &App,
    registrar: &dyn Registrar,
    req: Request<B>,
    id: &str,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Ok(id) = percent_encoding::percent_decode_str(id).decode_utf8() else {
        return invalid_token("no such registration, or not its registration access token");
    };
    let id = id.into_owned();
    let (parts, body) = req.into_parts();
    let Some(token) = bearer(&parts.headers) else {
        return invalid_token("the registration access token (Bearer) is required");
    };
    let result = match parts.method {
        Method::GET => registrar.read(&id, token).await,
        Method::PUT => {
            if !is_json(&parts.headers) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_metadata",
                    "the request body must be JSON (Content-Type: application/json)",
                );
            }
            let body = match token_endpoint::read_body(app, &parts.headers, body).await {
                Ok(b) => b,
                Err(f) => return body_error(f),
            };
            registrar.update(&id, token, &body).await
        }
        _ => {
            return match registrar.delete(&id, token).await {
                Ok(()) => {
                    let mut res = Response::new(Body::default());
                    *res.status_mut() = StatusCode::NO_CONTENT;
                    response::no_store(res)
                }
                Err(e) => registrar_error(e),
            };
        }
    };
    match result {
        Ok(members) => answer(app, &parts.headers, &parts.uri, StatusCode::OK, members),
        Err(e) => registrar_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/oauth2/register"), Some(None));
        assert_eq!(route("/dcr/register"), Some(None));
        assert_eq!(route("/oauth2/register/abc"), Some(Some("abc")));
        assert_eq!(route("/dcr/register/abc"), Some(Some("abc")));
        assert_eq!(route("/oauth2/register/"), None);
        assert_eq!(route("/oauth2/register/a/b"), None);
        assert_eq!(route("/oauth2/registerx"), None);
        assert_eq!(route("/oauth2/token"), None);
    }

    #[test]
    fn each_source_gets_its_budget_per_window() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert_eq!(limit.admit(a, 3, t0), Ok(()));
        }
        let wait = limit.admit(a, 3, t0).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert_eq!(limit.admit(b, 3, t0), Ok(()));
        assert_eq!(limit.admit(a, 3, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn bearer_tokens() {
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
    }
}
