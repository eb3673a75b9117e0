//! Issue 13: `POST /oauth2/revoke` (RFC 7009). A client revokes its own access tokens: the
//! token is verified like at introspection, and its `jti` goes into the revocation list until
//! its `exp` (through the deployment's store: a Secret in a cluster, a file standalone), which
//! every replica follows. A token that is not an active Latchkey access token answers 200 with
//! nothing done (RFC 7009 §2.2): refresh tokens are the sign-in store's, once they exist.
//!
//! Offline verifiers (an API gateway checking the JWT against the JWKS) never see this: only
//! introspection does. Short token lifetimes bound what a revocation cannot reach.

use std::{future::Future, pin::Pin, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use latchkey_core::{
    ErrorCode, OAuthError,
    revocation::{self, Revocations},
    store::DocumentStore,
};

use crate::{
    App,
    client_auth::AuthMethod,
    introspect,
    response::{self, Attempt, Body},
    sources::Peer,
    token_endpoint::{self, Failure},
};

/// A future a [`Revoker`] returns.
pub type RevokeFuture<'a> = Pin<Box<dyn Future<Output = Result<Revocations, String>> + Send + 'a>>;

/// Where this deployment records revocations; returns the list as stored afterwards.
pub trait Revoker: Send + Sync {
    fn revoke<'a>(&'a self, jti: &'a str, exp: u64, now: SystemTime) -> RevokeFuture<'a>;
}

/// A [`Revoker`] over any revocation-list store, with the one rule of
/// [`latchkey_core::revocation::record`].
pub struct StoreRevoker<S>(pub S);

impl<S: DocumentStore<Revocations> + 'static> Revoker for StoreRevoker<S> {
    fn revoke<'a>(&'a self, jti: &'a str, exp: u64, now: SystemTime) -> RevokeFuture<'a> {
        Box::pin(async move {
            revocation::record(&self.0, jti, exp, now)
                .await
                .map_err(|e| e.to_string())
        })
    }
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
    let (res, revoked) = match (throttled, result) {
        (Some(res), _) => (res, false),
        (None, Ok(revoked)) => (
            response::no_store(response::json(StatusCode::OK, "{}")),
            revoked,
        ),
        (None, Err(f)) => (f.response(attempt), false),
    };
    if gate.log {
        tracing::info!(
            target: "latchkey::access",
            client_id = token_endpoint::loggable(claimed.as_deref()),
            auth = method.as_str(),
            result = code.map_or("success", ErrorCode::as_str),
            revoked,
            status = res.status().as_u16(),
            "revocation request"
        );
    }
    res
}

/// Returns whether an access token was revoked now.
async fn run<B>(
    app: &App,
    req: Request<B>,
    claimed: &mut Option<String>,
    method: &mut AuthMethod,
) -> Result<bool, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (client, params) = introspect::authenticated(app, req, claimed, method).await?;
    let token = params
        .token
        .ok_or_else(|| OAuthError::invalid_request("parameter token is missing"))?;
    // token_type_hint is only a hint (RFC 7009 §2.1): access tokens are recognised by their
    // signature whatever it says, and anything else is tried as a refresh token.
    let now = SystemTime::now();
    let Some(claims) = app.introspector.active_claims(&app.issuer, &token, now) else {
        return revoke_refresh(app, &token, client.client_id()).await;
    };
    if claims.get("clientId").and_then(|v| v.as_str()) != Some(client.client_id()) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )
        .into());
    }
    let (Some(jti), Some(exp)) = (
        claims.get("jti").and_then(|v| v.as_str()),
        claims.get("exp").and_then(|v| v.as_u64()),
    ) else {
        return Ok(false);
    };
    let Some(revoker) = app.revoker.get() else {
        return Err(unavailable());
    };
    match revoker.revoke(jti, exp, now).await {
        Ok(list) => {
            // This replica knows at once; the others when their watch (or read) brings it.
            app.introspector.replace_revocations(list);
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(error = %e, "a revocation could not be recorded");
            Err(unavailable())
        }
    }
}

/// A refresh token (issue 12's grants): its client ends the whole sign-in it belongs to.
async fn revoke_refresh(app: &App, token: &str, client_id: &str) -> Result<bool, Failure> {
    use latchkey_core::authorization_grant::{RefreshRevocation, revoke_refresh};
    let Some(sign_in) = app.sign_in.get() else {
        return Ok(false);
    };
    match revoke_refresh(&sign_in.grants, token, client_id).await {
        Ok(RefreshRevocation::Revoked) => Ok(true),
        Ok(RefreshRevocation::NotFound) => Ok(false),
        Ok(RefreshRevocation::WrongClient) => Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the token was not issued to this client",
        )
        .into()),
        Err(e) => {
            tracing::warn!(error = %e, "a refresh token could not be revoked");
            Err(unavailable())
        }
    }
}

fn unavailable() -> Failure {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the revocation could not be recorded; retry shortly",
    )
    .into()
}

/// Issue 13: the store a deployment records revocations in, set once at start.
#[derive(Default)]
pub struct RevokerSlot(std::sync::OnceLock<Arc<dyn Revoker>>);

impl RevokerSlot {
    pub fn get(&self) -> Option<&Arc<dyn Revoker>> {
        self.0.get()
    }

    /// Set it; only the first call counts.
    pub fn set(&self, revoker: Arc<dyn Revoker>) {
        let _ = self.0.set(revoker);
    }
}

impl std::fmt::Debug for RevokerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "RevokerSlot(set)"
        } else {
            "RevokerSlot(unset)"
        })
    }
}
