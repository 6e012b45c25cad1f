//! `ContainerConfig.devices`: host device nodes looked up (a directory stands for the
//! device nodes under it, as in containerd) for the spec's `linux.devices` and the
//! devices cgroup's allow rules.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::Device;

use super::MountError;
use crate::error::Kind;

/// One device node as the container gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDevice {
    pub container_path: PathBuf,
    /// 'c' or 'b'.
    pub typ: char,
    pub major: u64,
    pub minor: u64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The cgroup access: a combination of r, w and m.
    pub permissions: String,
}

/// Directories under a device directory that hold no devices of the container's own.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

pub fn resolve_devices(devices: &[Device]) -> Result<Vec<ResolvedDevice>, MountError> {
    let mut out = Vec::new();
    for d in devices {
        let host = Path::new(&d.host_path);
        let fail = |kind, reason: String| MountError::Device {
            host_path: host.to_path_buf(),
            reason,
            kind,
        };
        let resolved = std::fs::canonicalize(host).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(Kind::NotFound, "no such device".into()),
            _ => fail(Kind::InvalidArgument, e.to_string()),
        })?;
        let meta =
            std::fs::metadata(&resolved).map_err(|e| fail(Kind::InvalidArgument, e.to_string()))?;
        let container = PathBuf::from(&d.container_path);
        if meta.is_dir() {
            walk(&resolved, &container, &d.permissions, &mut out)
                .map_err(|e| fail(Kind::Internal, e.to_string()))?;
        } else {
            let dev = node(&meta, container, &d.permissions).ok_or_else(|| {
                fail(
                    Kind::InvalidArgument,
                    "not a character or block device".into(),
                )
            })?;
            out.push(dev);
        }
    }
    Ok(out)
}

/// Every device node of the host's /dev, for a privileged container (containerd's
/// WithHostDevices): the container sees the host's devices and may use all of them.
pub fn host_devices() -> Result<Vec<ResolvedDevice>, MountError> {
    let dev = Path::new("/dev");
    let mut out = Vec::new();
    walk(dev, dev, "rwm", &mut out).map_err(|e| MountError::Device {
        host_path: dev.to_path_buf(),
        reason: e.to_string(),
        kind: Kind::Internal,
    })?;
    Ok(out)
}

fn walk(
    dir: &Path,
    container: &Path,
    permissions: &str,
    out: &mut Vec<ResolvedDevice>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                walk(&entry.path(), &container.join(&name), permissions, out)?;
            }
        } else if name != "console"
            && let Some(dev) = node(&meta, container.join(&name), permissions)
        {
            out.push(dev);
        }
    }
    Ok(())
}

fn node(meta: &std::fs::Metadata, container_path: PathBuf, perms: &str) -> Option<ResolvedDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(ResolvedDevice {
        container_path,
        typ,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        permissions: perms.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(host: &str, container: &str) -> Device {
        Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: "rw".into(),
        }
    }

    #[test]
    fn a_host_node_becomes_a_device_at_the_container_path() {
        let got = resolve_devices(&[device("/dev/null", "/dev/mynull")]).expect("null");
        assert_eq!(got.len(), 1);
        let d = &got[0];
        assert_eq!(d.container_path, Path::new("/dev/mynull"));
        assert_eq!((d.typ, d.major, d.minor), ('c', 1, 3));
        assert_eq!(d.permissions, "rw");
    }

    #[test]
    fn host_devices_are_the_nodes_under_dev() {
        let got = host_devices().expect("walk /dev");
        let null = got
            .iter()
            .find(|d| d.container_path == Path::new("/dev/null"));
        assert_eq!(null.map(|d| (d.typ, d.major, d.minor)), Some(('c', 1, 3)));
        assert!(got.iter().all(|d| d.permissions == "rwm"));
        assert!(!got.iter().any(|d| d.container_path.starts_with("/dev/pts")));
    }

    #[test]
    fn missing_paths_and_regular_files_are_refused() {
        let err = resolve_devices(&[device("/dev/crius-none", "/dev/x")]).unwrap_err();
        assert_eq!(crate::error::Classify::kind(&err), Kind::NotFound, "{err}");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let path = file.path().to_str().expect("utf-8");
        let err = resolve_devices(&[device(path, "/dev/x")]).unwrap_err();
        assert_eq!(crate::error::Classify::kind(&err), Kind::InvalidArgument);
        assert!(err.to_string().contains("not a character or block device"));
    }
}
