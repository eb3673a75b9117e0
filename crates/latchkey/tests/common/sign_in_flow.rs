//! A browser's side of signing in, by hand: cookies kept per origin as a browser would (and
//! checked for the attributes Latchkey must set), the authorization request with PKCE, the
//! CSRF token of each form, and the redirect's query. Used by the standalone and the
//! two-replica suites alike.

use std::collections::BTreeMap;

use super::{Response, Server, form_encode};

pub const CHALLENGE: &str = "AMwbT3_yA2xKyK2Hk8o5k_Ewrql6KhaJKgl73etBL-w";
/// The verifier of [`CHALLENGE`].
pub const VERIFIER: &str = "latchkey-test-verifier-0123456789-abcdefghijkl";

/// Cookies as a browser would keep them for this origin.
#[derive(Default, Clone)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, res: &Response) {
        for (name, value) in &res.headers {
            if name != "set-cookie" {
                continue;
            }
            let (pair, attrs) = value.split_once(';').unwrap_or((value, ""));
            let (n, v) = pair.split_once('=').unwrap();
            assert!(n.starts_with("__Host-"), "{value}");
            for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
                assert!(
                    attrs.split("; ").any(|a| a.trim() == attr),
                    "{attr}: {value}"
                );
            }
            if v.is_empty() {
                self.0.remove(n);
            } else {
                self.0.insert(n.to_owned(), v.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn get(server: &Server, target: &str, jar: &mut Jar) -> Response {
    let cookie = jar.header();
    let cookie_line = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let res = server
        .send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{cookie_line}\r\n").as_bytes());
    jar.take(&res);
    res
}

pub fn post(server: &Server, path: &str, jar: &mut Jar, body: &str) -> Response {
    let cookie = jar.header();
    let cookie_line = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let res = server.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{cookie_line}Content-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    jar.take(&res);
    res
}

pub fn authorize_target(client: &str, redirect: &str, extra: &str) -> String {
    format!(
        "/oauth2/authorize?response_type=code&client_id={client}&redirect_uri={}\
         &scope=openid+orders%3Aread&state=st%2F1&nonce=n-1&code_challenge={CHALLENGE}\
         &code_challenge_method=S256{extra}",
        form_encode(redirect)
    )
}

/// The CSRF token in a page's form.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect(page) + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

pub fn login_body(csrf: &str, user: &str, password: &str) -> String {
    format!(
        "csrf={}&username={}&password={}",
        form_encode(csrf),
        form_encode(user),
        form_encode(password)
    )
}

/// The query parameters of a Location.
pub fn query_of(location: &str) -> BTreeMap<String, String> {
    let query = location.split_once('?').unwrap().1;
    query
        .split('&')
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap();
            (
                n.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned(),
            )
        })
        .collect()
}

pub fn issuer_of(server: &Server, jar: &mut Jar) -> String {
    let res = get(server, "/.well-known/oauth-authorization-server", jar);
    assert_eq!(res.status, 200);
    res.json()["issuer"].as_str().unwrap().to_owned()
}

/// Follow an authorization request (`target`) as `user`: the login page when there is no
/// session, then the consent page; returns the code sent back.
pub fn sign_in_code(
    server: &Server,
    jar: &mut Jar,
    target: &str,
    user: &str,
    password: &str,
) -> String {
    let page = get(server, target, jar);
    let html = page.text();
    let html = if html.contains("name=\"password\"") {
        let csrf = csrf_of(&html);
        post(
            server,
            "/oauth2/login",
            jar,
            &login_body(&csrf, user, password),
        )
        .text()
    } else {
        html
    };
    assert!(html.contains("value=\"allow\""), "no consent page: {html}");
    let csrf = csrf_of(&html);
    let back = post(
        server,
        "/oauth2/consent",
        jar,
        &format!("csrf={}&decision=allow", form_encode(&csrf)),
    );
    assert_eq!(back.status, 302, "{}", back.text());
    query_of(back.header("location").unwrap())["code"].clone()
}
