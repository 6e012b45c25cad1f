//! The host side of a container's CRI mounts and devices, prepared before the spec is
//! written: host paths resolved (created if missing, symlinks followed, propagation
//! checked against the host's mount), image volumes mounted read-only under the bundle,
//! device nodes looked up. The spec then only binds what this returns.

mod devices;
mod host;
mod image;
mod mountinfo;

use std::path::{Path, PathBuf};

use k8s_cri::v1::Mount;

use crate::error::{Classify, Kind};

pub use devices::{ResolvedDevice, host_devices, resolve_devices};
pub use image::release;

/// The read-only layers of one image volume, as the image store has them.
#[derive(Debug, Clone)]
pub struct VolumeLayers {
    /// Snapshot dirs, topmost first.
    pub lower: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {container_path}: host path {host_path}: {op}: {source}")]
    HostPath {
        container_path: String,
        host_path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error(
        "mount {container_path}: propagation {wanted} needs the host path {host_path} on a \
         {needs} mount, but its mount {mount_point} is not"
    )]
    Propagation {
        container_path: String,
        host_path: PathBuf,
        wanted: &'static str,
        needs: &'static str,
        mount_point: PathBuf,
    },
    #[error("image volume {container_path}: sub path {sub_path:?} {reason}")]
    SubPath {
        container_path: String,
        sub_path: String,
        reason: &'static str,
    },
    #[error("device {host_path}: {reason}")]
    Device {
        host_path: PathBuf,
        reason: String,
        kind: Kind,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Classify for MountError {
    fn kind(&self) -> Kind {
        match self {
            MountError::HostPath { source, .. } if is_caller_error(source) => Kind::InvalidArgument,
            MountError::Propagation { .. } => Kind::FailedPrecondition,
            MountError::SubPath { .. } => Kind::InvalidArgument,
            MountError::Device { kind, .. } => *kind,
            MountError::HostPath { .. } | MountError::Io { .. } => Kind::Internal,
        }
    }
}

/// A path that cannot name a directory (a file on the way, a symlink loop) is the
/// request's fault; anything else is ours.
fn is_caller_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG | libc::EEXIST)
    )
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MountError + use<> {
    let path = path.to_path_buf();
    move |source| MountError::Io { op, path, source }
}

/// The source the runtime binds for each of `mounts` (same order). `layers[i]` is Some
/// for an image volume; those are mounted under `volumes_dir`, which [`release`] undoes
/// (also after a failure here).
pub fn prepare_sources(
    mounts: &[Mount],
    layers: &[Option<VolumeLayers>],
    volumes_dir: &Path,
) -> Result<Vec<PathBuf>, MountError> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let source = match layers.get(i).and_then(Option::as_ref) {
            Some(layers) => image::mount_volume(m, layers, &volumes_dir.join(i.to_string()))?,
            None => host::resolve(m)?,
        };
        out.push(source);
    }
    Ok(out)
}
