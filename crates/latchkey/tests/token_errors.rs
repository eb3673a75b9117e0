//! Every error answer of the token endpoint: status, `error`, and the headers that go with it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

const CLIENTS: &str = r#"
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: good }
spec: { clientId: good, secretRef: { name: creds, key: good } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: off }
spec: { clientId: off, disabled: true, secretRef: { name: creds, key: off } }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: nogrant }
spec: { clientId: nogrant, grantTypes: [], secretRef: { name: creds, key: nogrant } }
---
apiVersion: v1
kind: Secret
metadata: { name: creds }
stringData: { good: good-secret, off: off-secret, nogrant: nogrant-secret }
"#;

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    error: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
}

fn token_request(auth: Option<&str>, content_type: Option<&str>, body: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if let Some(c) = content_type {
        headers.push(("Content-Type", c));
    }
    post_token(&headers, body)
}

const FORM_TYPE: Option<&str> = Some("application/x-www-form-urlencoded");
const CHALLENGE: (&str, &str) = ("www-authenticate", "Basic realm=\"latchkey\"");
const NO_STORE: (&str, &str) = ("cache-control", "no-store");
const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn each_bad_request_gets_its_precise_error() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &["--clients", clients.to_str().unwrap()],
    );
    let good = basic("good", "good-secret");
    let cc = "grant_type=client_credentials";
    let cases = vec![
        Case {
            name: "unknown client",
            request: token_request(Some(&basic("nobody", "good-secret")), FORM_TYPE, cc),
            status: 401,
            error: Some("invalid_client"),
            headers: &[CHALLENGE, NO_STORE, JSON],
        },
        Case {
            name: "wrong secret",
            request: token_request(Some(&basic("good", "nope")), FORM_TYPE, cc),
            status: 401,
            error: Some("invalid_client"),
            headers: &[CHALLENGE, NO_STORE, JSON],
        },
        Case {
            name: "disabled client",
            request: token_request(Some(&basic("off", "off-secret")), FORM_TYPE, cc),
            status: 401,
            error: Some("invalid_client"),
            headers: &[CHALLENGE, NO_STORE, JSON],
        },
        Case {
            name: "no client authentication",
            request: token_request(None, FORM_TYPE, cc),
            status: 400,
            error: Some("invalid_client"),
            headers: &[NO_STORE],
        },
        Case {
            name: "bearer instead of basic",
            request: token_request(Some("Bearer abc"), FORM_TYPE, cc),
            status: 401,
            error: Some("invalid_client"),
            headers: &[CHALLENGE],
        },
        Case {
            name: "client_id without secret",
            request: token_request(
                None,
                FORM_TYPE,
                "grant_type=client_credentials&client_id=good",
            ),
            status: 400,
            error: Some("invalid_client"),
            headers: &[NO_STORE],
        },
        Case {
            name: "unknown client by client_secret_post",
            request: token_request(
                None,
                FORM_TYPE,
                "grant_type=client_credentials&client_id=nobody&client_secret=x",
            ),
            status: 400,
            error: Some("invalid_client"),
            headers: &[NO_STORE, JSON],
        },
        Case {
            name: "grant not allowed for client",
            request: token_request(Some(&basic("nogrant", "nogrant-secret")), FORM_TYPE, cc),
            status: 400,
            error: Some("unauthorized_client"),
            headers: &[NO_STORE, JSON],
        },
        Case {
            name: "unknown grant",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=password&username=a&password=b",
            ),
            status: 400,
            error: Some("unsupported_grant_type"),
            headers: &[NO_STORE],
        },
        Case {
            name: "scope not allowed",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=client_credentials&scope=admin",
            ),
            status: 400,
            error: Some("invalid_scope"),
            headers: &[NO_STORE],
        },
        Case {
            name: "missing grant_type",
            request: token_request(Some(&good), FORM_TYPE, "scope=default"),
            status: 400,
            error: Some("invalid_request"),
            headers: &[NO_STORE],
        },
        Case {
            name: "empty grant_type",
            request: token_request(Some(&good), FORM_TYPE, "grant_type="),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "repeated grant_type",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=client_credentials&grant_type=client_credentials",
            ),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "repeated scope",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=client_credentials&scope=default&scope=default",
            ),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "basic and client_secret at once",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=client_credentials&client_id=good&client_secret=good-secret",
            ),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "malformed body",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                "grant_type=client%ff%fe_credentials",
            ),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "wrong content type",
            request: token_request(
                Some(&good),
                Some("application/json"),
                r#"{"grant_type":"client_credentials"}"#,
            ),
            status: 400,
            error: Some("invalid_request"),
            headers: &[NO_STORE],
        },
        Case {
            name: "missing content type",
            request: token_request(Some(&good), None, cc),
            status: 400,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "body over 16 KiB",
            request: token_request(
                Some(&good),
                FORM_TYPE,
                &format!("{cc}&pad={}", "x".repeat(16 * 1024)),
            ),
            status: 413,
            error: Some("invalid_request"),
            headers: &[],
        },
        Case {
            name: "GET on the token endpoint",
            request: b"GET /oauth2/token HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            status: 405,
            error: None,
            headers: &[("allow", "POST, OPTIONS")],
        },
        Case {
            name: "PUT on the token endpoint",
            request: b"PUT /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            status: 405,
            error: None,
            headers: &[("allow", "POST, OPTIONS")],
        },
        Case {
            name: "POST on the JWKS",
            request: b"POST /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            status: 405,
            error: None,
            headers: &[("allow", "GET, HEAD, OPTIONS")],
        },
        Case {
            name: "DELETE on discovery",
            request:
                b"DELETE /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: localhost\r\n\r\n"
                    .to_vec(),
            status: 405,
            error: None,
            headers: &[("allow", "GET, HEAD, OPTIONS")],
        },
        Case {
            name: "unknown path",
            request: b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            status: 404,
            error: None,
            headers: &[],
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let res = server.send(&case.request);
        let mut problems = Vec::new();
        if res.status != case.status {
            problems.push(format!("status {} (want {})", res.status, case.status));
        }
        // A challenge goes with a 401 and only with it (RFC 9110 §15.5.2).
        if (res.status == 401) != res.header("www-authenticate").is_some() {
            problems.push(format!(
                "status {} with www-authenticate {:?}",
                res.status,
                res.header("www-authenticate")
            ));
        }
        if let Some(error) = case.error {
            let body = res.json();
            if body["error"] != error {
                problems.push(format!("error {} (want {error})", body["error"]));
            }
            if !body["error_description"].is_string() {
                problems.push("no error_description".into());
            }
        }
        for (name, value) in case.headers {
            if res.header(name) != Some(value) {
                problems.push(format!(
                    "header {name}: {:?} (want {value:?})",
                    res.header(name)
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} — body {}",
                case.name,
                problems.join(", "),
                res.text()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn unknown_client_wrong_secret_and_disabled_are_indistinguishable() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.yaml");
    std::fs::write(&clients, CLIENTS).unwrap();
    let server = Server::start(
        &dir.path().join("state"),
        &["--clients", clients.to_str().unwrap()],
    );
    let answers: Vec<_> = [
        basic("nobody", "x"),
        basic("good", "x"),
        basic("off", "off-secret"),
    ]
    .iter()
    .map(|auth| {
        let res = server.token(
            &[("Authorization", auth), FORM],
            "grant_type=client_credentials",
        );
        let headers: Vec<_> = res
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect();
        (res.status, headers, res.body)
    })
    .collect();
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);

    // The same three by client_secret_post: one 400 without a challenge.
    let answers: Vec<_> = [("nobody", "x"), ("good", "x"), ("off", "off-secret")]
        .iter()
        .map(|(id, secret)| {
            let res = server.token(
                &[FORM],
                &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
            );
            let headers: Vec<_> = res
                .headers
                .iter()
                .filter(|(n, _)| n != "date")
                .cloned()
                .collect();
            (res.status, headers, res.body)
        })
        .collect();
    assert_eq!(answers[0].0, 400);
    assert!(!answers[0].1.iter().any(|(n, _)| n == "www-authenticate"));
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

#[test]
fn error_descriptions_stay_within_the_rfc_6749_charset_and_never_echo_input() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    for body in [
        "grant_type=client_credentials&scope=%22caf%C3%A9%22",
        "grant_type=client_credentials&scope=a%5Cb",
        "grant_type=client_credentials&scope=%7F",
        "grant_type=caf%C3%A9",
        "grant_type=client_credentials&scope=orders%3Awrite",
    ] {
        let res = server.token(&[("Authorization", SEED_AUTH), FORM], body);
        assert_eq!(res.status, 400, "{body}");
        let d = res.json()["error_description"].as_str().unwrap().to_owned();
        assert!(
            d.bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
            "{body}: {d:?}"
        );
        assert!(!d.contains("caf"), "{body}: echoes input: {d:?}");
    }
}
