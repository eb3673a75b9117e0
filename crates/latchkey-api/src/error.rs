//! The api crate's one error type.

/// Why an `OAuthClient` (or the Secret it uses) cannot become a client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A spec field breaks a rule; the message starts with the field path.
    #[error("{0}")]
    InvalidSpec(String),
    /// The Secret holding the credentials is missing or lacks a key.
    #[error("{0}")]
    Secret(String),
    /// The core rules refused the client.
    #[error(transparent)]
    Core(#[from] latchkey_core::CoreError),
}
