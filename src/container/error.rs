//! What is wrong with a CreateContainer request, or with turning it into an OCI spec.

use std::path::PathBuf;

use crate::error::{Classify, Kind};
use crate::validation::InputError;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "no command specified: the container config has no command and the image has no \
         entrypoint or cmd"
    )]
    NoCommand,
    #[error("unable to find user {0}")]
    UserNotFound(String),
    #[error("unable to find group {0}")]
    GroupNotFound(String),
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    /// Supported, but what it needs on this host failed to set up at daemon start.
    #[error("{what} is not available: {reason}")]
    Unavailable { what: String, reason: String },
    #[error(transparent)]
    Seccomp(#[from] crate::container::spec::seccomp::SeccompError),
    #[error("read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SpecError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: &'static str,
    ) -> Self {
        SpecError::Input(InputError::invalid(field, value, reason))
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        SpecError::Unsupported { what: what.into() }
    }
}

impl Classify for SpecError {
    fn kind(&self) -> Kind {
        match self {
            SpecError::Unsupported { .. } => Kind::Unimplemented,
            SpecError::Unavailable { .. } => Kind::FailedPrecondition,
            SpecError::Io { .. } => Kind::Internal,
            SpecError::Input(_)
            | SpecError::Seccomp(_)
            | SpecError::NoCommand
            | SpecError::UserNotFound(_)
            | SpecError::GroupNotFound(_) => Kind::InvalidArgument,
        }
    }
}
