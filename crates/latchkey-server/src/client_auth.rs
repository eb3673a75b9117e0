//! Client authentication at the token endpoint (and, later, every endpoint that authenticates
//! clients): what the request presents, taken from exactly one place. Each method
//! (`client_secret_basic`, `client_secret_post`, assertions, none for public clients) ends in
//! a client that proved who it is; the grant rules after that are the same for all
//! ([`latchkey_core::Issuer::issue_to`]).

use std::{sync::Arc, time::SystemTime};

use http::{HeaderMap, header};
use latchkey_core::{
    ClientRecord, ErrorCode, OAuthError, Registry, TokenEndpointAuthMethod, token_endpoint_auth,
};

use crate::{basic_auth, form::TokenForm};

/// How the client authenticated: a bounded label for the log and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Basic,
    Post,
    // Issue 11: client authentication by assertion.
    /// A JWT assertion, before it says which kind.
    Assertion,
    /// A JWT signed with the client's own key (iss = sub = client id).
    PrivateKeyJwt,
    /// A JWT from an issuer the client trusts (a CI platform, another cluster).
    FederatedJwt,
    /// A Kubernetes ServiceAccount token of this cluster.
    ServiceAccount,
}

impl AuthMethod {
    // Issue 11: client authentication by assertion.
    /// Every method, for metrics.
    pub const ALL: [AuthMethod; 7] = [
        AuthMethod::None,
        AuthMethod::Basic,
        AuthMethod::Post,
        AuthMethod::Assertion,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::FederatedJwt,
        AuthMethod::ServiceAccount,
    ];

    /// The RFC 7591 method of a secret presented this way (HTTP Basic, else the form).
    pub fn secret_method(self) -> TokenEndpointAuthMethod {
        match self {
            AuthMethod::Post => TokenEndpointAuthMethod::ClientSecretPost,
            _ => TokenEndpointAuthMethod::ClientSecretBasic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
            // Issue 11: client authentication by assertion.
            AuthMethod::Assertion => "client_assertion",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::FederatedJwt => "federated_jwt",
            AuthMethod::ServiceAccount => "service_account",
        }
    }
}

/// A client id and secret as presented, not yet checked.
pub struct Presented {
    pub client_id: String,
    /// `None`: the form's `client_id` alone, as a public client sends it.
    pub secret: Option<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .field("method", &self.method)
            .finish()
    }
}

/// The client id and secret, from exactly one of HTTP Basic and the form.
/// `claimed` receives the client id as soon as one is known, for the log line of a failure.
pub fn presented(
    headers: &HeaderMap,
    form: &TokenForm,
    claimed: &mut Option<String>,
) -> Result<Presented, OAuthError> {
    let mut auth_headers = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = auth_headers.next();
    if auth_headers.next().is_some() {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    if let Some(value) = authorization {
        let Some(basic) = basic_auth::parse(value.as_bytes())? else {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "client authentication must use HTTP Basic or form parameters",
            ));
        };
        *claimed = Some(basic.client_id.clone());
        if form.client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "client authenticated by both HTTP Basic and client_secret: use one method",
            ));
        }
        if form
            .client_id
            .as_ref()
            .is_some_and(|id| *id != basic.client_id)
        {
            return Err(OAuthError::invalid_request(
                "client_id does not match the HTTP Basic client id",
            ));
        }
        return Ok(Presented {
            client_id: basic.client_id,
            secret: Some(basic.client_secret),
            method: AuthMethod::Basic,
        });
    }
    *claimed = form.client_id.clone();
    match (&form.client_id, &form.client_secret) {
        (Some(id), Some(secret)) => Ok(Presented {
            client_id: id.clone(),
            secret: Some(secret.clone()),
            method: AuthMethod::Post,
        }),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret was sent without client_id",
        )),
        // Issue 12: a public client identifies itself with client_id alone (RFC 6749 §2.1);
        // any other client gets invalid_client from [`authenticate`].
        (Some(id), None) => Ok(Presented {
            client_id: id.clone(),
            secret: None,
            method: AuthMethod::None,
        }),
        (None, None) => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client authentication is required",
        )),
    }
}

/// The client a presented id and secret (or id alone) stand for: a secret is checked in
/// constant time and by the method the client names, if it names one; an id alone is
/// accepted only for a public client.
pub fn authenticate<'r>(
    registry: &'r Registry,
    presented: &Presented,
    now: SystemTime,
) -> Result<&'r Arc<ClientRecord>, OAuthError> {
    match &presented.secret {
        Some(secret) => registry.authenticate_by(
            &presented.client_id,
            secret.as_bytes(),
            presented.method.secret_method(),
            now,
        ),
        None => registry.public_client(&presented.client_id),
    }
}

/// Whether a client that proved who it is by `used` may do so that way (it may name one
/// method, and a public client proves nothing: an assertion for one is refused).
pub fn check_method(client: &ClientRecord, used: AuthMethod) -> Result<(), OAuthError> {
    if client.is_public() && used != AuthMethod::None {
        return Err(token_endpoint_auth::public_client_sent_assertion());
    }
    token_endpoint_auth::check(client.token_endpoint_auth_method(), used.as_str())
}

// Issue 11: client authentication by assertion.

/// Whether the request authenticates by assertion: a field check, all a secret-authenticated
/// request pays for assertions.
pub fn is_assertion(form: &TokenForm) -> bool {
    form.client_assertion.is_some() || form.client_assertion_type.is_some()
}

/// A client assertion as presented, not yet checked.
pub struct PresentedAssertion {
    /// The form's `client_id`, if sent (it must then match).
    pub client_id: Option<String>,
    pub assertion: String,
}

impl std::fmt::Debug for PresentedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedAssertion")
            .field("client_id", &self.client_id)
            .field("assertion", &"<redacted>")
            .finish()
    }
}

/// The assertion of a request that [`is_assertion`]: exactly one method (no HTTP Basic, no
/// `client_secret`) and the RFC 7523 assertion type.
pub fn presented_assertion(
    headers: &HeaderMap,
    form: &TokenForm,
    claimed: &mut Option<String>,
) -> Result<PresentedAssertion, OAuthError> {
    *claimed = form.client_id.clone();
    if headers.contains_key(header::AUTHORIZATION) || form.client_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "a client assertion and a client secret were both sent: use one method",
        ));
    }
    if form.client_assertion_type.as_deref() != Some(latchkey_core::assertion::ASSERTION_TYPE) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let Some(assertion) = form.client_assertion.clone() else {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "client_assertion is missing",
        ));
    };
    Ok(PresentedAssertion {
        client_id: form.client_id.clone(),
        assertion,
    })
}
