//! The blocking reads behind every stats call: cgroup files, the writable layer's walk,
//! `/proc/<pid>/fd`. Run from the blocking pool only. A read that fails is logged and
//! left out, so one odd container never fails a node-wide list.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use tracing::warn;

use crate::image::{Figure, measure};
use crate::runtime::cgroups::{self, CgroupStats};

/// What to read for one container.
#[derive(Debug, Clone)]
pub struct ContainerTarget {
    pub id: String,
    /// Relative to the cgroup root.
    pub cgroup: String,
    pub upper: PathBuf,
    /// Started and not known to have exited: its cgroup may hold a running process.
    pub may_run: bool,
}

/// One container's use at one instant.
#[derive(Debug, Clone, Default)]
pub struct ContainerSample {
    pub at: i64,
    /// `None` unless the container runs: like containerd, an exited (or not yet started)
    /// container reports no CPU or memory, only its writable layer.
    pub cgroup: Option<CgroupStats>,
    pub procs: Vec<Pid>,
    pub writable: Figure,
}

/// Reads one container. Its processes are read first: an empty cgroup means it has
/// exited, whatever its record says yet.
pub fn container(root: &Path, t: &ContainerTarget) -> ContainerSample {
    let mut s = ContainerSample {
        at: crate::id::now_ns(),
        ..Default::default()
    };
    if t.may_run {
        match cgroups::manager(root, &t.cgroup).and_then(|m| Ok((m.processes()?, m.stats()?))) {
            Ok((procs, stats)) if !procs.is_empty() => {
                s.procs = procs;
                s.cgroup = stats;
            }
            Ok(_) => {}
            Err(e) => warn!(container = %t.id, error = %e, "reading the container's cgroup"),
        }
    }
    s.writable = measure(&t.upper);
    s
}

/// A pod cgroup's use (the pod's containers and its monitor); `None` if unreadable.
pub fn pod_cgroup(root: &Path, id: &str, cgroup: &str) -> Option<CgroupStats> {
    match cgroups::manager(root, cgroup).and_then(|m| m.stats()) {
        Ok(s) => s,
        Err(e) => {
            warn!(pod = %id, error = %e, "reading the pod's cgroup");
            None
        }
    }
}

/// Open file descriptors and, among them, sockets, of `procs`. Processes that exit
/// meanwhile are skipped.
pub fn descriptors(procs: &[Pid]) -> (u64, u64) {
    let (mut fds, mut sockets) = (0, 0);
    for pid in procs {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in dir.flatten() {
            fds += 1;
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("socket:") {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

/// Size and free inodes of the filesystem holding `path` (the image filesystem).
#[derive(Debug, Clone, Copy, Default)]
pub struct FsCapacity {
    pub bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

pub fn capacity(path: &Path) -> FsCapacity {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => FsCapacity {
            bytes: s.blocks() * s.fragment_size(),
            inodes: s.files(),
            inodes_free: s.files_free(),
        },
        Err(e) => {
            warn!(path = %path.display(), error = %e, "statvfs of the image filesystem");
            FsCapacity::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_that_cannot_run_reports_only_its_writable_layer() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        std::fs::write(upper.join("f"), vec![1u8; 10_000]).unwrap();
        let target = ContainerTarget {
            id: "c1".into(),
            cgroup: "crius-none/pod-x/c1".into(),
            upper,
            may_run: false,
        };
        let s = container(t.path(), &target);
        assert!(s.cgroup.is_none() && s.procs.is_empty());
        assert_eq!(s.writable.inodes, 2, "the dir and the file");
        assert!(s.writable.bytes >= 10_000, "{:?}", s.writable);
        assert!(s.at > 0);
    }

    #[test]
    fn our_own_descriptors_are_counted() {
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let (fds, sockets) = descriptors(&[nix::unistd::getpid()]);
        assert!(fds >= 4 && sockets >= 1, "{fds} {sockets}");
        drop(sock);
        assert!(capacity(Path::new("/")).bytes > 0);
    }
}
