//! A host path mount's source: created when missing and symlinks followed, as containerd
//! does, and its mount's propagation checked against what the mount asks for.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{Mount, MountPropagation};

use super::{MountError, mountinfo};

pub(super) fn resolve(m: &Mount) -> Result<PathBuf, MountError> {
    let host = Path::new(&m.host_path);
    let fail = |op: &'static str| {
        move |source| MountError::HostPath {
            container_path: m.container_path.clone(),
            host_path: host.to_path_buf(),
            op,
            source,
        }
    };
    match std::fs::metadata(host) {
        // containerd creates a missing host path as a directory (kubelet's
        // DirectoryOrCreate has usually made it already).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(host)
            .map_err(fail("creating"))?,
        Err(e) => return Err(fail("stat")(e)),
        Ok(_) => {}
    }
    // api.proto: a symlink is followed and its destination mounted.
    let resolved = std::fs::canonicalize(host).map_err(fail("resolving symlinks"))?;
    check_propagation(m, &resolved)?;
    Ok(resolved)
}

/// containerd's ensureShared / ensureSharedOrSlave: mounts made on the host reach the
/// container only from a shared (or slave) mount, and the container's reach the host
/// only through a shared one; anything else would silently not propagate.
fn check_propagation(m: &Mount, resolved: &Path) -> Result<(), MountError> {
    let (wanted, needs): (&'static str, &'static str) =
        match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationBidirectional) => ("rshared", "shared"),
            Ok(MountPropagation::PropagationHostToContainer) => ("rslave", "shared or slave"),
            _ => return Ok(()),
        };
    let info = mountinfo::lookup(resolved)?;
    let ok = info.is_shared() || (wanted == "rslave" && info.is_slave());
    if ok {
        return Ok(());
    }
    Err(MountError::Propagation {
        container_path: m.container_path.clone(),
        host_path: resolved.to_path_buf(),
        wanted,
        needs,
        mount_point: info.mount_point,
    })
}
