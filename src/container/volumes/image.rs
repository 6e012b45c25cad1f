//! Image volumes (KEP 4639): a pulled image's layers as a read-only overlay under the
//! bundle, `<bundle>/volumes/<n>`, optionally narrowed to a sub path inside the image.

use std::path::{Path, PathBuf};

use k8s_cri::v1::Mount;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{MountError, VolumeLayers, io_err};

/// The overlay's bottom layer: overlayfs needs two lower dirs when it has no upper.
const EMPTY: &str = "empty";

/// Mounts the image at `target` and returns the directory the container gets.
pub(super) fn mount_volume(
    m: &Mount,
    layers: &VolumeLayers,
    target: &Path,
) -> Result<PathBuf, MountError> {
    let empty = target.with_file_name(EMPTY);
    for dir in [&empty, target] {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    let lower: Vec<String> = layers
        .lower
        .iter()
        .chain([&empty])
        .map(|p| p.display().to_string())
        .collect();
    if lower.iter().any(|p| p.contains([',', ':'])) {
        return Err(MountError::Io {
            op: "an overlay lower dir contains ',' or ':':",
            path: target.to_path_buf(),
            source: std::io::ErrorKind::InvalidInput.into(),
        });
    }
    let data = format!("lowerdir={}", lower.join(":"));
    // Read-only, but executable: kubelet's image volumes may carry binaries.
    let flags = MsFlags::MS_RDONLY;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| io_err("mounting image volume on", target)(e.into()))?;
    sub_path(m, target)
}

/// `image_sub_path` inside the mounted image: symlinks resolve inside the image (never
/// out of it), and it must be an existing directory, as in containerd.
fn sub_path(m: &Mount, root: &Path) -> Result<PathBuf, MountError> {
    if m.image_sub_path.is_empty() {
        return Ok(root.to_path_buf());
    }
    let fail = |reason| MountError::SubPath {
        container_path: m.container_path.clone(),
        sub_path: m.image_sub_path.clone(),
        reason,
    };
    let resolved = crate::runtime::resolve_in_root(root, Path::new(&m.image_sub_path))
        .map_err(|_| fail("has too many levels of symbolic links"))?;
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => Ok(resolved),
        Ok(_) => Err(fail("is not a directory in the image")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(fail("does not exist in the image"))
        }
        Err(e) => Err(io_err("stat", &resolved)(e)),
    }
}

/// Unmounts and removes every image volume under `volumes_dir`; idempotent. A volume
/// that stays mounted is an error, so the caller never deletes through it.
pub fn release(volumes_dir: &Path) -> Result<(), MountError> {
    let entries = match std::fs::read_dir(volumes_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        r => r.map_err(io_err("reading", volumes_dir))?,
    };
    for entry in entries {
        let path = entry.map_err(io_err("reading", volumes_dir))?.path();
        match umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not (or no longer) a mount point.
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(io_err("unmounting image volume", &path)(e.into())),
        }
        match std::fs::remove_dir(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("removing", &path)(e));
            }
            _ => {}
        }
    }
    std::fs::remove_dir(volumes_dir).map_err(io_err("removing", volumes_dir))
}
