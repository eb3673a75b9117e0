//! Issue 12: public clients (`tokenEndpointAuthMethod: none`; RFC 6749 §2.1, RFC 8252, RFC
//! 9700), through the real standalone binary over TLS: a browser or native app signs a person
//! in with PKCE, redeems the code with its client_id alone, refreshes (rotated, a reused one
//! revokes the family) and revokes; what it may not do is refused with a precise answer. And a
//! client that names a secret method accepts only that one. APK's sample users serve.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{sign_in_flow::*, *};

const REDIRECT: &str = "http://127.0.0.1:8400/cb";

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: spa }
spec:
  clientId: spa
  tokenEndpointAuthMethod: none
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:*"]
  redirectUris: ["http://127.0.0.1:8400/cb"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: web }
spec:
  clientId: web
  secretRef: { name: web }
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:*"]
  redirectUris: ["https://app.example.com/cb"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: form-only }
spec:
  clientId: form-only
  secretRef: { name: web }
  tokenEndpointAuthMethod: client_secret_post
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: basic-only }
spec:
  clientId: basic-only
  secretRef: { name: web }
  tokenEndpointAuthMethod: client_secret_basic
---
apiVersion: v1
kind: Secret
metadata: { name: web }
stringData: { clientSecret: web-secret }
"#;

fn start(dir: &Path) -> Server {
    let clients = dir.join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    Server::start(
        &dir.join("state"),
        &["--clients", clients.to_str().unwrap()],
    )
}

/// A token request with no client authentication at all (the form names the client).
fn public_token(server: &Server, body: &str) -> Response {
    server.token(&[FORM], body)
}

fn code_body(code: &str) -> String {
    format!(
        "grant_type=authorization_code&client_id=spa&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        form_encode(code),
        form_encode(REDIRECT)
    )
}

fn refresh_body(token: &str) -> String {
    format!(
        "grant_type=refresh_token&client_id=spa&refresh_token={}",
        form_encode(token)
    )
}

fn spa_code(server: &Server, jar: &mut Jar) -> String {
    sign_in_code(
        server,
        jar,
        &authorize_target("spa", REDIRECT, ""),
        "admin",
        "admin",
    )
}

fn error_of(res: &Response) -> (String, String) {
    let v = res.json();
    (
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn a_public_client_signs_a_person_in_with_pkce_and_rotates_its_refresh_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let metadata = get(&server, "/.well-known/openid-configuration", &mut jar).json();
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&"none".into()), "{methods:?}");
    assert!(
        metadata["revocation_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"none".into())
    );
    let issuer = metadata["issuer"].as_str().unwrap().to_owned();
    let jwks = get(&server, "/oauth2/jwks", &mut jar).json();

    // The code, redeemed with client_id and the verifier only.
    let code = spa_code(&server, &mut jar);
    let res = public_token(&server, &code_body(&code));
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    assert_eq!(body["scope"], "openid orders:read");
    let access = verify_with_jwks(body["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(access["clientId"], "spa");
    assert_eq!(access["iss"], issuer.as_str());
    assert_eq!(access["organization"], "org1");
    let id = verify_with_jwks(body["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(
        (id["aud"].as_str(), id["azp"].as_str()),
        (Some("spa"), Some("spa"))
    );
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sub"], access["sub"]);
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("\"client_id\":\"spa\"") && l.contains("\"auth\":\"none\"")),
        "the access line names the method"
    );

    // The same code again: refused, and the sign-in it made is revoked.
    let (error, _) = error_of(&public_token(&server, &code_body(&code)));
    assert_eq!(error, "invalid_grant");
    let (error, _) = error_of(&public_token(&server, &refresh_body(&r1)));
    assert_eq!(
        error, "invalid_grant",
        "the replayed code revoked the grant"
    );

    // A fresh sign-in (the session skips the password): rotation, then reuse detection.
    let code = spa_code(&server, &mut jar);
    let r1 = public_token(&server, &code_body(&code)).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = public_token(&server, &refresh_body(&r1));
    assert_eq!(res.status, 200, "{}", res.text());
    let r2 = res.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    verify_with_jwks(res.json()["access_token"].as_str().unwrap(), &jwks);
    let res = public_token(&server, &refresh_body(&r2));
    assert_eq!(res.status, 200, "{}", res.text());
    let r3 = res.json()["refresh_token"].as_str().unwrap().to_owned();
    let (error, _) = error_of(&public_token(&server, &refresh_body(&r2)));
    assert_eq!(error, "invalid_grant", "a rotated token presented again");
    let (error, _) = error_of(&public_token(&server, &refresh_body(&r3)));
    assert_eq!(error, "invalid_grant", "reuse revoked the whole family");
    // Another client cannot use the public client's refresh token, even the newest.
    let code = spa_code(&server, &mut jar);
    let r = public_token(&server, &code_body(&code)).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = server.token(
        &[("Authorization", &basic("web", "web-secret")), FORM],
        &format!("grant_type=refresh_token&refresh_token={}", form_encode(&r)),
    );
    assert_eq!(error_of(&res).0, "invalid_grant");

    // RFC 7009 §5: the public client revokes its own refresh token with its client_id alone;
    // it may not introspect (it cannot authenticate).
    let code = spa_code(&server, &mut jar);
    let r = public_token(&server, &code_body(&code)).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = server.send(&post_request(
        "/oauth2/revoke",
        &[FORM],
        &format!("client_id=spa&token={}", form_encode(&r)),
    ));
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    assert_eq!(
        error_of(&public_token(&server, &refresh_body(&r))).0,
        "invalid_grant"
    );
    let introspect = server.send(&post_request(
        "/oauth2/introspect",
        &[FORM],
        "client_id=spa&token=x",
    ));
    assert_eq!(introspect.status, 403);
    assert_eq!(error_of(&introspect).0, "unauthorized_client");
}

#[test]
fn what_a_public_client_may_not_do_is_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let issuer = issuer_of(&server, &mut jar);

    // At /oauth2/authorize: no PKCE, or plain, goes back to the app with invalid_request.
    let base = format!(
        "/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={}&state=s&scope=openid",
        form_encode(REDIRECT)
    );
    for (extra, description) in [
        ("", "PKCE is required"),
        (
            &*format!("&code_challenge={CHALLENGE}&code_challenge_method=plain"),
            "plain is not accepted",
        ),
        (&*format!("&code_challenge={CHALLENGE}"), "must be S256"),
    ] {
        let res = get(&server, &format!("{base}{extra}"), &mut jar);
        assert_eq!(res.status, 302, "{extra}: {}", res.text());
        let location = res.header("location").unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        let q = query_of(location);
        assert_eq!(q["error"], "invalid_request", "{extra}");
        assert!(
            q["error_description"].contains(description),
            "{extra}: {q:?}"
        );
        assert_eq!(
            (q["state"].as_str(), q["iss"].as_str()),
            ("s", issuer.as_str())
        );
    }

    // At /oauth2/token: a secret or an assertion for a public client is refused, by name.
    let code = spa_code(&server, &mut jar);
    let sent_secret = server.token(
        &[FORM],
        &format!("{}&client_secret=guess", code_body(&code)),
    );
    // 400: no Authorization header was tried (RFC 6749 §5.2 keeps 401 for that).
    assert_eq!(sent_secret.status, 400);
    let (error, description) = error_of(&sent_secret);
    assert_eq!(error, "invalid_client");
    assert_eq!(
        description,
        "this client is public (tokenEndpointAuthMethod none): it sends client_id alone, \
         without client_secret or HTTP Basic"
    );
    let basic_body = code_body(&code).replace("&client_id=spa", "");
    let sent_basic = server.token(&[("Authorization", &basic("spa", "")), FORM], &basic_body);
    assert_eq!(sent_basic.status, 401);
    assert_eq!(error_of(&sent_basic).1, description);
    assert!(sent_basic.header("www-authenticate").is_some());
    let sent_assertion = server.token(
        &[FORM],
        &format!(
            "{}&client_assertion_type={}&client_assertion=eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
            code_body(&code),
            form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        ),
    );
    let (error, description) = error_of(&sent_assertion);
    assert_eq!(error, "invalid_client");
    assert!(
        description.contains("without client_assertion"),
        "{description}"
    );
    // None of those spent the code: the right request still redeems it.
    let res = public_token(&server, &code_body(&code));
    assert_eq!(res.status, 200, "{}", res.text());

    // Without the verifier, or with another one, the code is refused.
    let code = spa_code(&server, &mut jar);
    let no_verifier = code_body(&code).replace(&format!("&code_verifier={VERIFIER}"), "");
    assert_eq!(
        error_of(&public_token(&server, &no_verifier)).0,
        "invalid_grant"
    );
    let code = spa_code(&server, &mut jar);
    let wrong = code_body(&code).replace(VERIFIER, &"x".repeat(43));
    assert_eq!(error_of(&public_token(&server, &wrong)).0, "invalid_grant");

    // client_credentials is not a public client's grant, with or without a secret.
    let res = public_token(&server, "grant_type=client_credentials&client_id=spa");
    assert_eq!(res.status, 400);
    let (error, description) = error_of(&res);
    assert_eq!(error, "unauthorized_client");
    assert!(description.contains("public client"), "{description}");
    let res = server.token(
        &[("Authorization", &basic("spa", "x")), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(error_of(&res).0, "invalid_client");

    // A confidential client, or an unknown id, that sends client_id alone: invalid_client,
    // the same answer for both (no hint which ids exist).
    let code = sign_in_code(
        &server,
        &mut jar,
        &authorize_target("web", "https://app.example.com/cb", ""),
        "admin",
        "admin",
    );
    let confidential = public_token(
        &server,
        &format!(
            "grant_type=authorization_code&client_id=web&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            form_encode(&code),
            form_encode("https://app.example.com/cb")
        ),
    );
    let unknown = public_token(
        &server,
        "grant_type=refresh_token&client_id=nobody&refresh_token=x",
    );
    assert_eq!(confidential.status, 400);
    assert_eq!(error_of(&confidential), error_of(&unknown));
    assert_eq!(
        error_of(&confidential),
        (
            "invalid_client".into(),
            "client authentication failed".into()
        )
    );
    let cc = public_token(&server, "grant_type=client_credentials&client_id=web");
    assert_eq!(error_of(&cc).0, "invalid_client");
}

#[test]
fn a_client_that_names_a_secret_method_accepts_only_that_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let by_form = |id: &str| {
        server.token(
            &[FORM],
            &format!("grant_type=client_credentials&client_id={id}&client_secret=web-secret"),
        )
    };
    let by_basic = |id: &str| {
        server.token(
            &[("Authorization", &basic(id, "web-secret")), FORM],
            "grant_type=client_credentials",
        )
    };
    assert_eq!(by_form("form-only").status, 200);
    assert_eq!(by_basic("basic-only").status, 200);
    let res = by_basic("form-only");
    assert_eq!(res.status, 401);
    assert_eq!(
        error_of(&res),
        (
            "invalid_client".into(),
            "this client authenticates with client_secret_post only (its \
             tokenEndpointAuthMethod), not client_secret_basic"
                .into()
        )
    );
    let res = by_form("basic-only");
    assert_eq!(
        error_of(&res).1,
        "this client authenticates with client_secret_basic only (its \
         tokenEndpointAuthMethod), not client_secret_post"
    );
    // A wrong secret is just a wrong secret, by either method.
    let wrong = server.token(
        &[("Authorization", &basic("form-only", "nope")), FORM],
        "grant_type=client_credentials",
    );
    assert_eq!(
        error_of(&wrong),
        (
            "invalid_client".into(),
            "client authentication failed".into()
        )
    );
    // A client that names no method keeps accepting both.
    let both = |auth: bool| {
        let body = "grant_type=authorization_code&code=x.y&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb";
        if auth {
            server.token(
                &[("Authorization", &basic("web", "web-secret")), FORM],
                body,
            )
        } else {
            server.token(
                &[FORM],
                &format!("{body}&client_id=web&client_secret=web-secret"),
            )
        }
    };
    for auth in [true, false] {
        assert_eq!(
            error_of(&both(auth)).0,
            "invalid_grant",
            "authenticated, bad code"
        );
    }
}
