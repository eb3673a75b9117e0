//! The core crate's one error type: configuration that cannot become a client, a key or a token.

/// Why a client, key or token could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A client definition breaks a rule (the message names the field).
    #[error("invalid client: {0}")]
    InvalidClient(String),
    /// Two definitions claim the same client id.
    #[error("client id {0:?} is defined more than once")]
    DuplicateClientId(String),
    /// A scope or scope pattern is malformed or not allowed.
    #[error("invalid scope: {0}")]
    InvalidScope(String),
    /// Key material could not be generated, parsed or used.
    #[error("signing key: {0}")]
    Key(String),
    /// A key set breaks a rule (no active key, duplicate kid).
    #[error("key set: {0}")]
    KeySet(String),
    /// A password hash is not an accepted Argon2id PHC string (the message never repeats it).
    #[error("password hash: {0}")]
    InvalidPassword(String),
    /// Signing failed (the crypto library refused).
    #[error("signing failed")]
    Signing,
    // Issue 11: client authentication by assertion.
    /// A client assertion was refused; the reason is safe to log (it holds no token content).
    #[error("client assertion refused: {0}")]
    AssertionRefused(&'static str),
    // Issue 13
    /// A revocation could not be recorded, or the revocation list is unreadable.
    #[error("{0}")]
    Revocation(String),
    // Issue 13: registration.
    /// The system random source failed.
    #[error("the system random source failed")]
    Random,
}
