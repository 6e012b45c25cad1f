//! The daemon's error type and its one mapping to gRPC status codes.
//!
//! Domain modules define their own `thiserror` enums and say which [`Kind`] each variant
//! is; this file is the only place that turns a kind into a `tonic::Code`.

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
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Spec(#[from] crate::container::spec::SpecError),
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
    #[error(transparent)]
    Cgroup(#[from] crate::runtime::cgroups::CgroupError),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
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
    Error::FailedPrecondition("internal state lock poisoned by an earlier panic".into())
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::NotFound { .. } => Kind::NotFound,
            Error::AlreadyExists { .. } => Kind::AlreadyExists,
            Error::FailedPrecondition(_) => Kind::FailedPrecondition,
            Error::Unimplemented(_) => Kind::Unimplemented,
            Error::Timeout(_) => Kind::DeadlineExceeded,
            Error::Io { .. } => Kind::Internal,
            Error::Store(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Sandbox(e) => e.kind(),
            Error::Spec(e) => e.kind(),
            Error::Monitor(e) => e.kind(),
            Error::Cgroup(_) => Kind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = match e.kind() {
            Kind::InvalidArgument => tonic::Code::InvalidArgument,
            Kind::NotFound => tonic::Code::NotFound,
            Kind::AlreadyExists => tonic::Code::AlreadyExists,
            Kind::FailedPrecondition => tonic::Code::FailedPrecondition,
            Kind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Kind::Unavailable => tonic::Code::Unavailable,
            Kind::Unimplemented => tonic::Code::Unimplemented,
            Kind::Internal => tonic::Code::Internal,
        };
        // The whole source chain, so a person reading crictl's output sees the cause.
        tonic::Status::new(code, error_chain(&e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
