#![forbid(unsafe_code)]
//! How `OAuthClient`s and their Secrets reach memory, and what the Lease holder writes back.
//!
//! Every replica watches and builds the same core registry; only the Lease holder writes
//! status, generated credentials, signing keys and Events. The pure parts (`index`,
//! `status`) are tested without any server.

pub mod backoff;
pub mod credentials;
pub mod error;
pub mod index;
pub mod keys;
pub mod leader;
pub mod rotator;
pub mod run;
pub mod status;
pub mod writer;

pub use error::OperatorError;
pub use run::{Observer, OperatorConfig, run};
