//! APK's router keeps a fetched JWKS for a fixed 2 h, whatever its `Cache-Control`, and never
//! refetches when a token names a kid it lacks. A verifier that behaves the same way, with the
//! 2 h scaled down to 10 s, checks every token Latchkey issues across several rotations:
//! with `--verifier-cache` covering that cache nothing fails; with the lead derived from the
//! max-age alone (the default) tokens of each new key fail until the copy expires.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// APK's 2 h, scaled down.
const ROUTER_CACHE: Duration = Duration::from_secs(10);
/// How long the test issues and verifies tokens: several rotations of the slower server.
const RUN: Duration = Duration::from_secs(45);

/// Fetches the JWKS on first use, keeps it for a fixed time from the moment the answer
/// arrived, and answers from that copy only, as Envoy's `jwt_authn` does with
/// `RemoteJwks { cache_duration: 2h }` and no `refetch_jwks_on_kid_mismatch`.
struct ApkRouter {
    cache: Duration,
    held: Option<(Instant, serde_json::Value)>,
    fetches: u32,
}

impl ApkRouter {
    fn new(cache: Duration) -> ApkRouter {
        ApkRouter {
            cache,
            held: None,
            fetches: 0,
        }
    }

    fn jwks(&mut self, server: &Server) -> &serde_json::Value {
        let fresh = self
            .held
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.cache);
        if !fresh {
            let res = server.send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_eq!(res.status, 200, "{}", res.text());
            self.held = Some((Instant::now(), res.json()));
            self.fetches += 1;
        }
        &self.held.as_ref().unwrap().1
    }

    /// Whether the token verifies against the copy held; an unknown kid is a failure.
    fn accepts(&mut self, server: &Server, token: &str) -> bool {
        let jwks = self.jwks(server);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let Some(jwk) = header.kid.as_deref().and_then(|kid| set.find(kid)) else {
            return false;
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&["https://idp.am.wso2.com/token"]);
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).is_ok()
    }
}

/// One server and the router in front of it, with what they saw.
struct Run {
    server: Server,
    router: ApkRouter,
    kids: BTreeSet<String>,
    tokens: u32,
    failures: u32,
}

impl Run {
    fn start(state_dir: &std::path::Path, verifier_cache: Option<&str>) -> Run {
        // Short periods so that several rotations fit in the run; ES256 keeps key generation
        // cheap on a loaded machine (the timing rule is the same for RS256).
        let mut flags = vec![
            "--kid-strategy",
            "thumbprint",
            "--key-alg",
            "ES256",
            "--rotation-period",
            "4s",
            "--jwks-max-age",
            "1s",
        ];
        if let Some(cache) = verifier_cache {
            flags.extend(["--verifier-cache", cache]);
        }
        Run {
            server: Server::start(state_dir, &flags),
            router: ApkRouter::new(ROUTER_CACHE),
            kids: BTreeSet::new(),
            tokens: 0,
            failures: 0,
        }
    }

    fn step(&mut self) {
        let token = self.server.seed_token();
        let kid = jwt_parts(&token).0["kid"].as_str().unwrap().to_owned();
        self.tokens += 1;
        if !self.router.accepts(&self.server, &token) {
            self.failures += 1;
        }
        self.kids.insert(kid);
    }
}

fn keys_list(state_dir: &std::path::Path) -> String {
    // No --verifier-cache here: the lead shown is the one the server stored with the key.
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "keys",
            "list",
            "--kid-strategy",
            "thumbprint",
            "--key-alg",
            "ES256",
        ])
        .args(["--rotation-period", "4s", "--jwks-max-age", "1s"])
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn an_apk_like_router_accepts_every_token_across_rotations_only_with_the_verifier_cache_set() {
    let dir = tempfile::tempdir().unwrap();
    // The cache plus a margin, as the chart does with 2 h + 10 min. Latchkey's schedule runs in
    // whole seconds (a key's times are truncated, its tick is 1 s), so at this scale the margin
    // is 3 s rather than a twelfth of the cache.
    let mut covered = Run::start(&dir.path().join("covered"), Some("13s"));
    // Today's default lead: two max-ages (2 s), far below the router's 10 s.
    let mut default = Run::start(&dir.path().join("default"), None);

    let mut listing = None;
    let started = Instant::now();
    while started.elapsed() < RUN {
        covered.step();
        default.step();
        if listing.is_none() && covered.server.metric(NEXT_ACTIVATION).unwrap_or(0.0) > 0.0 {
            listing = Some(keys_list(&dir.path().join("covered")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let report = |name: &str, r: &Run| {
        format!(
            "{name}: {} tokens, {} failures, {} keys signed, {} JWKS fetches",
            r.tokens,
            r.failures,
            r.kids.len(),
            r.router.fetches
        )
    };
    println!("{}", report("verifier cache 13s", &covered));
    println!("{}", report("default lead 2s", &default));

    // Several rotations happened on both servers within the run.
    assert!(covered.kids.len() >= 3, "{}", report("covered", &covered));
    assert!(default.kids.len() >= 3, "{}", report("default", &default));
    assert_eq!(covered.failures, 0, "{}", report("covered", &covered));
    assert!(
        default.failures > 0,
        "the default lead should fail an APK-like router: {}",
        report("default", &default)
    );

    // `keys list` and the metrics show when the next key signs: 13 s after it was published.
    let listing = listing.expect("a next key was published");
    assert!(
        listing.contains("signs from:") && listing.contains("(13s after it was published)"),
        "{listing}"
    );
    assert!(
        covered.server.metric(NEXT_ACTIVATION).is_some(),
        "no {NEXT_ACTIVATION} gauge"
    );
}

/// A revoke replaces the active key at once: a router holding an older copy rejects the new
/// key's tokens until it refetches (a restarted one accepts them), and both `keys revoke` and
/// the standalone server warn about it.
#[test]
fn a_revoke_warns_that_caching_verifiers_reject_the_replacement_until_they_refetch() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--kid-strategy",
        "thumbprint",
        "--key-alg",
        "ES256",
        "--jwks-max-age",
        "1s",
    ];
    let server = Server::start(dir.path(), &flags);
    let mut router = ApkRouter::new(ROUTER_CACHE);
    let first = server.seed_token();
    assert!(router.accepts(&server, &first));
    let old = jwt_parts(&first).0["kid"].as_str().unwrap().to_owned();

    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["keys", "revoke", &old])
        .args(flags)
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: key {old} revoked"))
            && stderr.contains("APK's router keeps the JWKS for up to 2h")
            && stderr.contains("restart its router pods"),
        "{stderr}"
    );

    let mut token = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            token = server.seed_token();
            jwt_parts(&token).0["kid"] != old.as_str()
        }),
        "the replacement never signed"
    );
    assert!(
        !router.accepts(&server, &token),
        "a router holding the older copy cannot know the replacement"
    );
    assert!(
        ApkRouter::new(ROUTER_CACHE).accepts(&server, &token),
        "a restarted router fetches the replacement"
    );
    assert!(
        server.wait_for_log("signing key revoked", Duration::from_secs(5)),
        "{:?}",
        server.logs()
    );
    let line = server
        .logs()
        .into_iter()
        .find(|l| l.contains("signing key revoked"))
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["kid"], old.as_str(), "{line}");
}

const NEXT_ACTIVATION: &str = "latchkey_signing_key_next_activation_timestamp_seconds";
