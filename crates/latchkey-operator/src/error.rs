//! The operator crate's one error type, by cause.

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error(transparent)]
    Core(#[from] latchkey_core::CoreError),
    /// The operating system's random source failed (nothing secret can be made).
    #[error("the system random source failed")]
    Random,
}
