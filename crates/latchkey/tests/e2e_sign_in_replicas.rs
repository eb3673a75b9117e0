//! Issue 12 on the real control plane (`make e2e`): two `latchkey run` replicas in one
//! namespace (one Lease) stand behind a Service, and every request of a sign-in may reach
//! either. Over HTTP: the login cookie sealed by one opens on the other (the session keys are
//! shared through their Secret), a code redeemed on one is refused on the other, refresh
//! rotation and reuse detection hold whichever replica each refresh reaches, and a User
//! disabled with kubectl gets no more refreshes from either within 5 s.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{cluster::*, sign_in_flow::*, *};

const REDIRECT: &str = "https://app.example.com/cb";

fn manifests(ns: &str, hash: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{ name: web, namespace: {ns} }}
stringData: {{ clientSecret: web-secret }}
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: {{ name: web, namespace: {ns} }}
spec:
  clientId: web
  secretRef: {{ name: web }}
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:*"]
  redirectUris: ["{REDIRECT}"]
---
apiVersion: v1
kind: Secret
metadata: {{ name: alice-password, namespace: {ns} }}
stringData: {{ passwordHash: "{hash}" }}
---
apiVersion: latchkey.dev/v1alpha1
kind: User
metadata: {{ name: alice, namespace: {ns} }}
spec:
  username: alice
  organizations: [org1]
  passwordRef: {{ name: alice-password }}
"#
    )
}

fn exchange(server: &Server, body: &str) -> Response {
    server.token(
        &[("Authorization", &basic("web", "web-secret")), FORM],
        body,
    )
}

fn redeem(server: &Server, code: &str) -> Response {
    exchange(
        server,
        &format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
            form_encode(code),
            form_encode(REDIRECT)
        ),
    )
}

fn refresh(server: &Server, token: &str) -> Response {
    exchange(
        server,
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            form_encode(token)
        ),
    )
}

fn refresh_token_of(res: &Response) -> String {
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["refresh_token"].as_str().unwrap().to_owned()
}

fn assert_invalid_grant(res: &Response, why: &str) {
    assert_eq!(res.status, 400, "{why}: {}", res.text());
    assert_eq!(res.json()["error"], "invalid_grant", "{why}");
}

/// A sign-in whose pages alternate between the replicas: the authorization request on
/// `first`, the login form on `second`, the consent form on `first` again.
fn code_across(first: &Server, second: &Server) -> String {
    let mut jar = Jar::default();
    let page = get(first, &authorize_target("web", REDIRECT, ""), &mut jar);
    assert_eq!(page.status, 200, "{}", page.text());
    let csrf = csrf_of(&page.text());
    let consent = post(
        second,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf, "alice", "alice-pw"),
    );
    assert_eq!(consent.status, 200, "{}", consent.text());
    let html = consent.text();
    assert!(html.contains("value=\"allow\""), "no consent page: {html}");
    let back = post(
        first,
        "/oauth2/consent",
        &mut jar,
        &format!("csrf={}&decision=allow", form_encode(&csrf_of(&html))),
    );
    assert_eq!(back.status, 302, "{}", back.text());
    let q = query_of(back.header("location").unwrap());
    assert_eq!(q["state"], "st/1");
    q["code"].clone()
}

#[test]
fn a_sign_in_holds_across_two_replicas_and_a_disabled_user_stops_refreshing_on_both() {
    install_crd();
    install_user_crd();
    let ns = Namespace::new("sign-in-replicas");
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&manifests(&ns.0, &hash_password("alice-pw"))),
    );
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_run(&ns.0, "replica-a", state_a.path(), &[]);
    let b = start_run(&ns.0, "replica-b", state_b.path(), &[]);
    wait_ready(&a);
    wait_ready(&b);
    let both_loaded = eventually(Duration::from_secs(30), || {
        [&a, &b].iter().all(|s| {
            s.metric("latchkey_users_loaded") == Some(1.0)
                && s.metric("latchkey_clients_loaded") == Some(1.0)
        })
    });
    assert!(
        both_loaded,
        "{:?} {:?}",
        a.metric("latchkey_users_loaded"),
        b.metric("latchkey_users_loaded")
    );
    let leaders = [&a, &b]
        .iter()
        .filter(|s| s.metric("latchkey_leader") == Some(1.0))
        .count();
    assert_eq!(leaders, 1, "one Lease, one leader");

    // A code redeemed through one replica is refused through the other, and that replay ends
    // the sign-in: the refresh token the first redemption gave is revoked too.
    let code = code_across(&a, &b);
    let first = refresh_token_of(&redeem(&b, &code));
    assert_invalid_grant(&redeem(&a, &code), "a code redeemed on the other replica");
    assert_invalid_grant(&refresh(&a, &first), "the replayed code revoked its family");

    // Rotation alternates between the replicas; the rotated first token, presented again on
    // the other replica, ends the whole family.
    let code = code_across(&b, &a);
    let r1 = refresh_token_of(&redeem(&a, &code));
    let r2 = refresh_token_of(&refresh(&b, &r1));
    let r3 = refresh_token_of(&refresh(&a, &r2));
    assert_ne!(r2, r3);
    assert_invalid_grant(&refresh(&b, &r1), "a rotated refresh token reused");
    assert_invalid_grant(&refresh(&a, &r3), "the family ended with the reuse");

    // Disabled with kubectl: neither replica refreshes within 5 s.
    let code = code_across(&a, &b);
    let mut current = refresh_token_of(&redeem(&a, &code));
    current = refresh_token_of(&refresh(&b, &current));
    disable_user(&ns.0, "alice");
    let disabled_at = Instant::now();
    // Refreshes alternate replicas until one is refused; each success rotates the token.
    let mut refused = None;
    for attempt in 0.. {
        let on = if attempt % 2 == 0 { &a } else { &b };
        let res = refresh(on, &current);
        if res.status == 200 {
            current = refresh_token_of(&res);
        } else {
            assert_invalid_grant(&res, "a disabled user's refresh");
            refused = Some(disabled_at.elapsed());
            break;
        }
        assert!(
            disabled_at.elapsed() < Duration::from_secs(5),
            "a disabled user still refreshes after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = refused.unwrap();
    // Both replicas have dropped the user by then (or within the same 5 s).
    assert!(eventually(
        Duration::from_secs(5).saturating_sub(refused),
        || [&a, &b]
            .iter()
            .all(|s| s.metric("latchkey_users_loaded") == Some(0.0))
    ));
    assert_invalid_grant(&refresh(&a, &current), "refused on a");
    assert_invalid_grant(&refresh(&b, &current), "refused on b");
    // And no new sign-in starts for it on either replica.
    let mut jar = Jar::default();
    let page = get(&b, &authorize_target("web", REDIRECT, ""), &mut jar);
    let res = post(
        &a,
        "/oauth2/login",
        &mut jar,
        &login_body(&csrf_of(&page.text()), "alice", "alice-pw"),
    );
    assert!(
        res.text().contains("Wrong username or password."),
        "{}",
        res.text()
    );
    println!("figure: a disabled User's refresh refused across two replicas after {refused:?}");
    for s in [&a, &b] {
        assert!(
            s.logs()
                .iter()
                .all(|l| !l.contains("alice-pw") && !l.contains(&current)),
            "a secret in the log"
        );
    }
    a.terminate();
    b.terminate();
}
