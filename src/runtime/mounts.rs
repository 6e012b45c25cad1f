//! The spec's `mounts`: option strings to mount(2) flags, and mounting one entry inside
//! the rootfs before pivot_root.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::paths::resolve_in_root;
use super::{RuntimeError, io_err, sys_err};

/// What a mount's `options` list means to mount(2).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MountOptions {
    /// Flags for the mount call itself (or the read-only remount of a bind).
    pub flags: MsFlags,
    /// Propagation changes applied after mounting (e.g. MS_REC | MS_SLAVE).
    pub propagation: Option<MsFlags>,
    /// Options the filesystem interprets (mode=755, newinstance, size=...).
    pub data: String,
    pub bind: bool,
    /// `rro`: read-only all the way down, submounts included (mount_setattr).
    pub recursive_readonly: bool,
    /// `idmap`/`ridmap` (runtime-spec 1.2): the bind shows owners through the
    /// container's user namespace; Some(true) for `ridmap`, which maps submounts too.
    pub idmap: Option<bool>,
}

/// (option, clears the flag instead of setting it, flag)
const FLAG_OPTIONS: &[(&str, bool, MsFlags)] = &[
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("suid", true, MsFlags::MS_NOSUID),
    ("nodev", false, MsFlags::MS_NODEV),
    ("dev", true, MsFlags::MS_NODEV),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("atime", true, MsFlags::MS_NOATIME),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
];

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: None,
            data: String::new(),
            bind: false,
            recursive_readonly: false,
            idmap: None,
        }
    }
}

const PROPAGATION_OPTIONS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

pub(super) fn parse_options(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let opt = opt.as_str();
        if let Some((_, clear, flag)) = FLAG_OPTIONS.iter().find(|(name, ..)| *name == opt) {
            out.flags.set(*flag, !clear);
        } else if let Some((_, flags)) = PROPAGATION_OPTIONS.iter().find(|(n, _)| *n == opt) {
            out.propagation = Some(*flags);
        } else if opt == "rro" {
            out.recursive_readonly = true;
        } else if opt == "idmap" || opt == "ridmap" {
            out.idmap = Some(opt == "ridmap");
        } else if opt == "bind" {
            out.bind = true;
            out.flags |= MsFlags::MS_BIND;
        } else if opt == "rbind" {
            out.bind = true;
            out.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
        } else {
            data.push(opt);
        }
    }
    out.data = data.join(",");
    out
}

/// Whether a spec entry is a cgroupfs, which `cgroupfs::mount_view` mounts instead.
pub(super) fn is_cgroupfs(m: &Mount) -> bool {
    matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"))
}

/// Mounts one spec entry (not a cgroupfs) at its destination inside `rootfs`.
pub(super) fn mount_entry(rootfs: &Path, m: &Mount) -> Result<(), RuntimeError> {
    let typ = m.typ().as_deref().unwrap_or("none");
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let target = resolve_in_root(rootfs, m.destination())?;
    if opts.bind {
        let source = m.source().clone().unwrap_or_default();
        bind(&source, &target, &opts)?;
        if opts.recursive_readonly {
            readonly_recursive(&target)?;
        }
    } else {
        create_dir(&target)?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        mount_fs(&source, &target, typ, &opts)?;
    }
    propagate(&target, &opts)
}

pub(super) fn propagate(target: &Path, opts: &MountOptions) -> Result<(), RuntimeError> {
    if let Some(propagation) = opts.propagation {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(sys_err("mount propagation"))?;
    }
    Ok(())
}

fn mount_fs(
    source: &Path,
    target: &Path,
    typ: &str,
    opts: &MountOptions,
) -> Result<(), RuntimeError> {
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    match mount(Some(source), target, Some(typ), opts.flags, data) {
        // A sysfs of a network namespace we do not own cannot be mounted: show the host's
        // read-only instead, as runc does.
        Err(nix::Error::EPERM) if typ == "sysfs" => {
            let ro = MountOptions {
                flags: MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | opts.flags,
                bind: true,
                ..MountOptions::default()
            };
            bind(Path::new("/sys"), target, &ro)
        }
        Err(e) => Err(RuntimeError::Sys {
            op: "mount",
            source: e,
        }),
        Ok(()) => Ok(()),
    }
    .map_err(|e| annotate(e, target))
}

/// Binds `source` on `target` (creating it as a file or directory like the source), then
/// remounts it to apply flags such as `ro`, which a bind mount ignores.
pub(super) fn bind(source: &Path, target: &Path, opts: &MountOptions) -> Result<(), RuntimeError> {
    let is_dir = std::fs::metadata(source)
        .map_err(|e| io_err("stat", source, e))?
        .is_dir();
    if is_dir {
        create_dir(target)?;
    } else {
        create_file(target)?;
    }
    let bind_flags = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
    mount(Some(source), target, None::<&str>, bind_flags, None::<&str>)
        .map_err(sys_err("mount bind"))
        .map_err(|e| annotate(e, target))?;
    let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    if !rest.is_empty() {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(sys_err("remount bind"))
            .map_err(|e| annotate(e, target))?;
    }
    Ok(())
}

/// Makes the mount at `target` and every mount below it read-only, as runc's `rro`
/// (Linux 5.12+): a plain read-only remount leaves submounts writable. nix has no
/// mount_setattr, hence the raw syscall.
#[allow(unsafe_code)]
fn readonly_recursive(target: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        io_err(
            "mount_setattr",
            target,
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid NUL-terminated path and a mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::AT_RECURSIVE | libc::AT_NO_AUTOMOUNT) as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(io_err(
            "mount_setattr read-only recursive",
            target,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether the kernel has mount_setattr (5.12+), which `rro` needs: asked with an
/// invalid fd, it answers EBADF or EINVAL when it exists, ENOSYS when not.
#[allow(unsafe_code)]
pub fn supports_recursive_readonly() -> bool {
    // SAFETY: no pointers are dereferenced with a NULL path and attr of size 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<libc::mount_attr>(),
            0,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// Adds the target path to a mount(2) error, which nix's errors lack.
fn annotate(e: RuntimeError, target: &Path) -> RuntimeError {
    match e {
        RuntimeError::Sys { op, source } => RuntimeError::Io {
            op,
            path: target.to_path_buf(),
            source: std::io::Error::from_raw_os_error(source as i32),
        },
        other => other,
    }
}

pub(super) fn create_dir(path: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(path).map_err(|e| io_err("mkdir", path, e))
}

pub(super) fn create_file(path: &Path) -> Result<(), RuntimeError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| io_err("create", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_flags_data_and_propagation() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620");
        assert!(!o.bind);

        let o = opts(&["rbind", "rprivate", "rro"]);
        assert!(o.bind && o.recursive_readonly && o.idmap.is_none());
        assert_eq!(opts(&["rbind", "ridmap"]).idmap, Some(true));
        assert_eq!(opts(&["bind", "idmap"]).idmap, Some(false));
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(o.data, "");

        let o = opts(&["rbind", "ro", "rslave"]);
        assert!(o.bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, Some(MsFlags::MS_SLAVE | MsFlags::MS_REC));
        assert_eq!(o.data, "");
    }

    #[test]
    fn later_options_override_earlier() {
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(opts(&["nodev", "dev", "nodev"]).flags, MsFlags::MS_NODEV);
    }
}
