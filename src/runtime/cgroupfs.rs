//! The container's view of the cgroup filesystem (a `cgroup` entry in the spec's mounts):
//! its own cgroup directories, bound read-only, so programs that size themselves from
//! their limits (JVMs, Go's GOMAXPROCS helpers) find them where they expect.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{MsFlags, mount};

use super::cgroups::{self, Version};
use super::mounts::{MountOptions, bind, create_dir};
use super::{RuntimeError, io_err, sys_err};

/// Where the container's cgroup lives on the host.
pub(super) struct CgroupView<'a> {
    /// The host's hierarchy root (normally /sys/fs/cgroup).
    pub root: &'a Path,
    /// The container's cgroup path relative to `root` (no leading '/').
    pub path: &'a str,
}

fn read_only_bind() -> MountOptions {
    MountOptions {
        flags: MsFlags::MS_BIND
            | MsFlags::MS_REC
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        bind: true,
        ..MountOptions::default()
    }
}

/// Mounts the view at `target` (a path already resolved inside the rootfs).
pub(super) fn mount_view(view: &CgroupView<'_>, target: &Path) -> Result<(), RuntimeError> {
    if cgroups::detect(view.root) == Version::V2 {
        return bind(&view.root.join(view.path), target, &read_only_bind());
    }
    create_dir(target)?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), target, Some("tmpfs"), base, Some("mode=755"))
        .map_err(|e| io_err("mount cgroup tmpfs", target, e.into()))?;
    let entries = std::fs::read_dir(view.root).map_err(|e| io_err("readdir", view.root, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let dst = target.join(&name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            // Co-mounted controllers: `cpu -> cpu,cpuacct`.
            let to = std::fs::read_link(entry.path())
                .map_err(|e| io_err("readlink", &entry.path(), e))?;
            symlink(&to, &dst).map_err(|e| io_err("symlink", &dst, e))?;
            continue;
        }
        // Only hierarchies the container joined; others would show the host's tree.
        let src = entry.path().join(view.path);
        if kind.is_dir() && src.is_dir() {
            bind(&src, &dst, &read_only_bind())?;
        }
    }
    let ro = base | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, target, None::<&str>, ro, None::<&str>)
        .map_err(sys_err("remount cgroup tmpfs"))
}
