//! The error vocabulary at the bottom of the crate: what [`Kind`] of failure an error is,
//! the [`Classify`] trait every domain error implements, and the daemon's [`Error`].
//!
//! This module imports nothing of the crate, so every layer may use it and none of them
//! is pulled back in through it. Domain errors turn into `Error::Domain` through one
//! blanket `From`, keeping their kind; the gRPC status code for a kind is chosen in
//! `grpc/status.rs`, the only place that knows about gRPC.

use std::path::PathBuf;

/// What kind of failure an error is, independent of where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    DeadlineExceeded,
    Unavailable,
    Unimplemented,
    /// A bounded resource ran out (an event subscriber fell behind, too many subscribers).
    ResourceExhausted,
    Internal,
}

/// Implemented by every domain error so the gRPC layer can classify it.
pub trait Classify {
    fn kind(&self) -> Kind;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} {name:?} already exists with id {id}")]
    AlreadyExists {
        what: &'static str,
        name: String,
        id: String,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0} is not implemented")]
    Unimplemented(&'static str),
    #[error("{0}")]
    Timeout(String),
    /// A failure of the daemon itself (a lost task, a poisoned lock), not of the request.
    #[error("{0}")]
    Internal(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A domain module's error, classified when it crossed into `Error`.
    #[error("{source}")]
    Domain {
        kind: Kind,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Error` deliberately does not implement [`Classify`]: that keeps this blanket
/// conversion from overlapping with `From<Error> for Error`.
impl<E: Classify + std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Self {
        Error::Domain {
            kind: e.kind(),
            source: Box::new(e),
        }
    }
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::NotFound { .. } => Kind::NotFound,
            Error::AlreadyExists { .. } => Kind::AlreadyExists,
            Error::FailedPrecondition(_) => Kind::FailedPrecondition,
            Error::Unimplemented(_) => Kind::Unimplemented,
            Error::Timeout(_) => Kind::DeadlineExceeded,
            Error::Internal(_) | Error::Io { .. } => Kind::Internal,
            Error::Domain { kind, .. } => *kind,
        }
    }

    /// Whether the object asked for does not exist (also when a domain says so).
    pub fn is_not_found(&self) -> bool {
        self.kind() == Kind::NotFound
    }
}

/// An error and its sources as one line, each cause once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_str = s.to_string();
        if !msg.contains(&s_str) {
            msg.push_str(": ");
            msg.push_str(&s_str);
        }
        src = s.source();
    }
    msg
}

/// For `map_err` on a poisoned lock: a panic elsewhere left shared state unusable.
pub fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::Internal("internal state lock poisoned by an earlier panic".into())
}

/// For a blocking or spawned task that panicked or was cancelled: its work is lost.
pub fn task_failed(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what} task failed: {e}"))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("gone")]
    struct Gone;

    impl Classify for Gone {
        fn kind(&self) -> Kind {
            Kind::NotFound
        }
    }

    #[test]
    fn domain_errors_keep_their_kind_and_message() {
        let e: Error = Gone.into();
        assert_eq!(e.kind(), Kind::NotFound);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "gone");
        assert_eq!(
            poisoned(std::sync::PoisonError::new(())).kind(),
            Kind::Internal
        );
        assert_eq!(task_failed("setup", "panicked").kind(), Kind::Internal);
    }
}
