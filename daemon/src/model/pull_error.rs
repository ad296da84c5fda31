//! Why an entry could not be pulled, as data: the status API (and later
//! the GUI and `doctor`) report it per file instead of parsing log lines.

use std::fmt;

/// A problem with one entry of a pull pass (`name`), or with the pass
/// itself (`name` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    /// The folder-relative name, if the problem is one entry's.
    pub name: Option<String>,
    /// What went wrong.
    pub kind: PullErrorKind,
}

/// The kinds of pull problems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullErrorKind {
    /// Reading or writing the folder failed.
    Disk {
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
        /// The error as the OS reported it.
        message: String,
    },
    /// The index could not be read or written.
    Index(String),
    /// The folder's ignore patterns cannot be used.
    Ignores(String),
    /// A worker task failed.
    Internal(String),
}

impl PullError {
    /// A problem with entry `name`.
    pub fn of(name: impl Into<String>, kind: PullErrorKind) -> Self {
        Self {
            name: Some(name.into()),
            kind,
        }
    }

    /// A problem with the whole pass.
    pub fn pass(kind: PullErrorKind) -> Self {
        Self { name: None, kind }
    }

    /// The kind's short name, as the API shows it.
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            PullErrorKind::Disk { .. } => "disk",
            PullErrorKind::Index(_) => "index",
            PullErrorKind::Ignores(_) => "ignores",
            PullErrorKind::Internal(_) => "internal",
        }
    }
}

impl From<std::io::Error> for PullErrorKind {
    fn from(e: std::io::Error) -> Self {
        Self::Disk {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<crate::index::DbError> for PullErrorKind {
    fn from(e: crate::index::DbError) -> Self {
        Self::Index(e.to_string())
    }
}

impl From<tokio::task::JoinError> for PullErrorKind {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl fmt::Display for PullErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk { message, .. } => f.write_str(message),
            Self::Index(e) => write!(f, "index: {e}"),
            Self::Ignores(e) => write!(f, "ignore patterns: {e}"),
            Self::Internal(e) => write!(f, "internal: {e}"),
        }
    }
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for PullError {}
