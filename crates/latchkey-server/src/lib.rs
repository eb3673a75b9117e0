#![forbid(unsafe_code)]
//! Latchkey's HTTP(S) front: the token endpoint, JWKS and discovery documents, TLS, request
//! limits, and the admin listener (health, readiness, metrics).
//!
//! The server never calls out on the request path: it reads the core `Issuer`'s snapshots.
//! (Issue 11: the one exception is a client assertion whose remote keys are stale or
//! unknown, see `remote_jwks`.)

pub mod admin;
pub mod app;
pub mod basic_auth;
pub mod client_assertion;
pub mod client_auth;
pub mod conditional;
pub mod cors;
pub mod discovery;
pub mod error;
pub mod file_read;
pub mod form;
pub mod metrics;
pub mod object_jwks;
pub mod remote_jwks;
pub mod response;
pub mod routes;
pub mod serve;
pub mod service_account;
pub mod sources;
pub mod striped;
pub mod throttle;
pub mod tls;
pub mod token_endpoint;
// Issue 11: whether a client's assertion sources resolve.
pub mod trust_check;
// Issue 13
pub mod endpoint_form;
pub mod introspect;
pub mod revoke;
// Issue 13: registration.
pub mod register;
// Issue 12: people sign in.
pub mod authorize_request;
pub mod sign_in;
pub mod sign_in_pages;
pub mod token_grants;
pub mod userinfo;

pub use app::{App, AppConfig};
pub use error::ServerError;
pub use metrics::Metrics;
pub use serve::{Bounds, Limits, serve, serve_shard};
