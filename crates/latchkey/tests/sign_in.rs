//! Issue 12: people sign in, through the real standalone binary over TLS, driven by a plain
//! HTTP client that keeps cookies by hand: the authorization request, the login and consent
//! pages, the code sent back with state and iss, and the abuse cases (open redirects, PKCE
//! downgrade, CSRF on the forms, one message for unknown users and wrong passwords, brute
//! force throttled). APK's sample users serve (admin/admin in org1, user1/user1).
#![allow(clippy::unwrap_used)]

mod common;

use std::{path::Path, time::Instant};

use common::{sign_in_flow::*, *};

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: web }
spec:
  clientId: web
  secretRef: { name: web }
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:*"]
  redirectUris: ["https://app.example.com/cb", "http://127.0.0.1:8400/cb"]
  postLogoutRedirectUris: ["https://app.example.com/bye"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: portal }
spec:
  clientId: portal
  secretRef: { name: web }
  grantTypes: [authorization_code]
  scopes: ["orders:*"]
  redirectUris: ["https://portal.example.com/cb"]
  firstParty: true
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: org2-only }
spec:
  clientId: org2-only
  secretRef: { name: web }
  scopes: ["orders:*"]
  redirectUris: ["https://org2.example.com/cb"]
  firstParty: true
  allowedOrganizations: [org2]
---
apiVersion: v1
kind: Secret
metadata: { name: web }
stringData: { clientSecret: web-secret }
"#;

fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &Path, extra: &[&str]) -> Server {
    let clients = dir.join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let mut args = vec!["--clients", clients.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&dir.join("state"), &args)
}

#[test]
fn a_person_signs_in_consents_and_the_client_gets_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let issuer = issuer_of(&server, &mut jar);

    let page = get(
        &server,
        &authorize_target("web", "https://app.example.com/cb", ""),
        &mut jar,
    );
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(jar.0.contains_key("__Host-latchkey-login"));
    let html = page.text();
    assert!(
        html.contains("autocomplete=\"username\"") && html.contains("<label for=\"password\">")
    );
    let csrf = csrf_of(&html);

    // Wrong password and unknown user: the same page, byte for byte.
    let wrong = post(
        &server,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf, "admin", "nope"),
    );
    let unknown = post(
        &server,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf, "nobody", "nope"),
    );
    assert_eq!(wrong.status, 200);
    assert!(wrong.text().contains("Wrong username or password."));
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body, "no hint whether the user exists");

    // Then the right password: the consent page (web is not first-party).
    let consent = post(
        &server,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf, "admin", "admin"),
    );
    assert_eq!(consent.status, 200, "{}", consent.text());
    assert!(jar.0.contains_key("__Host-latchkey-session"));
    let html = consent.text();
    assert!(html.contains("<code>orders:read</code>") && html.contains("value=\"allow\""));
    let csrf = csrf_of(&html);
    let back = post(
        &server,
        "/oauth2/consent",
        &mut jar,
        &format!("csrf={}&decision=allow", form_encode(&csrf)),
    );
    assert_eq!(back.status, 302, "{}", back.text());
    let location = back.header("location").unwrap();
    assert!(
        location.starts_with("https://app.example.com/cb?code="),
        "{location}"
    );
    let q = query_of(location);
    assert_eq!(q["state"], "st/1");
    assert_eq!(q["iss"], issuer, "RFC 9207");
    let code = &q["code"];
    let grant_id = code.split('.').next().unwrap();
    let grant =
        std::fs::read_to_string(server.state_dir.join(format!("grants/{grant_id}.json"))).unwrap();
    assert!(
        !grant.contains(code.split('.').nth(1).unwrap()),
        "only a hash is stored"
    );
    let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
    assert_eq!(grant["clientId"], "web");
    assert_eq!(grant["scope"], "openid orders:read");
    assert_eq!(grant["nonce"], "n-1");
    assert_eq!(grant["organization"], "org1");
    assert_eq!(grant["codeChallenge"], CHALLENGE);
    assert!(
        !jar.0.contains_key("__Host-latchkey-login"),
        "the login cookie is cleared"
    );

    // The session spares the password; a first-party client skips consent.
    let again = get(
        &server,
        &authorize_target("portal", "https://portal.example.com/cb", ""),
        &mut jar,
    );
    assert_eq!(again.status, 302, "{}", again.text());
    let q = query_of(again.header("location").unwrap());
    assert!(q.contains_key("code") && q["state"] == "st/1");

    // Logout: an unregistered address is not followed; a registered one is, with state; the
    // session cookie is cleared either way, so the next authorization asks for the password.
    let mut kept = jar.clone();
    let bad = get(
        &server,
        "/oauth2/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
        &mut kept,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("location"), None);
    assert!(!kept.0.contains_key("__Host-latchkey-session"));
    let mut out = jar.clone();
    let bye = get(
        &server,
        "/oauth2/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye&state=z",
        &mut out,
    );
    assert_eq!(bye.status, 302);
    assert_eq!(
        bye.header("location"),
        Some("https://app.example.com/bye?state=z")
    );
    assert!(!out.0.contains_key("__Host-latchkey-session"));
    let page = get(
        &server,
        &authorize_target("portal", "https://portal.example.com/cb", ""),
        &mut out,
    );
    assert_eq!(page.status, 200, "signed out: the login page again");
    assert!(page.text().contains("name=\"password\""));

    // Denying consent goes back with access_denied.
    let page = get(
        &server,
        &authorize_target("web", "http://127.0.0.1:8400/cb", ""),
        &mut jar,
    );
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.text());
    let denied = post(
        &server,
        "/oauth2/consent",
        &mut jar,
        &format!("csrf={}&decision=deny", form_encode(&csrf)),
    );
    let location = denied.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:8400/cb?error=access_denied"),
        "{location}"
    );
    assert_eq!(query_of(location)["state"], "st/1");

    // An organization the client does not allow: refused, back to the client.
    let refused = get(
        &server,
        &authorize_target("org2-only", "https://org2.example.com/cb", ""),
        &mut jar,
    );
    let location = refused.header("location").unwrap();
    assert!(location.contains("error=access_denied"), "{location}");
}

#[test]
fn open_redirects_and_untrusted_requests_get_a_page_never_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    for redirect in [
        "https://evil.example.com/cb",
        "https://app.example.com/cb/../../evil",
        "https://app.example.com/cbx",
        "https://app.example.com/c",
        "https://app.example.com/%63b",
        "https://app.example.com/cb#x",
        "https://APP.example.com/cb",
        "https://app.example.com.evil.example/cb",
        "http://127.0.0.1:8401/cb",
        "https://portal.example.com/cb",
    ] {
        let res = get(&server, &authorize_target("web", redirect, ""), &mut jar);
        assert_eq!(res.status, 400, "{redirect}");
        assert_eq!(res.header("location"), None, "{redirect}");
        assert!(res.text().contains("Sign-in error"), "{redirect}");
    }
    for target in [
        "/oauth2/authorize?response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        "/oauth2/authorize?response_type=code&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb",
        "/oauth2/authorize?response_type=code&client_id=web",
        "/oauth2/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&redirect_uri=https%3A%2F%2Fevil.example",
    ] {
        let res = get(&server, target, &mut jar);
        assert_eq!(res.status, 400, "{target}");
        assert_eq!(res.header("location"), None, "{target}");
    }
}

#[test]
fn pkce_downgrade_and_bad_requests_go_back_with_error_state_and_iss() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let issuer = issuer_of(&server, &mut jar);
    let base =
        "/oauth2/authorize?client_id=web&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=s";
    for (extra, error) in [
        (
            "&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain",
            "invalid_request",
        ),
        (
            "&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "invalid_request",
        ),
        ("&response_type=token", "unsupported_response_type"),
        ("", "invalid_request"),
        ("&response_type=code&scope=payments", "invalid_scope"),
    ] {
        let res = get(&server, &format!("{base}{extra}"), &mut jar);
        assert_eq!(res.status, 302, "{extra}");
        let q = query_of(res.header("location").unwrap());
        assert_eq!(q["error"], error, "{extra}");
        assert_eq!(q["state"], "s");
        assert_eq!(q["iss"], issuer);
    }
}

#[test]
fn login_and_consent_forms_need_their_cookie_and_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let page = get(
        &server,
        &authorize_target("web", "https://app.example.com/cb", ""),
        &mut jar,
    );
    let csrf = csrf_of(&page.text());
    // Missing token, forged token, no cookie (a cross-site post), and another sign-in's cookie.
    let missing = post(
        &server,
        "/oauth2/login",
        &mut jar.clone(),
        "username=admin&password=admin",
    );
    assert_eq!(missing.status, 403);
    let forged = post(
        &server,
        "/oauth2/login",
        &mut jar.clone(),
        &login_body("AAAA", "admin", "admin"),
    );
    assert_eq!(forged.status, 403);
    let cross_site = post(
        &server,
        "/oauth2/login",
        &mut Jar::default(),
        &login_body(&csrf, "admin", "admin"),
    );
    assert_eq!(cross_site.status, 403);
    let mut other = Jar::default();
    get(
        &server,
        &authorize_target("web", "https://app.example.com/cb", ""),
        &mut other,
    );
    let swapped = post(
        &server,
        "/oauth2/login",
        &mut other,
        &login_body(&csrf, "admin", "admin"),
    );
    assert_eq!(swapped.status, 403);
    for res in [&missing, &forged, &cross_site, &swapped] {
        assert!(
            !res.headers.iter().any(|(n, _)| n == "set-cookie"),
            "no session"
        );
    }
    // The login form's token does not post a consent.
    let consent = post(
        &server,
        "/oauth2/consent",
        &mut jar,
        &format!("csrf={}&decision=allow", form_encode(&csrf)),
    );
    assert_eq!(consent.status, 403);
    // GET on the form endpoints is not a login.
    assert_eq!(get(&server, "/oauth2/login", &mut jar).status, 405);
}

/// Twelve wrong passwords for admin from this source: how many got a verdict (200), how many
/// were turned away (429, without one), and the last Retry-After.
fn guess_twelve(server: &Server, jar: &mut Jar, csrf: &str) -> (u32, u32, Option<String>) {
    let (mut answered, mut throttled) = (0u32, 0u32);
    let mut retry_after = None;
    for i in 0..12 {
        let res = post(
            server,
            "/oauth2/login",
            jar,
            &login_body(csrf, "admin", &format!("guess-{i}")),
        );
        match res.status {
            200 => {
                answered += 1;
                assert!(res.text().contains("Wrong username or password."));
            }
            429 => {
                throttled += 1;
                retry_after = res.header("retry-after").map(str::to_owned);
                assert!(
                    !res.text().contains("Wrong username"),
                    "no verdict when throttled"
                );
            }
            s => panic!("status {s}: {}", res.text()),
        }
    }
    (answered, throttled, retry_after)
}

fn portal_login_csrf(server: &Server, jar: &mut Jar) -> String {
    let page = get(
        server,
        &authorize_target("portal", "https://portal.example.com/cb", ""),
        jar,
    );
    csrf_of(&page.text())
}

#[test]
fn guessing_passwords_is_throttled_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let csrf = portal_login_csrf(&server, &mut jar);
    let started = Instant::now();
    let (answered, throttled, retry_after) = guess_twelve(&server, &mut jar, &csrf);
    let elapsed = started.elapsed();
    println!(
        "login guesses from one source: {answered} answered, {throttled} throttled (429, \
         Retry-After {retry_after:?}) in {:.2} s; the throttle then allows one guess per 5 s \
         (0.2/s) per source",
        elapsed.as_secs_f64()
    );
    assert_eq!(answered, 5, "the burst, then 429");
    assert_eq!(throttled, 7);
    // Even the right password is refused while the source is throttled: the answer tells a
    // guesser nothing.
    let res = post(
        &server,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf, "admin", "admin"),
    );
    assert_eq!(res.status, 429);
}

#[test]
fn the_login_throttle_follows_its_flags() {
    // A larger burst: ten verdicts, then 429.
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--login-failure-burst", "10"]);
    let mut jar = Jar::default();
    let csrf = portal_login_csrf(&server, &mut jar);
    let (answered, throttled, _) = guess_twelve(&server, &mut jar, &csrf);
    assert_eq!((answered, throttled), (10, 2));
    drop(server);
    // Rate 0: no login throttling at all (the token endpoint's throttle is its own).
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--login-failure-rate", "0"]);
    let mut jar = Jar::default();
    let csrf = portal_login_csrf(&server, &mut jar);
    assert_eq!(guess_twelve(&server, &mut jar, &csrf), (12, 0, None));
}

/// Sign admin in to `web` (consent included) and return the code.
fn code_for_web(server: &Server, jar: &mut Jar, extra: &str) -> String {
    code_for(server, jar, extra, "admin", "admin")
}

/// Sign `user` in to `web` (consent included) and return the code.
fn code_for(server: &Server, jar: &mut Jar, extra: &str, user: &str, password: &str) -> String {
    let target = authorize_target("web", "https://app.example.com/cb", extra);
    sign_in_code(server, jar, &target, user, password)
}

fn exchange(server: &Server, client: &str, body: &str) -> Response {
    server.token(
        &[("Authorization", &basic(client, "web-secret")), FORM],
        body,
    )
}

fn code_body(code: &str, verifier: &str) -> String {
    format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
        form_encode(code),
        form_encode("https://app.example.com/cb")
    )
}

#[test]
fn the_code_becomes_tokens_once_and_refresh_tokens_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut jar = Jar::default();
    let issuer = issuer_of(&server, &mut jar);
    let jwks = get(&server, "/oauth2/jwks", &mut jar).json();

    // Another client's code, a missing or wrong verifier: refused (and a refused code stays
    // usable only for a request that is right in every way).
    let code = code_for_web(&server, &mut jar, "");
    let other = exchange(&server, "portal", &code_body(&code, VERIFIER));
    assert_eq!(other.status, 400);
    assert_eq!(other.json()["error"], "invalid_grant");
    let code = code_for_web(&server, &mut jar, "");
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=authorization_code&code={}&redirect_uri={}",
            form_encode(&code),
            form_encode("https://app.example.com/cb")
        ),
    );
    assert_eq!(
        res.json()["error"],
        "invalid_grant",
        "PKCE verifier missing"
    );
    let code = code_for_web(&server, &mut jar, "");
    let wrong = "x".repeat(43);
    let res = exchange(&server, "web", &code_body(&code, &wrong));
    assert_eq!(res.json()["error"], "invalid_grant", "wrong verifier");

    // The real exchange.
    let code = code_for_web(&server, &mut jar, "");
    let res = exchange(&server, "web", &code_body(&code, VERIFIER));
    assert_eq!(
        res.status,
        200,
        "{}\n{}",
        res.text(),
        server
            .logs()
            .iter()
            .filter(|l| l.contains("refused"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let body = res.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid orders:read");
    let access = verify_with_jwks(body["access_token"].as_str().unwrap(), &jwks);
    let admin_id = access["sub"].as_str().unwrap().to_owned();
    assert_ne!(
        admin_id, "admin",
        "sub is the stable id, not the login name"
    );
    assert_eq!(access["clientId"], "web");
    assert_eq!(access["organization"], "org1");
    assert_eq!(access["iss"], issuer.as_str());
    let id_token = body["id_token"].as_str().unwrap();
    let id = verify_with_jwks(id_token, &jwks);
    assert_eq!(id["aud"], "web");
    assert_eq!(id["azp"], "web");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["sub"], admin_id.as_str());
    assert!(id["auth_time"].as_u64().unwrap() <= id["iat"].as_u64().unwrap());
    assert!(id["at_hash"].is_string());
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // UserInfo with the access token as a Bearer token.
    let access_token = body["access_token"].as_str().unwrap();
    let userinfo = |auth: Option<&str>| {
        let line = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        server.send(
            format!("GET /oauth2/userinfo HTTP/1.1\r\nHost: localhost\r\n{line}\r\n").as_bytes(),
        )
    };
    let info = userinfo(Some(&format!("Bearer {access_token}")));
    assert_eq!(info.status, 200, "{}", info.text());
    let info = info.json();
    assert_eq!(info["sub"], admin_id.as_str());
    assert_eq!(info["preferred_username"], "admin");
    assert_eq!(info["organization"], "org1");
    let none = userinfo(None);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let bad = userinfo(Some("Bearer not-a-token"));
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let id_as_access = userinfo(Some(&format!("Bearer {id_token}")));
    assert_eq!(
        id_as_access.status, 401,
        "an id_token is not an access token"
    );

    // The same code again: refused, and the grant it made is revoked with it.
    let again = exchange(&server, "web", &code_body(&code, VERIFIER));
    assert_eq!(again.json()["error"], "invalid_grant");
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&refresh)
        ),
    );
    assert_eq!(
        res.json()["error"],
        "invalid_grant",
        "replay revoked the grant"
    );

    // A fresh sign-in: refresh rotates; the rotated token presented again revokes the family.
    let code = code_for_web(&server, &mut jar, "");
    let first = exchange(&server, "web", &code_body(&code, VERIFIER)).json();
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&r1)
        ),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let r2 = res.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    verify_with_jwks(res.json()["access_token"].as_str().unwrap(), &jwks);
    let reuse = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&r1)
        ),
    );
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&r2)
        ),
    );
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the whole family is revoked"
    );

    // RFC 7009: the client revokes its current refresh token at /oauth2/revoke; the sign-in
    // ends with it (issue 13's endpoint over this issue's grants).
    let code = code_for_web(&server, &mut jar, "");
    let tokens = exchange(&server, "web", &code_body(&code, VERIFIER)).json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let revoke = |token: &str| {
        let body = format!("token={}&token_type_hint=refresh_token", form_encode(token));
        let auth = basic("web", "web-secret");
        server.send(&common::post_request(
            "/oauth2/revoke",
            &[("Authorization", &auth), FORM],
            &body,
        ))
    };
    assert_eq!(revoke(&refresh).status, 200);
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&refresh)
        ),
    );
    assert_eq!(
        res.json()["error"],
        "invalid_grant",
        "revoked at /oauth2/revoke"
    );
    // Unknown tokens are answered 200 too, and change nothing (RFC 7009 §2.2).
    assert_eq!(revoke("not-a-token").status, 200);

    // portal may not refresh: its response has no refresh token. A client_credentials request
    // from web is refused (it is not one of its grants).
    let res = exchange(&server, "web", "grant_type=client_credentials");
    assert_eq!(res.json()["error"], "unauthorized_client");
}

fn users_file(disabled: bool, hash: &str) -> String {
    format!(
        "apiVersion: latchkey.dev/v1alpha1\nkind: User\nmetadata: {{ name: alice, namespace: people }}\n\
         spec:\n  username: alice\n  organizations: [org1]\n  groups: [devs]\n  disabled: {disabled}\n\
         \x20 passwordRef: {{ name: alice-password }}\n---\napiVersion: v1\nkind: Secret\n\
         metadata: {{ name: alice-password, namespace: people }}\nstringData:\n  passwordHash: '{hash}'\n"
    )
}

#[test]
fn a_disabled_user_gets_no_more_refreshes_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"alice-pw").unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let users = dir.path().join("users.yaml");
    std::fs::write(&users, users_file(false, &hash)).unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &[
            "--clients",
            clients.to_str().unwrap(),
            "--users",
            users.to_str().unwrap(),
            "--reload-interval",
            "200ms",
        ],
    );
    let mut jar = Jar::default();
    let code = code_for(&server, &mut jar, "", "alice", "alice-pw");
    let body = exchange(&server, "web", &code_body(&code, VERIFIER)).json();
    let (_, access) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(access["groups"], serde_json::json!(["devs"]));
    let mut refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&refresh)
        ),
    );
    assert_eq!(res.status, 200, "{}", res.text());
    refresh = res.json()["refresh_token"].as_str().unwrap().to_owned();

    std::fs::write(&users, users_file(true, &hash)).unwrap();
    let disabled_at = Instant::now();
    // Refresh with the current (rotated) token until one is refused: the first refusal marks
    // when the directory dropped the user.
    let mut refused = false;
    while disabled_at.elapsed() < std::time::Duration::from_secs(5) {
        let res = exchange(
            &server,
            "web",
            &format!(
                "grant_type=refresh_token&refresh_token={}",
                form_encode(&refresh)
            ),
        );
        if res.status == 400 {
            assert_eq!(res.json()["error"], "invalid_grant");
            refused = true;
            break;
        }
        refresh = res.json()["refresh_token"].as_str().unwrap().to_owned();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        refused,
        "a disabled user's refresh was still honoured after 5 s"
    );
    println!(
        "refresh refused {:.2} s after the user was disabled in the file (reload every 200 ms)",
        disabled_at.elapsed().as_secs_f64()
    );
    // And the sign-in is revoked: even if re-enabled, that refresh token is dead.
    std::fs::write(&users, users_file(false, &hash)).unwrap();
    assert!(server.wait_for_log("users reloaded", std::time::Duration::from_secs(5)));
    let res = exchange(
        &server,
        "web",
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(&refresh)
        ),
    );
    assert_eq!(res.json()["error"], "invalid_grant");
}
