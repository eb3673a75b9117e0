//! Issue 12: an authorization request (RFC 6749 §4.1.1, RFC 7636, OpenID Connect Core
//! §3.1.2.1), checked in the order that decides where an error may go. Until the client and
//! its `redirect_uri` are known to belong together, nothing is sent to the `redirect_uri`
//! (that would be an open redirect): the error is Latchkey's own page. After that, an error
//! goes back to the client with `error`, `state` and `iss` (RFC 9207).

use latchkey_core::{ClientRecord, scope::is_scope_token};

use crate::form::decode_component;

/// The OpenID Connect scope: always allowed to a browser client, never part of its policy.
pub const OPENID_SCOPE: &str = "openid";
/// Longest `state` accepted (it comes back in a URL).
pub const MAX_STATE_LEN: usize = 1024;
/// Longest `nonce` accepted (it is stored with the grant and put in the id_token).
pub const MAX_NONCE_LEN: usize = 256;
/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 8 * 1024;

/// A checked request: what the login and consent pages carry to the code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The registered URI the request named (or the client's only one).
    pub redirect_uri: String,
    /// What the request sent, for the token request to match (RFC 6749 §4.1.3): `None` when
    /// it left `redirect_uri` out.
    pub redirect_uri_sent: bool,
    /// The scope granted, space-separated, `openid` first when asked for.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 challenge, when the client sent one.
    pub code_challenge: Option<String>,
}

impl AuthorizationRequest {
    /// Whether the request is an OpenID Connect one (an id_token will be issued).
    pub fn is_openid(&self) -> bool {
        self.scope.split(' ').any(|s| s == OPENID_SCOPE)
    }
}

/// Why a request was refused, and where the answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Shown on Latchkey's page: the client or the redirect URI cannot be trusted.
    Page(&'static str),
    /// Sent to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: &'static str,
        state: Option<String>,
    },
}

/// The parameters read; others are ignored (RFC 6749 §3.1).
#[derive(Default)]
struct Params {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    response_mode: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
}

/// Parse the query strictly: a malformed encoding, or a repeated client_id or redirect_uri,
/// refuses the request on the page (`Err`); another repeated parameter is reported in the
/// second value, to refuse once the redirect is trusted (RFC 6749 §3.1). An empty value
/// counts as omitted.
fn params(query: &str) -> Result<(Params, Repeated), ()> {
    if query.len() > MAX_QUERY_LEN {
        return Err(());
    }
    let mut p = Params::default();
    let mut fault = None;
    let mut state_repeated = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (decode_component(raw_name), decode_component(raw_value))
        else {
            return Err(());
        };
        let (slot, decides) = match name.as_str() {
            "client_id" => (&mut p.client_id, true),
            "redirect_uri" => (&mut p.redirect_uri, true),
            "response_type" => (&mut p.response_type, false),
            "response_mode" => (&mut p.response_mode, false),
            "scope" => (&mut p.scope, false),
            "state" => (&mut p.state, false),
            "nonce" => (&mut p.nonce, false),
            "code_challenge" => (&mut p.code_challenge, false),
            "code_challenge_method" => (&mut p.code_challenge_method, false),
            "request" => (&mut p.request, false),
            "request_uri" => (&mut p.request_uri, false),
            _ => continue,
        };
        if slot.is_some() {
            fault = Some(fault.unwrap_or(false) || decides);
            state_repeated |= name == "state";
        }
        *slot = Some(value);
    }
    if fault == Some(true) {
        return Err(());
    }
    for slot in [
        &mut p.client_id,
        &mut p.redirect_uri,
        &mut p.response_type,
        &mut p.response_mode,
        &mut p.scope,
        &mut p.state,
        &mut p.nonce,
        &mut p.code_challenge,
        &mut p.code_challenge_method,
        &mut p.request,
        &mut p.request_uri,
    ] {
        if slot.as_deref() == Some("") {
            *slot = None;
        }
    }
    Ok((
        p,
        Repeated {
            any: fault.is_some(),
            state: state_repeated,
        },
    ))
}

/// Which parameters a query repeated (besides client_id and redirect_uri).
struct Repeated {
    any: bool,
    state: bool,
}

/// Check an authorization request's query against the client `lookup` finds.
pub fn check<'a>(
    query: &str,
    lookup: impl FnOnce(&str) -> Option<&'a ClientRecord>,
) -> Result<AuthorizationRequest, Rejection> {
    let Ok((p, repeated)) = params(query) else {
        return Err(Rejection::Page(
            "The request is malformed or repeats client_id or redirect_uri.",
        ));
    };
    let Some(client_id) = p.client_id.as_deref() else {
        return Err(Rejection::Page("The request names no client (client_id)."));
    };
    let Some(client) = lookup(client_id).filter(|c| !c.is_disabled()) else {
        return Err(Rejection::Page(
            "The client is unknown or disabled, so Latchkey cannot send you back to it.",
        ));
    };
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(uri) if client.has_redirect_uri(uri) => uri.to_owned(),
        Some(_) => {
            return Err(Rejection::Page(
                "The redirect_uri is not registered for this client, so Latchkey will not \
                 send you there.",
            ));
        }
        None => match client.sole_redirect_uri() {
            Some(only) => only.to_owned(),
            None => {
                return Err(Rejection::Page(
                    "The request names no redirect_uri and the client does not have exactly \
                     one registered.",
                ));
            }
        },
    };
    // A repeated state is not echoed: which one would the client expect?
    let state = p.state.clone().filter(|_| !repeated.state);
    let refuse = |error: &'static str, description: &'static str| Rejection::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
    };
    if repeated.any {
        return Err(refuse("invalid_request", "a parameter is repeated"));
    }
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(refuse("invalid_request", "state is too long"));
    }
    if p.request.is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if p.request_uri.is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match p.response_type.as_deref() {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        None => return Err(refuse("invalid_request", "response_type is required")),
    }
    if p.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(refuse(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    let code_challenge = match (
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    ) {
        (None, None) => None,
        (Some(c), Some("S256")) if latchkey_core::authorization_grant::is_s256_challenge(c) => {
            Some(c.to_owned())
        }
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
            ));
        }
        (Some(_), None | Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)",
            ));
        }
        (None, Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ));
        }
    };
    // A public client proves nothing at the token endpoint: only the verifier binds its code
    // to the app that asked (RFC 7636, RFC 9700 §2.1.1).
    if client.is_public() && code_challenge.is_none() {
        return Err(refuse(
            "invalid_request",
            "this client is public: PKCE is required (code_challenge with \
             code_challenge_method=S256)",
        ));
    }
    let nonce = p.nonce.clone();
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE_LEN) {
        return Err(refuse("invalid_request", "nonce is too long"));
    }
    let requested = p.scope.as_deref().unwrap_or("");
    let openid = requested.split(' ').any(|s| s == OPENID_SCOPE);
    if !requested.is_empty()
        && requested
            .split(' ')
            .any(|s| s.is_empty() || !is_scope_token(s))
    {
        return Err(refuse("invalid_scope", "the scope is malformed"));
    }
    let rest: Vec<&str> = requested
        .split(' ')
        .filter(|s| !s.is_empty() && *s != OPENID_SCOPE)
        .collect();
    let rest = (!rest.is_empty()).then(|| rest.join(" "));
    let granted = client
        .scopes()
        .grant(rest.as_deref())
        .map_err(|_| refuse("invalid_scope", "a requested scope is not allowed"))?;
    let scope = match (openid, granted.is_empty()) {
        (true, true) => OPENID_SCOPE.to_owned(),
        (true, false) => format!("{OPENID_SCOPE} {granted}"),
        (false, _) => granted,
    };
    Ok(AuthorizationRequest {
        client_id: client.client_id().to_owned(),
        redirect_uri,
        redirect_uri_sent: p.redirect_uri.is_some(),
        scope,
        state,
        nonce,
        code_challenge,
    })
}

/// Form-encode one value for a query.
fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// What a query value keeps as is: RFC 3986 unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `redirect_uri` with `params` added to its query (a registered URI has no fragment).
fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = redirect_uri.to_owned();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        out.push(sep);
        out.push_str(name);
        out.push('=');
        out.push_str(&enc(value));
        sep = '&';
    }
    out
}

/// Where a refused request goes back to: `error`, `error_description`, `state` and `iss`.
pub fn error_location(rejection: &Rejection, issuer: &str) -> Option<String> {
    let Rejection::Redirect {
        redirect_uri,
        error,
        description,
        state,
    } = rejection
    else {
        return None;
    };
    let mut params = vec![("error", *error), ("error_description", *description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    Some(with_query(redirect_uri, &params))
}

/// Where a granted request goes back to: `code`, `state` and `iss`.
pub fn code_location(request: &AuthorizationRequest, code: &str, issuer: &str) -> String {
    let mut params = vec![("code", code)];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    with_query(&request.redirect_uri, &params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use latchkey_core::{ClientSpec, SecretDigest};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const ISS: &str = "https://idp.example.com";

    fn client() -> ClientRecord {
        ClientRecord::new(ClientSpec {
            client_id: "web".into(),
            secret: SecretDigest::of(b"s"),
            scopes: vec!["orders:*".into()],
            default_scopes: vec!["default".into()],
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "https://app.example.com/other?x=1".into(),
            ],
            ..ClientSpec::default()
        })
        .unwrap()
    }

    fn run(query: &str) -> Result<AuthorizationRequest, Rejection> {
        let c = client();
        check(query, |id| (id == "web").then_some(&c))
    }

    const GOOD: &str = "response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb\
        &scope=openid+orders%3Aread&state=s%201&nonce=n&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
        &code_challenge_method=S256";

    #[test]
    fn a_good_request_is_carried_whole() {
        let r = run(GOOD).unwrap();
        assert_eq!(r.client_id, "web");
        assert_eq!(r.redirect_uri, "https://app.example.com/cb");
        assert!(r.redirect_uri_sent);
        assert_eq!(r.scope, "openid orders:read");
        assert!(r.is_openid());
        assert_eq!(r.state.as_deref(), Some("s 1"));
        assert_eq!(r.nonce.as_deref(), Some("n"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(
            code_location(&r, "id.secret", ISS),
            "https://app.example.com/cb?code=id.secret&state=s%201\
             &iss=https%3A%2F%2Fidp.example.com"
        );
        let r = run("response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fother%3Fx%3D1").unwrap();
        assert_eq!(r.scope, "default");
        assert!(!r.is_openid());
        assert_eq!(
            code_location(&r, "c", ISS),
            "https://app.example.com/other?x=1&code=c&iss=https%3A%2F%2Fidp.example.com"
        );
    }

    #[test]
    fn untrusted_redirects_get_the_page() {
        let base = "response_type=code&client_id=web&redirect_uri=";
        for uri in [
            "https%3A%2F%2Fevil.example.com%2Fcb",
            "https%3A%2F%2Fapp.example.com%2Fcb%2Fmore",
            "https%3A%2F%2Fapp.example.com%2Fc",
            "https%3A%2F%2Fapp.example.com%2Fcb%23frag",
            "https%3A%2F%2Fapp.example.com%2F%2563b",
            "https%3A%2F%2Fapp.example.com%2Fcb%3F",
            "https%3A%2F%2FAPP.example.com%2Fcb",
            "https%3A%2F%2Fapp.example.com%2Fcb.evil.example",
            "%zz",
        ] {
            let e = run(&format!("{base}{uri}")).unwrap_err();
            assert!(matches!(e, Rejection::Page(_)), "{uri}: {e:?}");
            assert_eq!(error_location(&e, ISS), None);
        }
        for q in [
            "response_type=code&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
            "response_type=code&client_id=nobody",
            // Two registered: one must be named.
            "response_type=code&client_id=web",
            "response_type=code&client_id=web&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
            "response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&redirect_uri=https%3A%2F%2Fevil.example",
        ] {
            assert!(matches!(run(q), Err(Rejection::Page(_))), "{q}");
        }
        let mut off = ClientSpec {
            client_id: "web".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            ..ClientSpec::default()
        };
        off.disabled = true;
        let off = ClientRecord::new(off).unwrap();
        let e = check("response_type=code&client_id=web", |_| Some(&off)).unwrap_err();
        assert!(matches!(e, Rejection::Page(_)));
    }

    #[test]
    fn errors_after_a_trusted_redirect_go_back_with_state_and_iss() {
        let cases = [
            ("response_type=token", "unsupported_response_type"),
            ("response_type=code+id_token", "unsupported_response_type"),
            ("scope=openid", "invalid_request"),
            (
                "response_type=code&response_mode=fragment",
                "invalid_request",
            ),
            (
                "response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain",
                "invalid_request",
            ),
            (
                "response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "invalid_request",
            ),
            (
                "response_type=code&code_challenge_method=S256",
                "invalid_request",
            ),
            (
                "response_type=code&code_challenge=short&code_challenge_method=S256",
                "invalid_request",
            ),
            ("response_type=code&scope=payments", "invalid_scope"),
            (
                "response_type=code&scope=openid++orders%3Aread",
                "invalid_scope",
            ),
            ("response_type=code&request=eyJ", "request_not_supported"),
            (
                "response_type=code&request_uri=https%3A%2F%2Fx",
                "request_uri_not_supported",
            ),
            ("response_type=code&nonce=a&nonce=b", "invalid_request"),
        ];
        let c = ClientRecord::new(ClientSpec {
            client_id: "one".into(),
            redirect_uris: vec!["https://one.example/cb".into()],
            default_scopes: vec!["default".into()],
            ..ClientSpec::default()
        })
        .unwrap();
        for (q, error) in cases {
            let query = format!("client_id=one&state=xyz&{q}");
            let e = check(&query, |_| Some(&c)).unwrap_err();
            let Rejection::Redirect { error: got, .. } = &e else {
                panic!("{q}: {e:?}");
            };
            assert_eq!(*got, error, "{q}");
            let to = error_location(&e, ISS).unwrap();
            assert!(
                to.starts_with(&format!(
                    "https://one.example/cb?error={error}&error_description="
                )),
                "{to}"
            );
            assert!(
                to.ends_with("&state=xyz&iss=https%3A%2F%2Fidp.example.com"),
                "{to}"
            );
        }
        let long = "s".repeat(MAX_STATE_LEN + 1);
        let e = check(
            &format!("client_id=one&response_type=code&state={long}"),
            |_| Some(&c),
        )
        .unwrap_err();
        let to = error_location(&e, ISS).unwrap();
        assert!(!to.contains("state="), "a too-long state is not echoed");
        let e = check("client_id=one&response_type=code&state=a&state=b", |_| {
            Some(&c)
        })
        .unwrap_err();
        let to = error_location(&e, ISS).unwrap();
        assert!(
            to.contains("error=invalid_request") && !to.contains("state="),
            "{to}"
        );
    }

    #[test]
    fn the_only_redirect_uri_may_be_left_out_and_openid_alone_works() {
        let c = ClientRecord::new(ClientSpec {
            client_id: "one".into(),
            redirect_uris: vec!["http://127.0.0.1:8400/cb".into()],
            ..ClientSpec::default()
        })
        .unwrap();
        let r = check("client_id=one&response_type=code&scope=openid", |_| {
            Some(&c)
        })
        .unwrap();
        assert_eq!(r.redirect_uri, "http://127.0.0.1:8400/cb");
        assert!(!r.redirect_uri_sent);
        assert_eq!(r.scope, "openid");
        assert_eq!(r.code_challenge, None);
    }

    // Issue 12: public clients.
    #[test]
    fn a_public_client_must_send_an_s256_challenge() {
        let c = ClientRecord::new(ClientSpec {
            client_id: "spa".into(),
            redirect_uris: vec!["http://127.0.0.1:8400/cb".into()],
            token_endpoint_auth_method: Some(latchkey_core::TokenEndpointAuthMethod::None),
            ..ClientSpec::default()
        })
        .unwrap();
        let e = check(
            "client_id=spa&response_type=code&scope=openid&state=s",
            |_| Some(&c),
        )
        .unwrap_err();
        let to = error_location(&e, ISS).unwrap();
        assert!(
            to.starts_with("http://127.0.0.1:8400/cb?error=invalid_request&error_description=this%20client%20is%20public%3A%20PKCE%20is%20required"),
            "{to}"
        );
        assert!(
            to.ends_with("&state=s&iss=https%3A%2F%2Fidp.example.com"),
            "{to}"
        );
        let plain = format!(
            "client_id=spa&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain"
        );
        assert!(matches!(
            check(&plain, |_| Some(&c)),
            Err(Rejection::Redirect {
                error: "invalid_request",
                ..
            })
        ));
        let s256 = format!(
            "client_id=spa&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256"
        );
        let r = check(&s256, |_| Some(&c)).unwrap();
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
    }
}
