//! The public listener's routes.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, header};
use latchkey_core::Issuer;

use crate::{
    Metrics,
    cors::{self, Policy},
    discovery,
    response::{self, Body},
    routes::{CERTIFICATE_PATH, JWKS_PATHS, TOKEN_PATH, metadata_paths},
    throttle::{Throttle, ThrottleConfig},
    token_endpoint,
};

/// Settings of the public listener.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Base URL advertised in discovery (`https://idp.example.com`); `None`: from the request's
    /// Host and the listener's scheme (then the metadata is not shared-cacheable).
    pub public_url: Option<String>,
    /// `https`, or `http` with `--plaintext`.
    pub scheme: &'static str,
    /// Largest accepted token request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
    /// How long verifiers may cache the JWKS, the certificate and the metadata
    /// (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// Guess throttling at the token endpoint.
    pub throttle: ThrottleConfig,
    /// Origins whose pages may call the token endpoint (CORS); empty: none.
    pub cors_origins: Vec<String>,
    // Issue 11: client authentication by assertion.
    /// How client assertions are accepted.
    pub assertion: crate::client_assertion::AssertionConfig,
    /// Issue 13: who may register clients, and how often a source may call.
    pub registration: crate::register::RegistrationConfig,
    /// Issue 12: failed-login budgets (per source, per username, per pair).
    pub login_throttle: ThrottleConfig,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            public_url: None,
            scheme: "https",
            max_body_bytes: 16 * 1024,
            body_timeout: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(300),
            throttle: ThrottleConfig::default(),
            cors_origins: Vec::new(),
            // Issue 11: client authentication by assertion.
            assertion: crate::client_assertion::AssertionConfig::default(),
            registration: Default::default(),
            login_throttle: crate::sign_in::login_throttle_config(),
        }
    }
}

/// The token service: live state, metrics and settings.
#[derive(Debug)]
pub struct App {
    pub issuer: Arc<Issuer>,
    pub metrics: Arc<Metrics>,
    pub config: AppConfig,
    /// Failed-authentication budgets of this replica.
    pub throttle: Throttle,
    /// Where the metadata is served, derived once from the issuer.
    metadata_paths: Vec<String>,
    // Issue 11: client authentication by assertion.
    /// The assertion verifier; `None` if its HTTPS client could not be built (logged once;
    /// assertions are then refused).
    pub assertions: Option<crate::client_assertion::Assertions>,
    /// The cluster's ServiceAccount issuer, once `latchkey run` has discovered it.
    pub service_accounts: std::sync::OnceLock<crate::service_account::ServiceAccounts>,
    /// Reads client JWK Sets from Secrets and ConfigMaps (`jwksFrom`), in `latchkey run`.
    pub object_jwks: std::sync::OnceLock<crate::object_jwks::ObjectJwks>,
    // Issue 13
    /// Introspection's verifiers and the revocation list snapshot (the drivers swap it).
    pub introspector: Arc<latchkey_core::introspection::Introspector>,
    /// Where revocations are recorded (set by the run mode at start).
    pub revoker: crate::revoke::RevokerSlot,
    // Issue 13: registration.
    /// Where registrations are kept (set by the run mode when registration is enabled).
    pub registrar: crate::register::RegistrarSlot,
    /// Registration requests per source.
    pub registration_limit: crate::register::RateLimit,
    // Issue 12: people sign in.
    /// Users, session keys and the grant store (set by the run mode at start).
    pub sign_in: crate::sign_in::SignInSlot,
    /// Failed-login budgets of this replica: per source, per username, per pair.
    pub login_throttle: Throttle,
}

/// A public document's handler.
type Document<B> = fn(&App, &Request<B>) -> Response<Body>;

/// What `Allow` says for each kind of resource.
const READ_ALLOW: &str = "GET, HEAD, OPTIONS";
const TOKEN_ALLOW: &str = "POST, OPTIONS";

impl App {
    pub fn new(issuer: Arc<Issuer>, metrics: Arc<Metrics>, config: AppConfig) -> App {
        let mut metadata_paths = metadata_paths(&issuer.settings().issuer);
        // Issue 12: the same document is the OpenID configuration.
        metadata_paths.extend(crate::routes::openid_configuration_paths(
            &issuer.settings().issuer,
        ));
        // Issue 11: client authentication by assertion.
        let assertions = crate::client_assertion::Assertions::new(
            &config.assertion,
            &issuer.settings().issuer,
            config.public_url.as_deref(),
        )
        .inspect_err(|e| tracing::error!(error = %e, "client assertions are unavailable"))
        .ok();
        let login_throttle = Throttle::new(config.login_throttle.clone());
        App {
            issuer,
            metrics,
            throttle: Throttle::new(config.throttle.clone()),
            config,
            metadata_paths,
            // Issue 11: client authentication by assertion.
            assertions,
            service_accounts: std::sync::OnceLock::new(),
            object_jwks: std::sync::OnceLock::new(),
            introspector: Arc::default(),
            revoker: Default::default(),
            registrar: Default::default(),
            registration_limit: Default::default(),
            // Issue 12
            sign_in: Default::default(),
            login_throttle,
        }
    }

    /// Answer one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        if path == TOKEN_PATH {
            let policy = Policy::Origins(&self.config.cors_origins);
            // Only the Origin header outlives the request, and only when CORS is configured.
            let origin = (!self.config.cors_origins.is_empty())
                .then(|| req.headers().get(header::ORIGIN).cloned())
                .flatten();
            let mut res = match *req.method() {
                Method::POST => token_endpoint::handle(self, req).await,
                Method::OPTIONS => {
                    return cors::options(
                        policy,
                        req.headers(),
                        TOKEN_ALLOW,
                        "Authorization, Content-Type",
                    );
                }
                _ => response::method_not_allowed(TOKEN_ALLOW),
            };
            cors::decorate(policy, origin.as_ref(), &mut res);
            return res;
        }
        // Issue 13: endpoints for clients' servers, not for pages (no CORS).
        if path == crate::routes::INTROSPECTION_PATH {
            return match *req.method() {
                Method::POST => crate::introspect::handle(self, req).await,
                _ => response::method_not_allowed("POST"),
            };
        }
        if path == crate::routes::REVOCATION_PATH {
            return match *req.method() {
                Method::POST => crate::revoke::handle(self, req).await,
                _ => response::method_not_allowed("POST"),
            };
        }
        // Issue 13: registration, for clients' servers and tools (no CORS).
        if let Some(id) = crate::register::route(path) {
            let id = id.map(str::to_owned);
            return crate::register::handle(self, req, id.as_deref()).await;
        }
        // Issue 12: pages for people (no CORS: browsers navigate here, scripts do not).
        if path == crate::routes::AUTHORIZE_PATH {
            return match *req.method() {
                Method::GET => crate::sign_in::authorize(self, req).await,
                _ => response::method_not_allowed("GET"),
            };
        }
        if path == crate::routes::LOGIN_PATH {
            return match *req.method() {
                Method::POST => crate::sign_in::login(self, req).await,
                _ => response::method_not_allowed("POST"),
            };
        }
        if path == crate::routes::LOGOUT_PATH {
            return match *req.method() {
                Method::GET => crate::sign_in::logout(self, &req),
                _ => response::method_not_allowed("GET"),
            };
        }
        if path == crate::routes::USERINFO_PATH {
            return match *req.method() {
                Method::GET | Method::POST => crate::userinfo::handle(self, req.headers()),
                _ => response::method_not_allowed("GET, POST"),
            };
        }
        if path == crate::routes::CONSENT_PATH {
            return match *req.method() {
                Method::POST => crate::sign_in::consent(self, req).await,
                _ => response::method_not_allowed("POST"),
            };
        }
        let public: Option<Document<B>> = if JWKS_PATHS.contains(&path) {
            Some(discovery::jwks)
        } else if path == CERTIFICATE_PATH {
            Some(discovery::certificate)
        } else if self.metadata_paths.iter().any(|p| p == path) {
            Some(discovery::metadata)
        } else {
            None
        };
        let Some(document) = public else {
            return response::not_found();
        };
        let mut res = match *req.method() {
            Method::GET | Method::HEAD => document(self, &req),
            Method::OPTIONS => {
                return cors::options(Policy::Public, req.headers(), READ_ALLOW, "*");
            }
            _ => response::method_not_allowed(READ_ALLOW),
        };
        cors::decorate(Policy::Public, None, &mut res);
        res
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, Full};
    use latchkey_core::{
        ClientRecord, ClientSpec, GrantType, KeyMaterial, KeySet, Registry, SigningAlgorithm,
        SigningKey, TokenSettings, oauth::is_description_byte,
    };

    fn client(id: &str, secret: &str) -> ClientSpec {
        ClientSpec {
            client_id: id.into(),
            secret: latchkey_core::SecretDigest::of_secret(secret.as_bytes()).unwrap(),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["apk:*".into()],
            default_scopes: vec!["default".into()],
            origin: "test".into(),
            ..ClientSpec::default()
        }
    }

    fn app(with_keys: bool) -> App {
        let mut off = client("off", "pw");
        off.disabled = true;
        let mut nogrant = client("nogrant", "pw");
        nogrant.grant_types.clear();
        let registry = Registry::new(
            [client("a b:c", "pw"), off, nogrant].map(|s| ClientRecord::new(s).unwrap()),
        )
        .unwrap();
        let key = SigningKey::new(
            "k",
            &KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap(),
        )
        .unwrap();
        let issuer = Issuer::new(
            TokenSettings::default(),
            registry,
            with_keys.then(|| KeySet::single(key)),
        );
        App::new(
            Arc::new(issuer),
            Arc::new(Metrics::new()),
            AppConfig {
                cors_origins: vec!["https://app.example".into()],
                ..AppConfig::default()
            },
        )
    }

    fn request(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(path);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
    }

    async fn answer(app: &App, req: Request<Full<Bytes>>) -> (u16, HeaderMapLite, Vec<u8>) {
        let res = app.handle(req).await;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, body)
    }

    type HeaderMapLite = Vec<(String, String)>;

    fn basic(raw: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    /// The description of an error body, checked to be within RFC 6749 §5.2's charset.
    fn check_description(what: &str, body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let d = v["error_description"].as_str()?.to_owned();
        assert!(
            d.bytes().all(is_description_byte),
            "{what}: error_description {d:?} leaves the RFC 6749 charset"
        );
        Some(d)
    }

    /// Every error branch of the public listener, driven by a request, with input meant to be
    /// echoed: no description leaves the charset or repeats raw input.
    #[tokio::test]
    async fn every_error_description_is_within_the_charset() {
        let with_keys = app(true);
        let without_keys = app(false);
        let cc = b"grant_type=client_credentials";
        let ok = basic("a+b%3Ac:pw");
        let big = vec![b'a'; 20 * 1024];
        let cases: Vec<(&str, &App, Request<Full<Bytes>>)> = vec![
            (
                "no content type",
                &with_keys,
                request("POST", TOKEN_PATH, &[], cc),
            ),
            (
                "json",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[("content-type", "application/json\"x")],
                    cc,
                ),
            ),
            (
                "too large",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM], &big),
            ),
            (
                "not utf-8",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM], b"grant_type=\xff\""),
            ),
            (
                "bad escape",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM], b"grant_type=%zz"),
            ),
            (
                "repeated",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM], b"scope=a&scope=b"),
            ),
            ("two authorizations", &with_keys, {
                let mut r = request("POST", TOKEN_PATH, &[FORM, ("authorization", &ok)], cc);
                r.headers_mut().append("authorization", ok.parse().unwrap());
                r
            }),
            (
                "bearer",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", "Bearer \"x\"")],
                    cc,
                ),
            ),
            (
                "bad base64",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", "Basic \"x")],
                    cc,
                ),
            ),
            (
                "no colon",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("caf\u{e9}\""))],
                    cc,
                ),
            ),
            (
                "bad escape in basic",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("%zz:x"))],
                    cc,
                ),
            ),
            (
                "basic and secret",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=client_credentials&client_secret=x",
                ),
            ),
            (
                "id mismatch",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=client_credentials&client_id=%22caf%C3%A9",
                ),
            ),
            (
                "secret without id",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM],
                    b"grant_type=client_credentials&client_secret=x",
                ),
            ),
            (
                "id without secret",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM],
                    b"grant_type=client_credentials&client_id=%22",
                ),
            ),
            (
                "nothing",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM], cc),
            ),
            (
                "no grant type",
                &with_keys,
                request("POST", TOKEN_PATH, &[FORM, ("authorization", &ok)], b""),
            ),
            (
                "odd grant type",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=%22caf%C3%A9%7F",
                ),
            ),
            (
                "unknown client",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("%22caf%C3%A9:pw"))],
                    cc,
                ),
            ),
            (
                "wrong secret",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("a+b%3Ac:no"))],
                    cc,
                ),
            ),
            (
                "disabled",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("off:pw"))],
                    cc,
                ),
            ),
            (
                "grant not allowed",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &basic("nogrant:pw"))],
                    cc,
                ),
            ),
            (
                "malformed scope",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=client_credentials&scope=%22caf%C3%A9%22%5C",
                ),
            ),
            (
                "scope not allowed",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=client_credentials&scope=orders%3Awrite",
                ),
            ),
            (
                "double space",
                &with_keys,
                request(
                    "POST",
                    TOKEN_PATH,
                    &[FORM, ("authorization", &ok)],
                    b"grant_type=client_credentials&scope=a++b",
                ),
            ),
            (
                "no keys",
                &without_keys,
                request("POST", TOKEN_PATH, &[FORM, ("authorization", &ok)], cc),
            ),
            (
                "GET token",
                &with_keys,
                request("GET", TOKEN_PATH, &[], b""),
            ),
            (
                "POST jwks",
                &with_keys,
                request("POST", JWKS_PATHS[0], &[], b""),
            ),
            (
                "unknown path",
                &with_keys,
                request("GET", "/caf%C3%A9%22", &[], b""),
            ),
            (
                "no certificate",
                &with_keys,
                request("GET", CERTIFICATE_PATH, &[], b""),
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (what, app, req) in cases {
            let (status, _, body) = answer(app, req).await;
            let d = check_description(what, &body)
                .unwrap_or_else(|| panic!("{what}: {status} without a description"));
            assert!(
                !d.contains("caf") && !d.contains("zz"),
                "{what}: echoes input: {d}"
            );
            seen.insert(d);
        }
        assert!(seen.len() >= 20, "{seen:#?}");
    }

    /// A small deterministic generator of arbitrary bytes.
    struct Arbitrary(u64);

    impl Arbitrary {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Up to `max` bytes drawn mostly from the form's own alphabet, so that they reach
        /// deep branches, with any byte mixed in.
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            const PIECES: &[&[u8]] = &[
                b"grant_type=",
                b"client_credentials",
                b"client_id=",
                b"client_secret=",
                b"scope=",
                b"&",
                b"=",
                b"%",
                b"%22",
                b"%C3%A9",
                b"%7F",
                b"+",
                b"a",
                b":",
                b"*",
                b"\"",
                b"\\",
                b"pw",
                b"off",
                b"a+b%3Ac",
            ];
            let n = (self.next() % (max as u64 + 1)) as usize;
            let mut out = Vec::new();
            while out.len() < n {
                let r = self.next();
                if r.is_multiple_of(5) {
                    out.push((r >> 8) as u8);
                } else {
                    out.extend_from_slice(PIECES[(r >> 8) as usize % PIECES.len()]);
                }
            }
            out
        }
    }

    #[tokio::test]
    async fn property_arbitrary_requests_keep_descriptions_within_the_charset() {
        let app = app(true);
        let mut arb = Arbitrary(0x9e37_79b9_7f4a_7c15);
        for i in 0..3000 {
            let body = arb.bytes(120);
            let auth = arb.bytes(40);
            let mut headers: Vec<(&str, String)> = vec![("content-type", FORM.1.into())];
            match i % 3 {
                0 => headers.push(("authorization", basic(&String::from_utf8_lossy(&auth)))),
                1 => headers.push((
                    "authorization",
                    format!(
                        "Basic {}",
                        String::from_utf8_lossy(&auth).replace(['\r', '\n'], "")
                    ),
                )),
                _ => {}
            }
            let mut req = request("POST", TOKEN_PATH, &[], &body);
            for (n, v) in &headers {
                if let Ok(v) = http::HeaderValue::from_str(v) {
                    req.headers_mut().insert(*n, v);
                }
            }
            let (status, _, body_out) = answer(&app, req).await;
            if status != 200 {
                check_description(&format!("{body:?}"), &body_out)
                    .unwrap_or_else(|| panic!("{status} without a description"));
            }
        }
    }

    #[tokio::test]
    async fn invalid_client_answers_are_identical_within_each_method() {
        let app = app(true);
        let strip = |(s, h, b): (u16, HeaderMapLite, Vec<u8>)| (s, h, b);
        let mut basic_answers = Vec::new();
        for creds in ["nobody:pw", "a+b%3Ac:no", "off:pw"] {
            let req = request(
                "POST",
                TOKEN_PATH,
                &[FORM, ("authorization", &basic(creds))],
                b"grant_type=client_credentials",
            );
            basic_answers.push(strip(answer(&app, req).await));
        }
        assert_eq!(basic_answers[0].0, 401);
        assert!(basic_answers.windows(2).all(|w| w[0] == w[1]));
        let mut post_answers = Vec::new();
        for form in [
            "client_id=nobody&client_secret=pw",
            "client_id=a+b%3Ac&client_secret=no",
            "client_id=off&client_secret=pw",
        ] {
            let body = format!("grant_type=client_credentials&{form}");
            let req = request("POST", TOKEN_PATH, &[FORM], body.as_bytes());
            post_answers.push(strip(answer(&app, req).await));
        }
        assert_eq!(post_answers[0].0, 400);
        assert!(
            !post_answers[0]
                .1
                .iter()
                .any(|(n, _)| n == "www-authenticate")
        );
        assert!(post_answers.windows(2).all(|w| w[0] == w[1]));
        // A client id with a space and ':' works by both methods.
        let req = request(
            "POST",
            TOKEN_PATH,
            &[FORM, ("authorization", &basic("a+b%3Ac:pw"))],
            b"grant_type=client_credentials",
        );
        assert_eq!(answer(&app, req).await.0, 200);
        let req = request(
            "POST",
            TOKEN_PATH,
            &[FORM],
            b"grant_type=client_credentials&client_id=a+b%3Ac&client_secret=pw",
        );
        assert_eq!(answer(&app, req).await.0, 200);
    }

    #[tokio::test]
    async fn metadata_is_served_where_rfc_8414_and_openid_discovery_put_it() {
        let app = app(true);
        for path in [
            "/.well-known/oauth-authorization-server/token",
            "/.well-known/oauth-authorization-server",
            // Issue 12: OpenID Connect Discovery, after the issuer's path and at the root.
            "/token/.well-known/openid-configuration",
            "/.well-known/openid-configuration",
        ] {
            let (status, headers, body) = answer(
                &app,
                request("GET", path, &[("host", "idp.local:9095")], b""),
            )
            .await;
            assert_eq!(status, 200, "{path}");
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(doc["issuer"], "https://idp.am.wso2.com/token");
            assert_eq!(doc["token_endpoint"], "https://idp.local:9095/oauth2/token");
            let header = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(header("vary"), Some("Host"));
            assert_eq!(header("cache-control"), Some("private, max-age=300"));
            assert_eq!(header("access-control-allow-origin"), Some("*"));
        }
        let (_, _, body) = answer(
            &app,
            request(
                "GET",
                "/.well-known/openid-configuration",
                &[("host", "idp.local:9095")],
                b"",
            ),
        )
        .await;
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc["authorization_endpoint"],
            "https://idp.local:9095/oauth2/authorize"
        );
        assert_eq!(
            doc["userinfo_endpoint"],
            "https://idp.local:9095/oauth2/userinfo"
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["subject_types_supported"],
            serde_json::json!(["public"])
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert!(doc["id_token_signing_alg_values_supported"][0].is_string());
        assert_eq!(
            answer(
                &app,
                request("GET", "/token/.well-known/openid-configurationx", &[], b"")
            )
            .await
            .0,
            404
        );
    }

    #[tokio::test]
    async fn cors_preflight_for_public_documents_and_configured_token_origins() {
        let app = app(true);
        let pre = |path: &str, origin: &str, method: &str| {
            request(
                "OPTIONS",
                path,
                &[
                    ("origin", origin),
                    ("access-control-request-method", method),
                ],
                b"",
            )
        };
        let allow_origin = |h: &HeaderMapLite| {
            h.iter()
                .find(|(n, _)| n == "access-control-allow-origin")
                .map(|(_, v)| v.clone())
        };
        let (s, h, _) = answer(&app, pre(JWKS_PATHS[0], "https://x.example", "GET")).await;
        assert_eq!((s, allow_origin(&h).as_deref()), (204, Some("*")));
        let (_, h, _) = answer(&app, pre(TOKEN_PATH, "https://x.example", "POST")).await;
        assert_eq!(allow_origin(&h), None);
        let (_, h, _) = answer(&app, pre(TOKEN_PATH, "https://app.example", "POST")).await;
        assert_eq!(allow_origin(&h).as_deref(), Some("https://app.example"));
        let (_, h, _) = answer(
            &app,
            request(
                "POST",
                TOKEN_PATH,
                &[
                    FORM,
                    ("origin", "https://app.example"),
                    ("authorization", &basic("a+b%3Ac:pw")),
                ],
                b"grant_type=client_credentials",
            ),
        )
        .await;
        assert_eq!(allow_origin(&h).as_deref(), Some("https://app.example"));
    }
}
