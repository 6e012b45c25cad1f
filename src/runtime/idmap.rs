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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{RuntimeError, io_err};

/// Ok if the filesystem at `path` can be id-mapped through the user namespace `userns`
/// (an open `/proc/<pid>/ns/user` or a pin of one); the kernel's refusal otherwise
/// (EINVAL: the filesystem or kernel lacks it; EPERM: not allowed).
pub fn check_idmap(path: &Path, userns: &File) -> Result<(), RuntimeError> {
    let tree = open_tree_clone(path)?;
    set_idmap(&tree, userns).map_err(|e| io_err("mount_setattr(MOUNT_ATTR_IDMAP)", path, e))
}

/// Attaches at `target` (an existing dir) a copy of the tree at `source` whose owners
/// are shown through the user namespace `userns`. Overlayfs takes its own private copy
/// of each lower layer when it mounts, so the caller may unmount `target` afterwards.
#[allow(unsafe_code)]
pub fn mount_idmapped(source: &Path, target: &Path, userns: &File) -> Result<(), RuntimeError> {
    let tree = open_tree_clone(source)?;
    set_idmap(&tree, userns).map_err(|e| io_err("mount_setattr(MOUNT_ATTR_IDMAP)", source, e))?;
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
            tree.as_raw_fd(),
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

/// A detached copy of the mount at `path` (not recursive), closed on exec.
#[allow(unsafe_code)]
fn open_tree_clone(path: &Path) -> Result<OwnedFd, RuntimeError> {
    let invalid = || io_err("open_tree", path, std::io::ErrorKind::InvalidInput.into());
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| invalid())?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: a valid NUL-terminated path; the call only returns an fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(io_err("open_tree", path, std::io::Error::last_os_error()));
    }
    let fd = i32::try_from(fd).map_err(|_| invalid())?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn set_idmap(tree: &OwnedFd, userns: &File) -> std::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: an open fd with AT_EMPTY_PATH and an empty path; a mount_attr of the size
    // passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
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
