//! The public listener's routes.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response};
use latchkey_core::Issuer;

use crate::{
    Metrics, discovery,
    response::{self, Body},
    throttle::{Throttle, ThrottleConfig},
    token_endpoint,
};

/// Paths of the JWK Set: Latchkey's own, the well-known one, and APK 1.x's.
pub const JWKS_PATHS: [&str; 3] = ["/oauth2/jwks", "/.well-known/jwks.json", "/oauth2/keys"];
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The active key's X.509 certificate (PEM), for verifiers in certificate mode.
pub const CERTIFICATE_PATH: &str = "/oauth2/certificate";
pub const DISCOVERY_PATHS: [&str; 2] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
];

/// Settings of the public listener.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Base URL advertised in discovery (`https://idp.example.com`); `None`: from the request's
    /// Host and the listener's scheme.
    pub public_url: Option<String>,
    /// `https`, or `http` with `--plaintext`.
    pub scheme: &'static str,
    /// Largest accepted token request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
    /// How long verifiers may cache the JWKS (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// Guess throttling at the token endpoint.
    pub throttle: ThrottleConfig,
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
}

impl App {
    pub fn new(issuer: Arc<Issuer>, metrics: Arc<Metrics>, config: AppConfig) -> App {
        App {
            issuer,
            metrics,
            throttle: Throttle::new(config.throttle.clone()),
            config,
        }
    }

    /// Answer one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        let readable = matches!(*req.method(), Method::GET | Method::HEAD);
        if path == TOKEN_PATH {
            if req.method() == Method::POST {
                return token_endpoint::handle(self, req).await;
            }
            return response::method_not_allowed("POST");
        }
        if JWKS_PATHS.contains(&path) {
            return if readable {
                discovery::jwks(self, &req)
            } else {
                response::method_not_allowed("GET, HEAD")
            };
        }
        if path == CERTIFICATE_PATH {
            return if readable {
                discovery::certificate(self)
            } else {
                response::method_not_allowed("GET, HEAD")
            };
        }
        if DISCOVERY_PATHS.contains(&path) {
            return if readable {
                discovery::metadata(self, &req)
            } else {
                response::method_not_allowed("GET, HEAD")
            };
        }
        response::not_found()
    }
}
