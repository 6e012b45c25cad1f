//! Device nodes in the container's /dev: the defaults every container gets, the spec's
//! `linux.devices`, and the conventional /dev symlinks.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{Gid, Uid, chown};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::{MountOptions, bind};
use super::paths::resolve_in_root;
use super::{RuntimeError, io_err, sys_err};

/// The OCI runtime spec's default devices. Bound from the host rather than created, so
/// they work whatever the devices cgroup says about mknod.
const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

const SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

/// Creates the default devices, then the spec's extra ones, then the symlinks.
pub(super) fn create_all(rootfs: &Path, extra: &[LinuxDevice]) -> Result<(), RuntimeError> {
    let bind_opts = MountOptions {
        flags: nix::mount::MsFlags::MS_BIND,
        bind: true,
        ..MountOptions::default()
    };
    for name in DEFAULT_DEVICES {
        let target = resolve_in_root(rootfs, &Path::new("/dev").join(name))?;
        bind(&Path::new("/dev").join(name), &target, &bind_opts)?;
    }
    for dev in extra {
        let is_default = DEFAULT_DEVICES
            .iter()
            .any(|d| dev.path() == &Path::new("/dev").join(d));
        if !is_default {
            create_device(rootfs, dev)?;
        }
    }
    let dev_dir = resolve_in_root(rootfs, Path::new("/dev"))?;
    for (target, name) in SYMLINKS {
        let link = dev_dir.join(name);
        if link.symlink_metadata().is_err() {
            symlink(target, &link).map_err(|e| io_err("symlink", &link, e))?;
        }
    }
    Ok(())
}

/// mknod for one spec device; where mknod is refused, bind the host's node instead.
fn create_device(rootfs: &Path, dev: &LinuxDevice) -> Result<(), RuntimeError> {
    let target = resolve_in_root(rootfs, dev.path())?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("mkdir", parent, e))?;
    }
    let kind = match dev.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = Mode::from_bits_truncate(dev.file_mode().unwrap_or(0o666));
    let rdev = makedev(dev.major() as u64, dev.minor() as u64);
    let _ = std::fs::remove_file(&target);
    match mknod(&target, kind, mode, rdev) {
        Ok(()) => {}
        Err(nix::Error::EPERM) => {
            let opts = MountOptions {
                flags: nix::mount::MsFlags::MS_BIND,
                bind: true,
                ..MountOptions::default()
            };
            return bind(dev.path(), &target, &opts);
        }
        Err(e) => return Err(sys_err("mknod")(e)),
    }
    let uid = dev.uid().map(Uid::from_raw);
    let gid = dev.gid().map(Gid::from_raw);
    chown(&target, uid, gid).map_err(sys_err("chown device"))
}
