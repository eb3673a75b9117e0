//! The binary's one error type, by cause: each variant renders as the one-line message the CLI
//! prints.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, or a combination of flags and stored state, that cannot be honoured.
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("logging: {0}")]
    Logging(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("no Kubernetes API to talk to (KUBECONFIG or in-cluster config): {0}")]
    NoCluster(String),
    /// The Kubernetes API answered with an error.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// `latchkey keys` could not carry out what was asked.
    #[error("{0}")]
    Keys(String),
    #[error("operator stopped: {0}")]
    Operator(#[from] latchkey_operator::OperatorError),
    #[error(transparent)]
    Store(#[from] latchkey_core::store::StoreError),
    #[error(transparent)]
    KeyDriver(#[from] latchkey_core::key_driver::DriverError),
    #[error(transparent)]
    Core(#[from] latchkey_core::CoreError),
    #[error(transparent)]
    Server(#[from] latchkey_server::ServerError),
    #[error("{0}")]
    Clients(#[from] crate::load_error::LoadError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}
