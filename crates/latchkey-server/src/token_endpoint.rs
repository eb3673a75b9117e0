//! `POST /oauth2/token`: take the request apart, run the grant, answer per RFC 6749 §5.1/5.2,
//! and leave one log line and one metric sample behind. Never logs a secret or a token.

use std::{
    net::IpAddr,
    time::{Instant, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use latchkey_core::{ErrorCode, GrantType, OAuthError, TokenRequest};

use crate::{
    App,
    client_auth::{self, AuthMethod},
    form,
    response::{self, Attempt, Body},
    sources::Peer,
    throttle,
};

/// Why a request failed before or during the grant (also at the other endpoints that
/// authenticate clients).
pub(crate) enum Failure {
    OAuth(OAuthError),
    TooLarge(usize),
    Timeout,
}

impl Failure {
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Failure::OAuth(e) => e.code,
            Failure::TooLarge(_) | Failure::Timeout => ErrorCode::InvalidRequest,
        }
    }

    pub(crate) fn response(&self, attempt: Attempt) -> Response<Body> {
        match self {
            Failure::OAuth(e) => response::oauth_error(e, attempt),
            Failure::TooLarge(max) => {
                let e =
                    OAuthError::invalid_request(format!("the request body exceeds {max} bytes"));
                let mut res = response::oauth_error(&e, attempt);
                *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                res
            }
            Failure::Timeout => {
                let e = OAuthError::invalid_request("the request body was not received in time");
                let mut res = response::oauth_error(&e, attempt);
                *res.status_mut() = StatusCode::REQUEST_TIMEOUT;
                res
            }
        }
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Failure::OAuth(e)
    }
}

/// What the log line says about the request.
struct Seen {
    client_id: Option<String>,
    grant_type: Option<String>,
    auth: AuthMethod,
    // Issue 11: client authentication by assertion.
    /// Why an assertion was refused (safe to log), for a line of its own.
    refusal: Option<&'static str>,
}

pub async fn handle<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let attempt = if req.headers().contains_key(header::AUTHORIZATION) {
        Attempt::Header
    } else {
        Attempt::NoHeader
    };
    let mut seen = Seen {
        client_id: None,
        grant_type: None,
        auth: AuthMethod::None,
        // Issue 11: client authentication by assertion.
        refusal: None,
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let result = run(app, req, &mut seen).await;
    let elapsed = started.elapsed();
    let code = result.as_ref().err().map(Failure::code);
    let (throttled, gate) = throttle_gate(app, peer, seen.client_id.as_deref(), code);
    let code = if throttled.is_some() {
        Some(ErrorCode::TemporarilyUnavailable)
    } else {
        code
    };
    app.metrics
        .observe_token_request(seen.grant_type.as_deref(), code, elapsed);
    // Issue 11: client authentication by assertion.
    app.metrics.observe_auth_method(seen.auth, code.is_none());
    let res = match (throttled, result) {
        (Some(res), _) => res,
        (None, Ok(tokens)) => success(&tokens),
        (None, Err(failure)) => failure.response(attempt),
    };
    if gate.log {
        tracing::info!(
            target: "latchkey::access",
            client_id = loggable(seen.client_id.as_deref()),
            grant_type = grant_label(seen.grant_type.as_deref()),
            auth = seen.auth.as_str(),
            result = code.map_or("success", ErrorCode::as_str),
            status = res.status().as_u16(),
            latency_us = elapsed.as_micros() as u64,
            suppressed = gate.suppressed,
            "token request"
        );
        // Issue 11: client authentication by assertion (sampled with the access line).
        if let Some(reason) = seen.refusal {
            tracing::info!(
                target: "latchkey::access",
                client_id = loggable(seen.client_id.as_deref()),
                reason,
                "client assertion refused"
            );
        }
    }
    res
}

/// The guess throttle's hook (`crate::throttle`): when the failed-authentication budget this
/// request draws on is spent, a 429 replaces the real answer (right or wrong secret alike);
/// failed-request log lines are sampled per source, the lines left out counted on the next.
pub(crate) fn throttle_gate(
    app: &App,
    peer: Option<IpAddr>,
    client_id: Option<&str>,
    code: Option<ErrorCode>,
) -> (Option<Response<Body>>, throttle::Verdict) {
    let outcome = match code {
        None => throttle::Outcome::Authenticated,
        Some(ErrorCode::InvalidClient) => throttle::Outcome::AuthFailed,
        Some(_) => throttle::Outcome::Other,
    };
    let verdict = app.throttle.judge(peer, client_id, outcome, Instant::now());
    if verdict.attack_started {
        app.metrics.observe_attack();
        tracing::warn!(
            client_id = loggable(client_id),
            "client under attack: failed authentications from unknown sources exceed its budget; \
             they are answered 429 until the rate drops (sources it authenticated from are unaffected)"
        );
    }
    let Some((by, retry)) = verdict.throttled else {
        return (None, verdict);
    };
    app.metrics.observe_throttled(by);
    let e = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many failed client authentications: retry later",
    );
    // Not invalid_client: how the client authenticated does not change this answer.
    let mut res = response::oauth_error(&e, response::Attempt::NoHeader);
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    (Some(res), verdict)
}

async fn run<B>(
    app: &App,
    req: Request<B>,
    seen: &mut Seen,
) -> Result<crate::token_grants::PersonTokens, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    check_content_type(&parts.headers)?;
    let body = read_body(app, &parts.headers, body).await?;
    let form = form::parse_token_form(&body)?;
    seen.grant_type = form.grant_type.clone();
    // Issue 11: client authentication by assertion.
    if client_auth::is_assertion(&form) {
        let token = by_assertion(app, &parts.headers, &form, seen).await?;
        return Ok(crate::token_grants::PersonTokens {
            token,
            refresh_token: None,
            id_token: None,
        });
    }
    let presented = client_auth::presented(&parts.headers, &form, &mut seen.client_id)?;
    seen.auth = presented.method;
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("parameter grant_type is missing"))?;
    // Issue 12: the grants for people, over the sign-in store; the machines' path is untouched.
    let grant = GrantType::parse(grant_type);
    if let Some(grant @ (GrantType::AuthorizationCode | GrantType::RefreshToken)) = grant {
        let registry = app.issuer.registry();
        let client = client_auth::authenticate(&registry, &presented, SystemTime::now())?;
        return Ok(crate::token_grants::run(app, client, grant, &body).await?);
    }
    let Some(secret) = presented.secret.as_deref() else {
        // client_id alone: a public client, which never has client_credentials.
        latchkey_core::issuer::parse_grant(grant_type)?;
        app.issuer.registry().public_client(&presented.client_id)?;
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "a public client (tokenEndpointAuthMethod none) may not use \
             grant_type=client_credentials",
        )
        .into());
    };
    let request = TokenRequest {
        grant_type,
        client_id: &presented.client_id,
        client_secret: secret.as_bytes(),
        method: presented.method.secret_method(),
        scope: form.scope.as_deref(),
    };
    let token = app.issuer.issue(request, SystemTime::now())?;
    Ok(crate::token_grants::PersonTokens {
        token,
        refresh_token: None,
        id_token: None,
    })
}

// Issue 11: client authentication by assertion.
/// The grant for a client that authenticates with an assertion (RFC 7523 §2.2). A refusal
/// answers `invalid_client` without detail; the log line says why.
async fn by_assertion(
    app: &App,
    headers: &HeaderMap,
    form: &form::TokenForm,
    seen: &mut Seen,
) -> Result<latchkey_core::IssuedToken, OAuthError> {
    seen.auth = AuthMethod::Assertion;
    let presented = client_auth::presented_assertion(headers, form, &mut seen.client_id)?;
    let registry = app.issuer.registry();
    // Issue 12: a public client has no keys; say so rather than that a key did not fit.
    if let Some(id) = presented.client_id.as_deref()
        && registry.get(id).is_some_and(|c| c.is_public())
    {
        return Err(latchkey_core::token_endpoint_auth::public_client_sent_assertion());
    }
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_request("parameter grant_type is missing"))?;
    let grant = latchkey_core::issuer::parse_grant(grant_type)?;
    let Some(assertions) = &app.assertions else {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client assertions are not available on this server",
        ));
    };
    let now = SystemTime::now();
    let outcome = assertions
        .authenticate(
            &registry,
            app.service_accounts.get(),
            app.object_jwks.get(),
            presented.client_id.as_deref(),
            &presented.assertion,
            now,
        )
        .await;
    let crate::client_assertion::Authenticated {
        client,
        method,
        caller,
    } = match outcome {
        Ok(ok) => ok,
        Err(refused) => {
            seen.refusal = Some(refused.reason);
            return Err(refused.to_oauth());
        }
    };
    seen.auth = method;
    seen.client_id = Some(client.client_id().to_owned());
    // Issue 12: a client that names its method accepts no other.
    client_auth::check_method(&client, method)?;
    app.issuer.issue_to(
        &client,
        grant,
        form.scope.as_deref(),
        caller.as_deref(),
        now,
    )
}

pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), OAuthError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    };
    let media_type = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        ))
    }
}

pub(crate) async fn read_body<B>(app: &App, headers: &HeaderMap, body: B) -> Result<Bytes, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = app.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Failure::TooLarge(max));
    }
    let collected =
        tokio::time::timeout(app.config.body_timeout, Limited::new(body, max).collect()).await;
    match collected {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::TooLarge(max)),
        Ok(Err(_)) => Err(OAuthError::invalid_request("the request body could not be read").into()),
    }
}

/// RFC 6749 §5.1 success body, members in APK's order.
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
    // Issue 12: a person's tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
}

fn success(tokens: &crate::token_grants::PersonTokens) -> Response<Body> {
    let token = &tokens.token;
    let body = TokenResponse {
        access_token: &token.access_token,
        token_type: "Bearer",
        expires_in: token.expires_in,
        scope: &token.scope,
        refresh_token: tokens.refresh_token.as_deref(),
        id_token: tokens.id_token.as_deref(),
    };
    match serde_json::to_vec(&body) {
        Ok(json) => response::no_store(response::json(StatusCode::OK, json)),
        Err(_) => response::oauth_error(
            &OAuthError::new(ErrorCode::ServerError, "response encoding failed"),
            Attempt::NoHeader,
        ),
    }
}

/// A client id fit for a log line: a valid client id (printable ASCII, spaces and ':'
/// included, bounded), else a placeholder (a caller controls this value; the log's encoder
/// quotes it).
pub(crate) fn loggable(id: Option<&str>) -> &str {
    match id {
        None => "-",
        Some(id) if latchkey_core::client::is_client_id(id) => id,
        Some(_) => "<unprintable>",
    }
}

/// The grant type as a bounded label: one Latchkey knows, or `other`.
fn grant_label(grant: Option<&str>) -> &'static str {
    match grant {
        None => "-",
        Some(g) => GrantType::parse(g).map_or("other", GrantType::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_client_ids_are_the_valid_ones() {
        assert_eq!(loggable(None), "-");
        for ok in ["a b", "a:b", "https://app.example.com/client.json"] {
            assert_eq!(loggable(Some(ok)), ok);
        }
        let long = "a".repeat(257);
        for bad in ["a\nb", "caf\u{e9}", "\x1b[31m", "", long.as_str()] {
            assert_eq!(loggable(Some(bad)), "<unprintable>");
        }
    }
}
