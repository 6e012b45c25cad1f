//! Placeholder: the spec helper fills this file.
use crate::error::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
}

impl Classify for SpecError {
    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}
