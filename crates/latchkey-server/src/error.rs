//! The server crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("I/O on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    // Issue 11: client authentication by assertion.
    #[error("{0}")]
    Config(String),
}
