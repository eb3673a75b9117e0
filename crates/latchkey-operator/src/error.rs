//! The operator crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error(transparent)]
    Core(#[from] latchkey_core::CoreError),
    #[error("{0}")]
    Config(String),
}
