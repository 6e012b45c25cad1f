//! Resolving paths inside the container's rootfs before pivot_root: a symlink in the image
//! (`/etc -> /host/etc`, `x -> ../../..`) must resolve relative to the rootfs, never to the
//! host, so absolute links restart at the rootfs and `..` stops at it (like chroot).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::RuntimeError;

/// Symlinks followed before giving up, as the kernel's ELOOP limit.
const MAX_SYMLINKS: usize = 40;

/// `path` (absolute or relative, interpreted inside `root`) resolved to a host path under
/// `root`, following symlinks as the container would see them. Components that do not
/// exist yet are kept as they are (mount targets are created afterwards).
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, RuntimeError> {
    let mut pending: VecDeque<OsString> = components(path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&part);
        let Ok(target) = std::fs::read_link(&candidate) else {
            resolved.push(part);
            continue;
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(RuntimeError::Io {
                op: "resolve",
                path: root.join(path.strip_prefix("/").unwrap_or(path)),
                source: std::io::Error::from_raw_os_error(libc::ELOOP),
            });
        }
        if target.is_absolute() {
            resolved.clear();
        }
        for c in components(&target).into_iter().rev() {
            pending.push_front(c);
        }
    }
    Ok(join(root, &resolved))
}

/// Normal and `..` components of `path`; root and `.` are dropped.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        symlink("/", root.join("usr/lib/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        let r = |p: &str| resolve_in_root(root, Path::new(p)).unwrap();
        assert_eq!(r("/lib/x"), root.join("usr/lib/x"));
        assert_eq!(r("lib/x"), root.join("usr/lib/x"));
        assert_eq!(r("/usr/escape/passwd"), root.join("etc/passwd"));
        assert_eq!(r("/../../proc"), root.join("proc"));
        assert_eq!(r("/lib/up/dev/null"), root.join("dev/null"));
        assert_eq!(r("/new/dir/./file"), root.join("new/dir/file"));
        assert!(resolve_in_root(root, Path::new("/loop/x")).is_err());
    }
}
