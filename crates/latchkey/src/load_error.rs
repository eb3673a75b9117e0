//! Why manifests could not be loaded: every problem with its file and document.

use std::path::PathBuf;

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub file: PathBuf,
    /// 1-based document number within the file; 0 when the file itself is at fault.
    pub doc: usize,
    pub reason: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.doc == 0 {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(
                f,
                "{} (document {}): {}",
                self.file.display(),
                self.doc,
                self.reason
            )
        }
    }
}

/// Every problem of a failed load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadError(pub Vec<DocError>);
