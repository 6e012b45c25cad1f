//! Which mount holds a path, and its propagation, from `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use super::{MountError, io_err};

#[derive(Debug, PartialEq, Eq)]
pub(super) struct MountInfo {
    pub mount_point: PathBuf,
    /// The optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
}

impl MountInfo {
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }

    pub fn is_slave(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("master:"))
    }
}

/// The mount `path` (absolute, symlinks resolved) lives on in the daemon's namespace.
pub(super) fn lookup(path: &Path) -> Result<MountInfo, MountError> {
    let file = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(file).map_err(io_err("reading", file))?;
    containing(&text, path).ok_or_else(|| MountError::Io {
        op: "finding the mount of",
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// The deepest mount point that contains `path`; of mounts stacked on one point, the
/// last listed (the visible one).
fn containing(text: &str, path: &Path) -> Option<MountInfo> {
    let mut best: Option<MountInfo> = None;
    for info in text.lines().filter_map(parse_line) {
        let depth = info.mount_point.components().count();
        let deeper = best
            .as_ref()
            .is_none_or(|b| depth >= b.mount_point.components().count());
        if path.starts_with(&info.mount_point) && deeper {
            best = Some(info);
        }
    }
    best
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`: the fifth field
/// is the mount point, the optional fields run from the seventh to the ` - `.
fn parse_line(line: &str) -> Option<MountInfo> {
    let (head, _) = line.split_once(" - ")?;
    let fields: Vec<&str> = head.split(' ').collect();
    let mount_point = PathBuf::from(unescape(fields.get(4)?));
    let optional = fields.get(6..)?.iter().map(|s| s.to_string()).collect();
    Some(MountInfo {
        mount_point,
        optional,
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\NNN` (octal).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
67 27 254:0 /tmp/a /tmp/a rw,relatime shared:1 - ext4 /dev/vda rw
68 67 254:0 /tmp/b /tmp/a/in rw,relatime master:1 - ext4 /dev/vda rw
69 27 0:40 / /tmp/with\\040space rw shared:7 master:3 - tmpfs tmpfs rw
70 27 0:41 / /tmp/ab rw - tmpfs tmpfs rw
71 67 0:42 / /tmp/a rw,relatime - tmpfs tmpfs rw
";

    fn find(path: &str) -> MountInfo {
        containing(TABLE, Path::new(path)).expect(path)
    }

    #[test]
    fn the_deepest_containing_mount_wins() {
        assert_eq!(find("/etc/x").mount_point, Path::new("/"));
        let inner = find("/tmp/a/in/deeper");
        assert_eq!(inner.mount_point, Path::new("/tmp/a/in"));
        assert!(inner.is_slave() && !inner.is_shared());
        // Component-wise: /tmp/ab is not under /tmp/a.
        assert_eq!(find("/tmp/ab/x").optional, Vec::<String>::new());
    }

    #[test]
    fn the_last_of_stacked_mounts_is_the_visible_one() {
        let top = find("/tmp/a/file");
        assert_eq!(top.mount_point, Path::new("/tmp/a"));
        assert!(!top.is_shared(), "{top:?}");
    }

    #[test]
    fn escaped_paths_and_several_optional_fields() {
        let m = find("/tmp/with space/f");
        assert_eq!(m.mount_point, Path::new("/tmp/with space"));
        assert!(m.is_shared() && m.is_slave());
    }
}
