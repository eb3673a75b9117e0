//! Issue 12: people sign in. `GET /oauth2/authorize` checks the request
//! ([`crate::authorize_request`]) and shows the login page (or, with a live session, goes
//! straight on); `POST /oauth2/login` checks the password; `POST /oauth2/consent` records the
//! person's answer; then a code is issued ([`latchkey_core::authorization_grant::issue`]) into
//! the deployment's grant store and the browser is sent back with `code`, `state` and `iss`.
//!
//! Between the pages, the request travels in a cookie sealed with the session keys (purpose
//! `login`), which also holds a random CSRF token: a form is accepted only with the token of
//! the cookie it came with, so another site cannot post a login or a consent. After a login,
//! a session cookie (purpose `session`: the user id and when they signed in) lets the next
//! authorization skip the password. Both are `Secure; HttpOnly; SameSite=Lax` with the
//! `__Host-` prefix (this origin only, path `/`).
//!
//! Logins are throttled by the token endpoint's rule, with the username in the client's
//! place: per source, per username for sources that never signed in as it, per pair for those
//! that did. An unknown username costs the same Argon2 run as a wrong password
//! ([`latchkey_core::UserDirectory::authenticate`]) and gets the same page.

use std::{
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use latchkey_core::{
    ClientRecord, UserDirectory, UserRecord,
    authorization_grant::{self, CollectionStore, GrantRecord, NewGrant},
    session_keys::SessionKeys,
    store::{StoreError, Version, Versioned},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{
    App,
    authorize_request::{self, AuthorizationRequest, Rejection},
    endpoint_form,
    response::Body,
    routes::{CONSENT_PATH, LOGIN_PATH},
    sign_in_pages::{self as pages, WRONG_CREDENTIALS},
    sources::Peer,
    throttle::Outcome,
    token_endpoint,
};

/// The cookie carrying a sign-in in progress.
pub const LOGIN_COOKIE: &str = "__Host-latchkey-login";
/// The cookie of a signed-in person.
pub const SESSION_COOKIE: &str = "__Host-latchkey-session";
const LOGIN_PURPOSE: &str = "login";
const SESSION_PURPOSE: &str = "session";
/// How long a login page may wait for its form.
pub const LOGIN_LIFETIME_SECS: u64 = 600;
/// How long a session spares the password (the session keys outlive it by far).
pub const SESSION_LIFETIME_SECS: u64 = 8 * 3600;
/// Longest cookie header read.
const MAX_COOKIE_LEN: usize = 8 * 1024;

/// Wrong passwords a source may send at once, by default (`--login-failure-burst`).
pub const LOGIN_FAILURE_BURST: u32 = 5;
/// Wrong passwords per second a source earns back, by default (`--login-failure-rate`).
pub const LOGIN_FAILURE_RATE: f64 = 0.2;

/// The login throttle by default: a source may fail 5 times at once and once per 5 s after
/// that; a username, from sources that never signed in as it, 25 times and once per 2 s. A
/// person who knows their password is never slowed by someone else's guesses from elsewhere.
pub fn login_throttle_config() -> crate::throttle::ThrottleConfig {
    login_throttle(LOGIN_FAILURE_BURST, LOGIN_FAILURE_RATE)
}

/// The login throttle for a source's `burst` and `per_second` (0: off); a username, from
/// sources never signed in as it, gets five times the burst and 2.5 times the rate.
pub fn login_throttle(burst: u32, per_second: f64) -> crate::throttle::ThrottleConfig {
    let per_second = per_second.max(0.0);
    crate::throttle::ThrottleConfig {
        burst: burst.max(1),
        per_second,
        client_per_second: per_second * 2.5,
        ..Default::default()
    }
}

/// A future a [`GrantStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The deployment's authorization-grant store, object-safe so the server holds either run
/// mode's (ConfigMaps in a cluster, files standalone) behind one pointer.
pub trait GrantStore: Send + Sync {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Versioned<GrantRecord>>>;
    fn create<'a>(&'a self, id: &'a str, value: &'a GrantRecord) -> StoreFuture<'a, Version>;
    fn replace<'a>(
        &'a self,
        id: &'a str,
        value: &'a GrantRecord,
        version: &'a Version,
    ) -> StoreFuture<'a, Version>;
    fn sweep(&self, now: u64) -> StoreFuture<'_, usize>;
}

/// A [`GrantStore`] over any [`CollectionStore`] of grants.
pub struct StoreGrants<S>(pub S);

impl<S: CollectionStore<GrantRecord> + 'static> GrantStore for StoreGrants<S> {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Versioned<GrantRecord>>> {
        Box::pin(self.0.load(id))
    }
    fn create<'a>(&'a self, id: &'a str, value: &'a GrantRecord) -> StoreFuture<'a, Version> {
        Box::pin(self.0.create(id, value))
    }
    fn replace<'a>(
        &'a self,
        id: &'a str,
        value: &'a GrantRecord,
        version: &'a Version,
    ) -> StoreFuture<'a, Version> {
        Box::pin(self.0.replace(id, value, version))
    }
    fn sweep(&self, now: u64) -> StoreFuture<'_, usize> {
        Box::pin(self.0.sweep(now))
    }
}

/// The held store as a [`CollectionStore`], so core's grant rules run over it.
#[derive(Clone)]
pub struct Grants(pub Arc<dyn GrantStore>);

impl CollectionStore<GrantRecord> for Grants {
    async fn load(&self, id: &str) -> Result<Option<Versioned<GrantRecord>>, StoreError> {
        self.0.load(id).await
    }
    async fn create(&self, id: &str, value: &GrantRecord) -> Result<Version, StoreError> {
        self.0.create(id, value).await
    }
    async fn replace(
        &self,
        id: &str,
        value: &GrantRecord,
        version: &Version,
    ) -> Result<Version, StoreError> {
        self.0.replace(id, value, version).await
    }
    async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.0.sweep(now).await
    }
}

/// What signing people in needs from the run mode: its users, its session keys and its grant
/// store, all live (the run mode swaps the snapshots).
pub struct SignIn {
    pub users: Arc<ArcSwap<UserDirectory>>,
    pub session_keys: Arc<ArcSwap<SessionKeys>>,
    pub grants: Grants,
}

/// Set by the run mode at start; until then the sign-in endpoints answer 503.
#[derive(Default)]
pub struct SignInSlot(OnceLock<SignIn>);

impl SignInSlot {
    pub fn get(&self) -> Option<&SignIn> {
        self.0.get()
    }

    /// Set it; only the first call counts.
    pub fn set(&self, sign_in: SignIn) {
        let _ = self.0.set(sign_in);
    }
}

impl std::fmt::Debug for SignInSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "SignInSlot(set)"
        } else {
            "SignInSlot(unset)"
        })
    }
}

/// A sign-in in progress, sealed in [`LOGIN_COOKIE`].
#[derive(Serialize, Deserialize)]
struct Pending {
    csrf: String,
    request: AuthorizationRequest,
    expires_at: u64,
    /// Set once the password was right: who is asked for consent, and when they signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<(String, u64)>,
}

/// A signed-in person, sealed in [`SESSION_COOKIE`].
#[derive(Serialize, Deserialize)]
struct Session {
    user_id: String,
    auth_time: u64,
    expires_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_token() -> Option<String> {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).ok()?;
    Some(B64.encode(b))
}

/// The value of cookie `name` in the request, if sent once.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let text = value.to_str().ok().filter(|t| t.len() <= MAX_COOKIE_LEN)?;
        for pair in text.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=')
                && n == name
            {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

fn set_cookie(res: &mut Response<Body>, name: &str, value: &str, max_age: u64) {
    let line = format!("{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&line) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn open<T: for<'de> Deserialize<'de>>(
    keys: &SessionKeys,
    purpose: &str,
    sealed: Option<&str>,
) -> Option<T> {
    let plain = keys.open(purpose, sealed?)?;
    serde_json::from_slice(&plain).ok()
}

fn seal<T: Serialize>(keys: &SessionKeys, purpose: &str, value: &T, now: u64) -> Option<String> {
    let plain = serde_json::to_vec(value).ok()?;
    keys.seal(purpose, &plain, now).ok()
}

fn page(status: StatusCode, message: &str) -> Response<Body> {
    pages::html(status, pages::error(message))
}

fn unavailable() -> Response<Body> {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Signing in is not available right now.",
    )
}

fn redirect(location: &str) -> Response<Body> {
    let mut res = Response::new(Body::new(Bytes::new()));
    *res.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// The answer to a refused request: the page, or back to the client.
fn refused(app: &App, rejection: &Rejection) -> Response<Body> {
    match authorize_request::error_location(rejection, &app.issuer.settings().issuer) {
        Some(to) => redirect(&to),
        None => match rejection {
            Rejection::Page(m) => page(StatusCode::BAD_REQUEST, m),
            Rejection::Redirect { .. } => page(StatusCode::BAD_REQUEST, "The request failed."),
        },
    }
}

/// Back to the client with an error, once its redirect URI is trusted.
fn refuse(
    app: &App,
    request: &AuthorizationRequest,
    error: &'static str,
    description: &'static str,
) -> Response<Body> {
    refused(
        app,
        &Rejection::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            error,
            description,
            state: request.state.clone(),
        },
    )
}

/// The organization the token will carry: the first of the user's that the client allows.
/// `Err` when the user has none the client allows (a client that names none allows all, and
/// a user without organizations then gets none).
fn organization(client: &ClientRecord, user: &UserRecord) -> Result<Option<String>, ()> {
    if user.organizations.is_empty() {
        return if client.allowed_organizations().is_empty() {
            Ok(None)
        } else {
            Err(())
        };
    }
    user.organizations
        .iter()
        .find(|o| client.allows_organization(o))
        .cloned()
        .map(Some)
        .ok_or(())
}

/// `GET /oauth2/authorize`.
pub async fn authorize<B>(app: &App, req: Request<B>) -> Response<Body> {
    let Some(sign_in) = app.sign_in.get() else {
        return unavailable();
    };
    let registry = app.issuer.registry();
    let query = req.uri().query().unwrap_or("");
    let request = match authorize_request::check(query, |id| registry.get(id).map(|c| &**c)) {
        Ok(r) => r,
        Err(rejection) => return refused(app, &rejection),
    };
    let now = unix_now();
    let keys = sign_in.session_keys.load();
    let users = sign_in.users.load();
    let session: Option<Session> = open(
        &keys,
        SESSION_PURPOSE,
        cookie(req.headers(), SESSION_COOKIE),
    );
    if let Some(s) = session.filter(|s| s.expires_at > now)
        && let Some(user) = users.by_id(&s.user_id)
    {
        return signed_in(app, sign_in, request, user, s.auth_time, now).await;
    }
    let Some(csrf) = random_token() else {
        return unavailable();
    };
    let pending = Pending {
        csrf: csrf.clone(),
        request,
        expires_at: now + LOGIN_LIFETIME_SECS,
        user: None,
    };
    let Some(sealed) = seal(&keys, LOGIN_PURPOSE, &pending, now) else {
        return unavailable();
    };
    let mut res = pages::html(
        StatusCode::OK,
        pages::login(LOGIN_PATH, &pending.request.client_id, &csrf, None),
    );
    set_cookie(&mut res, LOGIN_COOKIE, &sealed, LOGIN_LIFETIME_SECS);
    res
}

/// The person is known: ask for consent, or (first-party client) issue the code.
async fn signed_in(
    app: &App,
    sign_in: &SignIn,
    request: AuthorizationRequest,
    user: &UserRecord,
    auth_time: u64,
    now: u64,
) -> Response<Body> {
    let registry = app.issuer.registry();
    let Some(client) = registry
        .get(&request.client_id)
        .filter(|c| !c.is_disabled())
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "The client is unknown or disabled, so Latchkey cannot send you back to it.",
        );
    };
    let Ok(organization) = organization(client, user) else {
        return refuse(
            app,
            &request,
            "access_denied",
            "the user's organizations may not use this client",
        );
    };
    if client.is_first_party() {
        return issue_code(app, sign_in, &request, user, auth_time, organization, now).await;
    }
    let keys = sign_in.session_keys.load();
    let Some(csrf) = random_token() else {
        return unavailable();
    };
    let page_html = pages::consent(
        CONSENT_PATH,
        &request.client_id,
        &user.username,
        &request.scope,
        &csrf,
    );
    let pending = Pending {
        csrf,
        request,
        expires_at: now + LOGIN_LIFETIME_SECS,
        user: Some((user.id.clone(), auth_time)),
    };
    let Some(sealed) = seal(&keys, LOGIN_PURPOSE, &pending, now) else {
        return unavailable();
    };
    let mut res = pages::html(StatusCode::OK, page_html);
    set_cookie(&mut res, LOGIN_COOKIE, &sealed, LOGIN_LIFETIME_SECS);
    res
}

async fn issue_code(
    app: &App,
    sign_in: &SignIn,
    request: &AuthorizationRequest,
    user: &UserRecord,
    auth_time: u64,
    organization: Option<String>,
    now: u64,
) -> Response<Body> {
    let new = NewGrant {
        client_id: request.client_id.clone(),
        user_id: user.id.clone(),
        scope: request.scope.clone(),
        auth_time,
        nonce: request.nonce.clone(),
        organization,
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
    };
    let stored = match authorization_grant::issue(new, now) {
        Ok((id, code, record)) => sign_in.grants.0.create(&id, &record).await.map(|_| code),
        Err(e) => Err(e),
    };
    match stored {
        Ok(code) => {
            let to =
                authorize_request::code_location(request, &code, &app.issuer.settings().issuer);
            let mut res = redirect(&to);
            set_cookie(&mut res, LOGIN_COOKIE, "", 0);
            res
        }
        Err(e) => {
            tracing::error!(error = %e, client_id = %request.client_id, "authorization code not stored");
            refuse(
                app,
                request,
                "temporarily_unavailable",
                "the sign-in could not be recorded; try again",
            )
        }
    }
}

/// The pending sign-in of a form post, if its cookie opens, is live, and the form carries its
/// CSRF token.
fn pending_of(
    keys: &SessionKeys,
    headers: &HeaderMap,
    csrf: Option<&str>,
    now: u64,
) -> Option<Pending> {
    let pending: Pending = open(keys, LOGIN_PURPOSE, cookie(headers, LOGIN_COOKIE))?;
    let csrf = csrf?;
    let same: bool = pending.csrf.as_bytes().ct_eq(csrf.as_bytes()).into();
    (same && pending.expires_at > now).then_some(pending)
}

const FORM_REFUSED: &str =
    "This form expired or did not come from this sign-in page, so it was not accepted.";

/// `POST /oauth2/login`.
pub async fn login<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(sign_in) = app.sign_in.get() else {
        return unavailable();
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let (parts, body) = req.into_parts();
    let Ok(body) = token_endpoint::read_body(app, &parts.headers, body).await else {
        return page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let Ok([username, password, csrf]) =
        endpoint_form::params(&body, ["username", "password", "csrf"])
    else {
        return page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let now = unix_now();
    let keys = sign_in.session_keys.load();
    let Some(pending) =
        pending_of(&keys, &parts.headers, csrf.as_deref(), now).filter(|p| p.user.is_none())
    else {
        return page(StatusCode::FORBIDDEN, FORM_REFUSED);
    };
    let users = sign_in.users.load_full();
    let name = username.clone().unwrap_or_default();
    let secret = password.unwrap_or_default();
    let checked = tokio::task::spawn_blocking(move || users.authenticate(&name, secret.as_bytes()))
        .await
        .ok()
        .flatten();
    let outcome = if checked.is_some() {
        Outcome::Authenticated
    } else {
        Outcome::AuthFailed
    };
    let verdict = judge(app, peer, username.as_deref(), outcome);
    let shown = |message: &str, status: StatusCode| {
        pages::html(
            status,
            pages::login(
                LOGIN_PATH,
                &pending.request.client_id,
                &pending.csrf,
                Some(message),
            ),
        )
    };
    if let Some(wait) = verdict {
        let mut res = shown(
            "Too many sign-in attempts. Wait a moment and try again.",
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let Some(user) = checked else {
        tracing::info!(target: "latchkey::access", result = "login_failed", client_id = %pending.request.client_id, "sign-in");
        return shown(WRONG_CREDENTIALS, StatusCode::OK);
    };
    tracing::info!(target: "latchkey::access", result = "login", client_id = %pending.request.client_id, "sign-in");
    let session = Session {
        user_id: user.id.clone(),
        auth_time: now,
        expires_at: now + SESSION_LIFETIME_SECS,
    };
    let mut res = signed_in(app, sign_in, pending.request, &user, now, now).await;
    if let Some(sealed) = seal(&keys, SESSION_PURPOSE, &session, now) {
        set_cookie(&mut res, SESSION_COOKIE, &sealed, SESSION_LIFETIME_SECS);
    }
    res
}

/// The login throttle's word: `Some(seconds)` to wait.
fn judge(app: &App, peer: Option<IpAddr>, username: Option<&str>, outcome: Outcome) -> Option<u64> {
    let verdict = app
        .login_throttle
        .judge(peer, username, outcome, Instant::now());
    verdict.throttled.map(|(_, wait)| wait.as_secs().max(1))
}

/// `POST /oauth2/consent`.
pub async fn consent<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(sign_in) = app.sign_in.get() else {
        return unavailable();
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = token_endpoint::read_body(app, &parts.headers, body).await else {
        return page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let Ok([csrf, decision]) = endpoint_form::params(&body, ["csrf", "decision"]) else {
        return page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let now = unix_now();
    let keys = sign_in.session_keys.load();
    let Some(Pending {
        request,
        user: Some((user_id, auth_time)),
        ..
    }) = pending_of(&keys, &parts.headers, csrf.as_deref(), now)
    else {
        return page(StatusCode::FORBIDDEN, FORM_REFUSED);
    };
    if decision.as_deref() != Some("allow") {
        return refuse(
            app,
            &request,
            "access_denied",
            "the user denied the request",
        );
    }
    let users = sign_in.users.load();
    let Some(user) = users.by_id(&user_id) else {
        return refuse(
            app,
            &request,
            "access_denied",
            "the user may no longer sign in",
        );
    };
    let registry = app.issuer.registry();
    let Some(client) = registry
        .get(&request.client_id)
        .filter(|c| !c.is_disabled())
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "The client is unknown or disabled, so Latchkey cannot send you back to it.",
        );
    };
    let Ok(organization) = organization(client, user) else {
        return refuse(
            app,
            &request,
            "access_denied",
            "the user's organizations may not use this client",
        );
    };
    issue_code(app, sign_in, &request, user, auth_time, organization, now).await
}

/// `GET /oauth2/logout` (OpenID Connect RP-Initiated Logout 1.0): the session cookie is
/// cleared, then the browser goes to `post_logout_redirect_uri` (with `state`) when the
/// `client_id` named has registered it exactly, else a page says the person is signed out.
/// Sessions live only in the sealed cookie, so clearing it ends the session in this browser;
/// tokens already issued run out as usual (refresh tokens are revoked by the grant rules).
pub fn logout<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let Ok([client_id, post_logout, state]) = endpoint_form::params(
        query.as_bytes(),
        ["client_id", "post_logout_redirect_uri", "state"],
    ) else {
        return page(StatusCode::BAD_REQUEST, "The logout request is malformed.");
    };
    let mut res = match (client_id, post_logout) {
        (Some(id), Some(uri)) => {
            let registry = app.issuer.registry();
            match registry.get(&id) {
                Some(client) if client.has_post_logout_redirect_uri(&uri) => {
                    let mut to = uri.clone();
                    if let Some(state) =
                        state.filter(|s| s.len() <= authorize_request::MAX_STATE_LEN)
                    {
                        to.push(if uri.contains('?') { '&' } else { '?' });
                        to.push_str("state=");
                        to.push_str(
                            &percent_encoding::utf8_percent_encode(
                                &state,
                                percent_encoding::NON_ALPHANUMERIC,
                            )
                            .to_string(),
                        );
                    }
                    redirect(&to)
                }
                _ => page(
                    StatusCode::BAD_REQUEST,
                    "You are signed out. The address to return to is not registered for this \
                     client, so Latchkey will not send you there.",
                ),
            }
        }
        (None, Some(_)) => page(
            StatusCode::BAD_REQUEST,
            "You are signed out. The request names no client (client_id), so Latchkey cannot \
             check the address to return to.",
        ),
        _ => pages::html(StatusCode::OK, pages::signed_out()),
    };
    set_cookie(&mut res, SESSION_COOKIE, "", 0);
    set_cookie(&mut res, LOGIN_COOKIE, "", 0);
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_read_once_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-latchkey-login=xyz; __Host-latchkey-loginx=2"),
        );
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-latchkey-login=other"),
        );
        assert_eq!(
            cookie(&h, LOGIN_COOKIE),
            None,
            "two values: neither is trusted"
        );
    }

    #[test]
    fn cookies_are_secure_httponly_lax_and_host_only() {
        let mut res = Response::new(Body::new(Bytes::new()));
        set_cookie(&mut res, SESSION_COOKIE, "v", 60);
        let line = res.headers()[header::SET_COOKIE].to_str().unwrap();
        assert_eq!(
            line,
            "__Host-latchkey-session=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
    }

    fn user(orgs: &[&str]) -> UserRecord {
        UserRecord {
            id: "u".into(),
            username: "alice".into(),
            display_name: None,
            email: None,
            email_verified: false,
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            groups: vec![],
            password: latchkey_core::password::decoy().clone(),
            origin: "t".into(),
        }
    }

    #[test]
    fn the_organization_is_the_first_the_client_allows() {
        let any = ClientRecord::new(latchkey_core::ClientSpec {
            client_id: "any".into(),
            ..Default::default()
        })
        .unwrap();
        let org2 = ClientRecord::new(latchkey_core::ClientSpec {
            client_id: "org2".into(),
            allowed_organizations: vec!["org2".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(organization(&any, &user(&[])), Ok(None));
        assert_eq!(
            organization(&any, &user(&["org1", "org2"])),
            Ok(Some("org1".into()))
        );
        assert_eq!(
            organization(&org2, &user(&["org1", "org2"])),
            Ok(Some("org2".into()))
        );
        assert_eq!(organization(&org2, &user(&["org1"])), Err(()));
        assert_eq!(organization(&org2, &user(&[])), Err(()));
    }

    #[test]
    fn a_form_needs_its_own_cookie_and_token() {
        let mut keys = SessionKeys::default();
        keys.advance(&Default::default(), 1_000).unwrap();
        let pending = Pending {
            csrf: "tok".into(),
            request: AuthorizationRequest {
                client_id: "web".into(),
                redirect_uri: "https://a.example/cb".into(),
                redirect_uri_sent: true,
                scope: "openid".into(),
                state: None,
                nonce: None,
                code_challenge: None,
            },
            expires_at: 2_000,
            user: None,
        };
        let sealed = seal(&keys, LOGIN_PURPOSE, &pending, 1_000).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{LOGIN_COOKIE}={sealed}")).unwrap(),
        );
        assert!(pending_of(&keys, &h, Some("tok"), 1_500).is_some());
        assert!(
            pending_of(&keys, &h, Some("tok2"), 1_500).is_none(),
            "forged token"
        );
        assert!(
            pending_of(&keys, &h, None, 1_500).is_none(),
            "missing token"
        );
        assert!(
            pending_of(&keys, &h, Some("tok"), 2_000).is_none(),
            "expired"
        );
        assert!(
            pending_of(&keys, &HeaderMap::new(), Some("tok"), 1_500).is_none(),
            "no cookie"
        );
        // Sealed for the session, it is not a login cookie.
        let other = seal(&keys, SESSION_PURPOSE, &pending, 1_000).unwrap();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{LOGIN_COOKIE}={other}")).unwrap(),
        );
        assert!(
            pending_of(&keys, &h, Some("tok"), 1_500).is_none(),
            "wrong purpose"
        );
    }
}
