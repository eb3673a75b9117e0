#![forbid(unsafe_code)]
//! The `OAuthClient` custom resource (`latchkey.dev/v1alpha1`): its types, the rules a spec
//! must follow, and its conversion into a core client record.
//!
//! The same types are read from the Kubernetes API (operator) and from YAML files
//! (standalone), so one set of manifests serves both modes.

pub mod assertion_spec;
// Issue 12: public clients.
pub mod auth_method;
pub mod convert;
pub mod crd;
pub mod duration;
pub mod error;
pub mod registration;
pub mod resolve;
pub mod rules;
pub mod secret_data;
pub mod types;
// Issue 12: people who sign in.
pub mod user;
pub mod user_crd;
pub mod user_resolve;
pub mod user_rules;

pub use convert::client_spec;
pub use error::ApiError;
pub use types::{OAuthClient, OAuthClientSpec, OAuthClientStatus, SecretKeyRef};
// Issue 13
pub use types::PreviousSecret;
