//! Pod sandboxes: pinned namespaces, CNI networking, pod files, the pod cgroup.
//! (Placeholder: the sandbox helper fills namespaces.rs, network.rs, files.rs.)

pub mod validate;

use crate::error::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("placeholder")]
    Placeholder,
}

impl Classify for SandboxError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}
