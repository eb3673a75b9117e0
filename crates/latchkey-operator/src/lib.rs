#![forbid(unsafe_code)]
//! How `OAuthClient`s and their Secrets reach memory, the key driver's loop, and what the Lease
//! holder writes back.
//!
//! Every replica watches and feeds the same resolver (`latchkey_api::resolve`); only the Lease
//! holder writes status, generated credentials, signing keys and Events. Modules import only
//! downward: `run` wires `client_watch`, `writer`, `key_driver`/`key_secret` and `leader`.

pub mod backoff;
pub mod client_watch;
pub mod config;
pub mod credentials;
pub mod error;
pub mod key_driver;
pub mod key_secret;
pub mod leader;
pub mod observe;
// Issue 13
pub mod revocation_secret;
pub mod run;
pub mod status;
pub mod watch;
pub mod writer;

pub use config::OperatorConfig;
pub use error::OperatorError;
pub use observe::Observer;
pub use run::Operator;
