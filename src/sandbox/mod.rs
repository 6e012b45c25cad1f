//! Pod sandboxes: pinned namespaces, CNI networking, pod files, the pod cgroup.
//!
//! RunPodSandbox: `namespaces::create_namespaces` → `files::write_resolv_conf`,
//! `write_hostname` → `network::Cni::load_network` + `add` (store the `NetworkConfig`,
//! `Attachment` and `NetworkResult` with the pod) → `files::write_hosts` with the pod IP.
//! Stop/RemovePodSandbox: `Cni::del` with the stored config and attachment (while the
//! netns pin still exists), then `namespaces::remove_namespaces`. Both steps idempotent.

pub mod files;
pub mod manager;
pub mod namespaces;
pub mod network;

use std::path::PathBuf;

mod record;
pub mod userns;
pub mod validate;
mod view;

use crate::error::{Classify, Kind};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Input(#[from] crate::validation::InputError),
    #[error("invalid DNS config: {0}")]
    InvalidDns(String),
    #[error("invalid port mapping: {0}")]
    InvalidPortMapping(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No usable network configuration; the daemon reports NetworkReady=false with this.
    #[error("no network config found in {dir}{}", skipped_suffix(.skipped))]
    NoNetworkConfig { dir: PathBuf, skipped: Vec<String> },
    #[error("network config {path}: {reason}")]
    InvalidNetworkConfig { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("CNI plugin {plugin} {command} failed: {msg}")]
    Plugin {
        plugin: String,
        command: &'static str,
        /// The CNI error code when the plugin printed an error object.
        code: Option<u64>,
        msg: String,
    },
    #[error("CNI plugin {plugin} {command} timed out after {after:?} (killed)")]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        after: std::time::Duration,
    },
    /// The runtime shut down while a CNI command ran.
    #[error("CNI {command} interrupted by shutdown")]
    Interrupted { command: &'static str },
    #[error("CNI plugin {plugin} returned an invalid result: {reason}")]
    InvalidResult { plugin: String, reason: String },
    /// An operation failed and undoing its partial work failed too.
    #[error("{error} (cleanup also failed: {cleanup})")]
    Rollback {
        error: Box<SandboxError>,
        cleanup: Box<SandboxError>,
    },
}

fn skipped_suffix(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (skipped invalid: {})", skipped.join("; "))
    }
}

impl SandboxError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SandboxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Keeps the original error and attaches a failed cleanup to it.
    pub(crate) fn with_cleanup(self, cleanup: Result<(), SandboxError>) -> Self {
        match cleanup {
            Ok(()) => self,
            Err(c) => SandboxError::Rollback {
                error: Box::new(self),
                cleanup: Box::new(c),
            },
        }
    }
}

impl Classify for SandboxError {
    fn kind(&self) -> Kind {
        match self {
            SandboxError::Input(_)
            | SandboxError::InvalidDns(_)
            | SandboxError::InvalidPortMapping(_) => Kind::InvalidArgument,
            SandboxError::NoNetworkConfig { .. }
            | SandboxError::InvalidNetworkConfig { .. }
            | SandboxError::PluginNotFound { .. } => Kind::FailedPrecondition,
            SandboxError::PluginTimeout { .. } => Kind::DeadlineExceeded,
            SandboxError::Interrupted { .. } => Kind::Unavailable,
            SandboxError::Rollback { error, .. } => error.kind(),
            SandboxError::Store(e) => e.kind(),
            SandboxError::Io { .. }
            | SandboxError::Sys { .. }
            | SandboxError::Plugin { .. }
            | SandboxError::InvalidResult { .. } => Kind::Internal,
        }
    }
}
