//! Issue 13: `POST /oauth2/introspect` (RFC 7662). The caller authenticates as at the token
//! endpoint (the one parser, [`crate::client_auth`]) and must be allowed to
//! (`spec.introspection`); the answer comes from memory only (key set, registry and
//! revocation list snapshots), `{"active":false}` for anything that is not an active Latchkey
//! access token.

use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use latchkey_core::{ClientRecord, ErrorCode, OAuthError};

use crate::{
    App,
    client_auth::{self, AuthMethod},
    endpoint_form, form,
    response::{self, Attempt, Body},
    sources::Peer,
    token_endpoint::{self, Failure},
};

/// The parameters of introspection and revocation requests besides client authentication.
#[derive(Default)]
pub struct TokenParams {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
}

/// Authenticate the caller of an endpoint that takes client credentials like the token
/// endpoint; returns the client and the `token`/`token_type_hint` parameters.
pub(crate) async fn authenticated<B>(
    app: &App,
    req: Request<B>,
    claimed: &mut Option<String>,
    method: &mut AuthMethod,
) -> Result<(std::sync::Arc<ClientRecord>, TokenParams), Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    token_endpoint::check_content_type(&parts.headers)?;
    let body = token_endpoint::read_body(app, &parts.headers, body).await?;
    let creds = form::parse_token_form(&body)?;
    let [token, token_type_hint] = endpoint_form::params(&body, ["token", "token_type_hint"])?;
    let presented = client_auth::presented(&parts.headers, &creds, claimed)?;
    *method = presented.method;
    let registry = app.issuer.registry();
    // Issue 12: a public client may revoke its own tokens with its client_id alone (RFC 7009
    // §5); introspection refuses it, as it may not introspect.
    let client = client_auth::authenticate(&registry, &presented, SystemTime::now())?.clone();
    Ok((
        client,
        TokenParams {
            token,
            token_type_hint,
        },
    ))
}

pub async fn handle<B>(app: &App, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let attempt = if req.headers().contains_key(header::AUTHORIZATION) {
        Attempt::Header
    } else {
        Attempt::NoHeader
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let mut claimed = None;
    let mut method = AuthMethod::None;
    let result = run(app, req, &mut claimed, &mut method).await;
    let code = result.as_ref().err().map(Failure::code);
    let (throttled, gate) = token_endpoint::throttle_gate(app, peer, claimed.as_deref(), code);
    let (res, active) = match (throttled, result) {
        (Some(res), _) => (res, false),
        (None, Ok(answer)) => {
            let active = answer["active"] == true;
            let res = match serde_json::to_vec(&answer) {
                Ok(json) => response::no_store(response::json(StatusCode::OK, json)),
                Err(_) => response::oauth_error(
                    &OAuthError::new(ErrorCode::ServerError, "response encoding failed"),
                    Attempt::NoHeader,
                ),
            };
            (res, active)
        }
        (None, Err(f)) => {
            let mut res = f.response(attempt);
            // Authenticated, but not allowed to introspect.
            if code == Some(ErrorCode::UnauthorizedClient) {
                *res.status_mut() = StatusCode::FORBIDDEN;
            }
            (res, false)
        }
    };
    if gate.log {
        tracing::info!(
            target: "latchkey::access",
            client_id = token_endpoint::loggable(claimed.as_deref()),
            auth = method.as_str(),
            result = code.map_or("success", ErrorCode::as_str),
            active,
            status = res.status().as_u16(),
            "introspection request"
        );
    }
    res
}

async fn run<B>(
    app: &App,
    req: Request<B>,
    claimed: &mut Option<String>,
    method: &mut AuthMethod,
) -> Result<serde_json::Value, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (client, params) = authenticated(app, req, claimed, method).await?;
    if !client.may_introspect() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not introspect tokens (spec.introspection is false)",
        )
        .into());
    }
    let token = params
        .token
        .ok_or_else(|| OAuthError::invalid_request("parameter token is missing"))?;
    Ok(app
        .introspector
        .introspect(&app.issuer, &token, SystemTime::now()))
}
