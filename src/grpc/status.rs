//! The one mapping from the daemon's error kinds to gRPC status codes.

use crate::error::{Error, Kind, error_chain};

fn code(kind: Kind) -> tonic::Code {
    match kind {
        Kind::InvalidArgument => tonic::Code::InvalidArgument,
        Kind::NotFound => tonic::Code::NotFound,
        Kind::AlreadyExists => tonic::Code::AlreadyExists,
        Kind::FailedPrecondition => tonic::Code::FailedPrecondition,
        Kind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Kind::Unavailable => tonic::Code::Unavailable,
        Kind::Unimplemented => tonic::Code::Unimplemented,
        Kind::ResourceExhausted => tonic::Code::ResourceExhausted,
        Kind::Internal => tonic::Code::Internal,
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        // The whole source chain, so a person reading crictl's output sees the cause.
        tonic::Status::new(code(e.kind()), error_chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_failures_are_internal_not_the_callers_fault() {
        let s = tonic::Status::from(crate::error::task_failed("setup", "panicked"));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(s.message().contains("setup task failed: panicked"));
        let s = tonic::Status::from(Error::NotFound {
            what: "container",
            id: "abc".into(),
        });
        assert_eq!(s.code(), tonic::Code::NotFound);
    }
}
