//! Where state lives. Every rule is written once, in core or api; what differs between a cluster
//! and a standalone process is only where state is kept, behind these small traits whose writes
//! are conditional on the version that was read. A stale writer (a leader that lost its Lease a
//! moment ago, a second process on one state directory) gets [`StoreError::Conflict`] and can
//! never overwrite newer state.
//!
//! Each kind of state has two implementations: a Kubernetes object in a cluster, and a file
//! under a lock standalone. The signing keys are one such document. The state still to come
//! (sessions, authorization codes, refresh-token families, registrations, revocations) is a
//! collection of documents keyed by id: each slots in as a [`DocumentStore`] per document (one
//! object or one file each), with the same conditional create and replace, so the rules that
//! drive them (single use, rotation on use, reuse detection) stay here and are written once.

use std::future::Future;

/// An opaque version of a stored document: a resourceVersion, or a digest of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// A document as it was read, with the version a conditional write must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Why a store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote first (or the document already exists): read again, then retry.
    #[error("the stored state changed since it was read")]
    Conflict,
    /// The store has not been read yet (a watch still listing): nothing can be concluded, in
    /// particular not that the document is missing.
    #[error("the stored state is not known yet")]
    NotYetKnown,
    /// The store could not be reached or read; the state in memory keeps serving.
    #[error("{0}")]
    Unavailable(String),
    /// What is stored cannot be understood (the message names where).
    #[error("{0}")]
    Invalid(String),
}

/// One document, read whole and written only conditionally.
pub trait DocumentStore<T>: Send + Sync {
    /// The document and its version; `None` when it does not exist.
    fn load(&self) -> impl Future<Output = Result<Option<Versioned<T>>, StoreError>> + Send;
    /// Create it; [`StoreError::Conflict`] when it exists already.
    fn create(&self, value: &T) -> impl Future<Output = Result<Version, StoreError>> + Send;
    /// Replace it, only if it is still at `version`; [`StoreError::Conflict`] otherwise.
    fn replace(
        &self,
        value: &T,
        version: &Version,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;
}
