//! Images: references, registry pulls, content-addressed blobs, per-layer snapshots.
//! (Placeholder: the image helper fills this module.)

use crate::error::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
}

impl Classify for ImageError {
    fn kind(&self) -> Kind {
        match self {
            ImageError::InvalidReference(_) => Kind::InvalidArgument,
        }
    }
}
