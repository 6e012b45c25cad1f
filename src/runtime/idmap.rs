//! Id-mapped mounts (Linux 5.12+, per filesystem): a mount whose files' owners are shown
//! through a user namespace's mappings, so root-owned image layers appear owned by the
//! container's root inside a pod user namespace.
//!
//! [`check_idmap`] asks the kernel directly rather than guessing from its version: it
//! clones the mount at a path as a detached tree (`open_tree(OPEN_TREE_CLONE)`) and sets
//! `MOUNT_ATTR_IDMAP` on the clone. The clone is attached nowhere and is freed with its
//! fd, so the check leaves nothing behind.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{RuntimeError, io_err, mounts};

/// Ok if the filesystem at `path` can be id-mapped through the user namespace `userns`
/// (an open `/proc/<pid>/ns/user` or a pin of one); the kernel's refusal otherwise
/// (EINVAL: the filesystem or kernel lacks it; EPERM: not allowed).
pub fn check_idmap(path: &Path, userns: &File) -> Result<(), RuntimeError> {
    let tree = open_tree_clone(path, false)?;
    set_idmap(&tree, userns, false).map_err(|e| io_err("mount_setattr(MOUNT_ATTR_IDMAP)", path, e))
}

/// Attaches at `target` (an existing dir) a copy of the tree at `source` whose owners
/// are shown through the user namespace `userns`. Overlayfs takes its own private copy
/// of each lower layer when it mounts, so the caller may unmount `target` afterwards.
pub fn mount_idmapped(source: &Path, target: &Path, userns: &File) -> Result<(), RuntimeError> {
    let tree = open_tree_clone(source, false)?;
    set_idmap(&tree, userns, false)
        .map_err(|e| io_err("mount_setattr(MOUNT_ATTR_IDMAP)", source, e))?;
    attach(&tree, target)
}

/// The spec's `idmap`/`ridmap` mounts (runtime-spec 1.2), each as a detached copy of its
/// source shown through the container's user namespace `userns` (and made read-only if
/// asked), in the order of the spec's mounts; None for the others. Made by the caller,
/// in the host's user namespace: id-mapping a host filesystem needs CAP_SYS_ADMIN over
/// it, which the container's init, in the pod's user namespace, lacks. Init attaches
/// them ([`attach`]); a detached tree may be attached in another mount namespace.
pub(super) fn open_mount_trees(
    spec: &oci_spec::runtime::Spec,
    userns: Option<BorrowedFd<'_>>,
    bundle: &Path,
) -> Result<Vec<Option<OwnedFd>>, RuntimeError> {
    let mut trees = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let opts = mounts::parse_options(m.options().as_deref().unwrap_or_default());
        let Some(recursive) = opts.idmap else {
            trees.push(None);
            continue;
        };
        let (Some(userns), Some(source)) = (userns, m.source().as_deref()) else {
            return Err(RuntimeError::InvalidSpec {
                bundle: bundle.to_path_buf(),
                message: format!(
                    "the id-mapped mount {} needs a source and a user namespace to join",
                    m.destination().display()
                ),
            });
        };
        let tree = open_tree_clone(source, recursive)?;
        set_idmap(&tree, &userns, recursive).map_err(|e| RuntimeError::Idmap {
            path: source.to_path_buf(),
            source: e,
        })?;
        if opts.flags.contains(nix::mount::MsFlags::MS_RDONLY) || opts.recursive_readonly {
            set_attr(
                &tree,
                libc::MOUNT_ATTR_RDONLY,
                None,
                opts.recursive_readonly,
            )
            .map_err(|e| io_err("mount_setattr(MOUNT_ATTR_RDONLY)", source, e))?;
        }
        trees.push(Some(tree));
    }
    Ok(trees)
}

/// Attaches at the destination of `m` the detached tree the caller made of its source
/// (an id-mapped bind, `idmap::open_mount_trees`), then sets its propagation.
pub(super) fn attach_entry(
    rootfs: &Path,
    m: &oci_spec::runtime::Mount,
    tree: &OwnedFd,
) -> Result<(), RuntimeError> {
    let opts = mounts::parse_options(m.options().as_deref().unwrap_or_default());
    let target = super::paths::resolve_in_root(rootfs, m.destination())?;
    let stat = nix::sys::stat::fstat(tree).map_err(super::sys_err("fstat mount tree"))?;
    if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
        mounts::create_dir(&target)?;
    } else {
        mounts::create_file(&target)?;
    }
    attach(tree, &target)?;
    mounts::propagate(&target, &opts)
}

/// Attaches the detached tree `tree` at `target` (an existing file or dir).
#[allow(unsafe_code)]
pub(super) fn attach(tree: &impl AsFd, target: &Path) -> Result<(), RuntimeError> {
    let invalid = || {
        io_err(
            "move_mount",
            target,
            std::io::ErrorKind::InvalidInput.into(),
        )
    };
    let to = CString::new(target.as_os_str().as_bytes()).map_err(|_| invalid())?;
    let empty = c"";
    // SAFETY: an open detached tree with an empty path (MOVE_MOUNT_F_EMPTY_PATH) and a
    // valid NUL-terminated target path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_fd().as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io_err(
            "move_mount",
            target,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A detached copy of the mount at `path` (with its submounts if `recursive`), closed
/// on exec.
#[allow(unsafe_code)]
fn open_tree_clone(path: &Path, recursive: bool) -> Result<OwnedFd, RuntimeError> {
    let invalid = || io_err("open_tree", path, std::io::ErrorKind::InvalidInput.into());
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid())?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a valid NUL-terminated path; the call only returns an fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(io_err("open_tree", path, std::io::Error::last_os_error()));
    }
    let fd = i32::try_from(fd).map_err(|_| invalid())?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_idmap(tree: &OwnedFd, userns: &impl AsFd, recursive: bool) -> std::io::Result<()> {
    set_attr(
        tree,
        libc::MOUNT_ATTR_IDMAP,
        Some(userns.as_fd()),
        recursive,
    )
}

#[allow(unsafe_code)]
fn set_attr(
    tree: &OwnedFd,
    attr_set: u64,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
) -> std::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: an open fd with AT_EMPTY_PATH and an empty path; a mount_attr of the size
    // passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_not_there_is_an_error() {
        let own = File::open("/proc/self/ns/user").unwrap();
        let err = check_idmap(Path::new("/nonexistent/crius"), &own).unwrap_err();
        assert!(err.to_string().contains("open_tree"), "{err}");
    }

    /// The caller's own (initial) user namespace cannot be used for an idmapped mount:
    /// the kernel wants a namespace other than the mount's owner.
    #[test]
    fn the_initial_user_namespace_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let own = File::open("/proc/self/ns/user").unwrap();
        let err = check_idmap(tmp.path(), &own).unwrap_err();
        assert!(err.to_string().contains("MOUNT_ATTR_IDMAP"), "{err}");
    }
}
