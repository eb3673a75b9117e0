//! Issue 12: the grants for people at `POST /oauth2/token`: `authorization_code` (the code,
//! its client, `redirect_uri` and PKCE verifier checked by
//! [`latchkey_core::authorization_grant::redeem`]) and `refresh_token` (rotated, reuse revokes
//! the family: [`latchkey_core::authorization_grant::refresh`]). Both read the user from the
//! live directory every time: a user disabled, deleted or removed from the token's
//! organization gets nothing more, and the grant is revoked. The client-credentials path never
//! comes here.

use std::time::{Duration, SystemTime};

use latchkey_core::{
    ClientRecord, ErrorCode, GrantType, IssuedToken, OAuthError,
    authorization_grant::{self, GrantRecord, Granted},
    token::{self, IdTokenFacts, UserClaims, unix_seconds},
};

use crate::{App, authorize_request::OPENID_SCOPE, endpoint_form, sign_in::SignIn};

/// How long a refresh token family lives from its last use.
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);

/// What a person's token response carries beyond the access token.
pub struct PersonTokens {
    pub token: IssuedToken,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// Run `grant` for an authenticated `client` with the request `body`.
pub async fn run(
    app: &App,
    client: &ClientRecord,
    grant: GrantType,
    body: &[u8],
) -> Result<PersonTokens, OAuthError> {
    if !client.allows_grant(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use grant_type={grant}"),
        ));
    }
    let Some(sign_in) = app.sign_in.get() else {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "signing people in is not available",
        ));
    };
    let now = SystemTime::now();
    let [code, redirect_uri, code_verifier, refresh_token, scope] = endpoint_form::params(
        body,
        [
            "code",
            "redirect_uri",
            "code_verifier",
            "refresh_token",
            "scope",
        ],
    )?;
    let granted = match grant {
        GrantType::AuthorizationCode => {
            let code =
                code.ok_or_else(|| OAuthError::invalid_request("parameter code is missing"))?;
            if code_verifier
                .as_deref()
                .is_some_and(|v| !authorization_grant::is_code_verifier(v))
            {
                return Err(OAuthError::invalid_request(
                    "code_verifier must be 43 to 128 unreserved characters",
                ));
            }
            authorization_grant::redeem(
                &sign_in.grants,
                &code,
                client.client_id(),
                redirect_uri.as_deref().unwrap_or(""),
                code_verifier.as_deref(),
                unix_seconds(now),
                REFRESH_LIFETIME,
            )
            .await
        }
        GrantType::RefreshToken => {
            let token = refresh_token
                .ok_or_else(|| OAuthError::invalid_request("parameter refresh_token is missing"))?;
            authorization_grant::refresh(
                &sign_in.grants,
                &token,
                client.client_id(),
                unix_seconds(now),
            )
            .await
        }
        GrantType::ClientCredentials => {
            return Err(OAuthError::new(
                ErrorCode::ServerError,
                "client_credentials is not a person's grant",
            ));
        }
    };
    let Granted {
        grant: record,
        refresh_token,
    } = granted.map_err(|refusal| {
        tracing::info!(target: "latchkey::access", client_id = %client.client_id(), reason = refusal.as_str(), "grant refused");
        match refusal {
            authorization_grant::Refusal::Unavailable => OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the sign-in store is not available; retry shortly",
            ),
            _ => invalid_grant("the code or refresh token is invalid, expired, used or revoked"),
        }
    })?;
    let scope = narrowed(&record.scope, scope.as_deref())?;
    match mint(app, sign_in, client, &record, &scope, now).await {
        Ok((token, id_token)) => Ok(PersonTokens {
            token,
            refresh_token: client
                .allows_grant(GrantType::RefreshToken)
                .then_some(refresh_token),
            id_token,
        }),
        Err(e) => {
            // The user may not have tokens any more: nothing from this sign-in works.
            if e.code == ErrorCode::InvalidGrant
                && let Some(id) = authorization_grant::grant_id_of(&refresh_token)
                && let Err(store) = authorization_grant::revoke(&sign_in.grants, id, "user").await
            {
                tracing::warn!(error = %store, "grant of a user who may not sign in not revoked");
            }
            Err(e)
        }
    }
}

/// The scope of a refresh: the grant's, or a subset the request names (RFC 6749 §6).
fn narrowed(granted: &str, requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(requested) = requested else {
        return Ok(granted.to_owned());
    };
    if requested
        .split(' ')
        .all(|s| granted.split(' ').any(|g| g == s))
    {
        Ok(requested.to_owned())
    } else {
        Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a refresh may only narrow the granted scope",
        ))
    }
}

/// The access token (and ID token for `openid`) for the grant's user, if they may still have
/// one: present in the directory, still in the grant's organization, which the client still
/// allows.
async fn mint(
    app: &App,
    sign_in: &SignIn,
    client: &ClientRecord,
    record: &GrantRecord,
    scope: &str,
    now: SystemTime,
) -> Result<(IssuedToken, Option<String>), OAuthError> {
    let users = sign_in.users.load();
    let gone = || invalid_grant("the user may no longer sign in to this client");
    let user = users.by_id(&record.user_id).ok_or_else(gone)?;
    let organization_ok = match &record.organization {
        Some(o) => user.organizations.contains(o) && client.allows_organization(o),
        None => client.allowed_organizations().is_empty(),
    };
    if !organization_ok {
        return Err(gone());
    }
    let keys = app.issuer.keys();
    let Some(keys) = keys.as_ref() else {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "no signing key is loaded yet; retry shortly",
        ));
    };
    let key = keys.active();
    let settings = app.issuer.settings();
    let signing = |_| OAuthError::new(ErrorCode::ServerError, "the token could not be signed");
    let claims = UserClaims {
        sub: &user.id,
        organization: record.organization.as_deref(),
        groups: &user.groups,
    };
    let token =
        token::mint_for_user(key, settings, client, &claims, scope, now).map_err(signing)?;
    let id_token = if scope.split(' ').any(|s| s == OPENID_SCOPE) {
        let facts = IdTokenFacts {
            client_id: client.client_id(),
            nonce: record.nonce.as_deref(),
            auth_time: record.auth_time,
            access_token: &token.access_token,
            email: user.email.as_deref().map(|e| (e, user.email_verified)),
            name: user.display_name.as_deref(),
        };
        Some(
            token::mint_id_token(key, settings, &user.id, &facts, token.expires_in, now)
                .map_err(signing)?,
        )
    } else {
        None
    };
    Ok((token, id_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_may_narrow_the_scope_never_widen_it() {
        assert_eq!(narrowed("openid a b", None).unwrap(), "openid a b");
        assert_eq!(narrowed("openid a b", Some("a")).unwrap(), "a");
        assert!(narrowed("openid a", Some("a c")).is_err());
        assert!(narrowed("openid a", Some("a ")).is_err());
    }
}
