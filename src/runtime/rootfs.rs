//! The container's filesystem view, built in its new mount namespace in two steps:
//! [`prepare`] walks the host's paths (the rootfs and the bind sources, under the
//! daemon's 0700 state dirs) while init still has the caller's ids and opens them;
//! [`setup`], run after init may have become a user namespace's root (which cannot walk
//! those dirs), reaches them only through the open fds (`/proc/self/fd/N`, whose magic
//! link skips the walk), as runc 1.2 passes mount sources as fds. Then propagation, the
//! spec's mounts, /dev, pivot_root, masked and read-only paths.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use super::cgroupfs::{CgroupView, mount_view};
use super::idmap::attach_entry;
use super::mounts::{create_dir, is_cgroupfs, mount_entry, parse_options};
use super::paths::resolve_in_root;
use super::{RuntimeError, devices, io_err, sys_err};

/// The rootfs and the bind sources, open (O_PATH) before init's ids change.
pub(super) struct Prepared<'a> {
    /// The rootfs after its bind onto itself (the mount the container's mounts go on).
    rootfs: File,
    /// The spec's mounts, bind sources replaced by `/proc/self/fd/N` of `_sources`.
    mounts: Vec<Mount>,
    /// Per mount: the id-mapped tree the caller made of its source, attached instead.
    trees: &'a [Option<OwnedFd>],
    _sources: Vec<File>,
    propagation: MsFlags,
}

/// Sets the rootfs' propagation and binds it onto itself, then opens it and every bind
/// source of the spec's mounts. Host paths are walked only here.
pub(super) fn prepare<'a>(
    spec: &Spec,
    rootfs: &Path,
    trees: &'a [Option<OwnedFd>],
) -> Result<Prepared<'a>, RuntimeError> {
    let propagation = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_ref())
        .and_then(|p| parse_options(std::slice::from_ref(p)).propagation)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    prepare_root(rootfs, propagation)?;
    // Opened after the bind, so the fd is the bind's root and not the mount under it.
    let root = open_path(rootfs)?;
    let mut sources = Vec::new();
    let mut mounts = Vec::new();
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let mut m = m.clone();
        let bind = parse_options(m.options().as_deref().unwrap_or_default()).bind;
        let has_tree = matches!(trees.get(i), Some(Some(_)));
        if let Some(source) = m
            .source()
            .clone()
            .filter(|_| bind && !has_tree && !is_cgroupfs(&m))
        {
            let file = open_path(&source)?;
            m.set_source(Some(fd_path(&file)));
            sources.push(file);
        }
        mounts.push(m);
    }
    Ok(Prepared {
        rootfs: root,
        mounts,
        trees,
        _sources: sources,
        propagation,
    })
}

/// An O_PATH fd: enough to mount from or on, and needs no read permission.
fn open_path(path: &Path) -> Result<File, RuntimeError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err("open", path, e))
}

fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Builds the container's filesystem from what [`prepare`] opened and pivots into it.
pub(super) fn setup(
    spec: &Spec,
    prepared: &Prepared<'_>,
    cgroup: Option<&CgroupView<'_>>,
) -> Result<(), RuntimeError> {
    let rootfs = &fd_path(&prepared.rootfs);
    for (i, m) in prepared.mounts.iter().enumerate() {
        if let Some(Some(tree)) = prepared.trees.get(i) {
            attach_entry(rootfs, m, tree)?;
        } else if !is_cgroupfs(m) {
            mount_entry(rootfs, m)?;
        } else if let Some(view) = cgroup {
            // Without a cgroup of its own the container gets no cgroupfs at all.
            mount_view(view, &resolve_in_root(rootfs, m.destination())?)?;
        }
    }
    let linux = spec.linux().as_ref();
    let extra = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    devices::create_all(rootfs, extra)?;
    if let Some(process) = spec.process() {
        // An image's working directory need not exist yet (runc creates it too).
        create_dir(&resolve_in_root(rootfs, process.cwd())?)?;
    }
    enter_root(&prepared.rootfs)?;
    // A shared root is made so only now, on the container's own "/": applied before the
    // pivot it would have made the rootfs mount a peer of the host's and pivot_root
    // refuses a shared mount (EINVAL). runc orders it the same way.
    let propagation = prepared.propagation;
    if !propagation.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE) {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .map_err(sys_err("apply rootfs propagation"))?;
    }
    Ok(())
}

/// Sets the propagation of every mount we inherited (rslave by default: ours do not
/// reach the host, the host's still arrive), keeps the rootfs' own mount from being
/// shared, and makes the rootfs a mount point, which pivot_root needs.
fn prepare_root(rootfs: &Path, propagation: MsFlags) -> Result<(), RuntimeError> {
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(sys_err("set / propagation"))?;
    // The mount holding the rootfs must not be shared: pivot_root checks the new root's
    // parent, and a bind below a shared mount would propagate to the host.
    let parent_flag = if propagation.contains(MsFlags::MS_SLAVE) {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    let mut at = rootfs;
    loop {
        match mount(None::<&str>, at, None::<&str>, parent_flag, None::<&str>) {
            Ok(()) => break,
            // EINVAL: not a mount point; go up to the one that holds it.
            Err(nix::Error::EINVAL) if at.parent().is_some() => {
                at = at.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => return Err(io_err("set propagation of the rootfs' mount", at, e.into())),
        }
    }
    let rec_bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(rootfs), rootfs, None::<&str>, rec_bind, None::<&str>)
        .map_err(sys_err("bind rootfs"))
}

/// The read-only and hiding steps, run inside the new root after the steps that still
/// write to /proc/sys (sysctl), as runc orders them.
pub(super) fn finalize(spec: &Spec) -> Result<(), RuntimeError> {
    if let Some(linux) = spec.linux().as_ref() {
        for path in linux.masked_paths().as_deref().unwrap_or_default() {
            mask(Path::new(path))?;
        }
        for path in linux.readonly_paths().as_deref().unwrap_or_default() {
            make_readonly(Path::new(path))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(sys_err("remount / read-only"))?;
    }
    Ok(())
}

/// pivot_root without a directory for the old root: stack the old root on the new one,
/// then detach it (the runc technique), leaving nothing of the host reachable.
fn enter_root(new_root: &File) -> Result<(), RuntimeError> {
    let old_root = File::open("/").map_err(|e| io_err("open", Path::new("/"), e))?;
    fchdir(new_root).map_err(sys_err("chdir to rootfs"))?;
    pivot_root(".", ".").map_err(sys_err("pivot_root"))?;
    fchdir(&old_root).map_err(sys_err("chdir to old root"))?;
    // The unmount must not propagate to the host's copy of these mounts.
    let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
    mount(None::<&str>, ".", None::<&str>, slave, None::<&str>)
        .map_err(sys_err("make old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys_err("detach old root"))?;
    std::env::set_current_dir("/").map_err(|e| io_err("chdir", Path::new("/"), e))
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<(), RuntimeError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path, e)),
    };
    let result = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| io_err("mask", path, e.into()))
}

fn make_readonly(path: &Path) -> Result<(), RuntimeError> {
    if !path.exists() {
        return Ok(());
    }
    let rec_bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(path), path, None::<&str>, rec_bind, None::<&str>)
        .map_err(|e| io_err("bind read-only path", path, e.into()))?;
    let flags = rec_bind | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .map_err(|e| io_err("remount read-only", path, e.into()))
}
