//! The container root filesystem: an overlay of the image's layer snapshots (read-only,
//! shared) under a per-container writable upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

pub struct Overlay<'a> {
    /// Snapshot dirs, topmost first (overlay's lowerdir order).
    pub lower: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
    /// An empty dir used as the only lower layer of an image without layers.
    pub empty: &'a Path,
    pub target: &'a Path,
}

/// Mounts the overlay at `target`, creating the upper, work and target dirs.
pub fn mount_overlay(o: &Overlay<'_>) -> Result<()> {
    for d in [o.upper, o.work, o.target] {
        std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let lower = if o.lower.is_empty() {
        std::fs::create_dir_all(o.empty).map_err(|e| Error::io("creating", o.empty, e))?;
        o.empty.display().to_string()
    } else {
        let parts: Vec<String> = o.lower.iter().map(|p| p.display().to_string()).collect();
        parts.join(":")
    };
    for p in std::iter::once(o.upper).chain([o.work]) {
        if p.to_string_lossy().contains([',', ':']) {
            return Err(Error::InvalidArgument(format!(
                "overlay path {p:?} contains ',' or ':'"
            )));
        }
    }
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        o.upper.display(),
        o.work.display()
    );
    // The kernel takes mount data up to one page; beyond that overlay fails with EINVAL
    // and a long layer list needs the short-path trick (a later issue: many-layer images).
    mount(
        Some("overlay"),
        o.target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::io("mounting overlay on", o.target, e.into()))
}

/// Unmounts `target` if it is mounted; idempotent.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point; ENOENT: already gone.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmounting", target, e.into())),
    }
}
