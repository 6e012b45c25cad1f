//! One cgroup interface with cgroup v1 and v2 behind it. Used by the daemon (pod cgroups)
//! and by the runtime (container cgroups). The hierarchy root is injectable so unit tests
//! can run against fixture files in a tempdir.

mod fs;
mod stats;
mod v1;
mod v2;

pub use stats::CgroupStats;
#[cfg(test)]
pub use stats::{CpuStats, MemoryStats, PidsStats};

use std::path::{Component, Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid cgroup path {0:?}")]
    InvalidPath(String),
    #[error("cgroup {path}: processes still present after kill")]
    Busy { path: PathBuf },
    /// A limit this host's cgroups cannot express (a v2 key on v1, an unknown hugepage
    /// size).
    #[error("{0}")]
    Unsupported(String),
}

impl crate::error::Classify for CgroupError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            CgroupError::Unsupported(_) => crate::error::Kind::InvalidArgument,
            // Bad cgroup paths never come from a request: the daemon builds them.
            _ => crate::error::Kind::Internal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A cgroup identified by a path relative to the hierarchy root(s), e.g.
/// `crius/pod-<id>/<ctr-id>`.
pub trait CgroupManager: Send + Sync {
    /// Creates the cgroup (and parents) in every relevant hierarchy. Idempotent.
    fn create(&self) -> Result<(), CgroupError>;
    /// Writes the CPU, memory and pids limits in `resources`.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Moves a process into the cgroup.
    fn add_process(&self, pid: Pid) -> Result<(), CgroupError>;
    /// Opens the files through which a single-threaded process moves itself into the
    /// cgroup ([`join_self`]): each v1 hierarchy's `tasks`, or v2's `cgroup.procs`. On v1
    /// the kernel migrates a thread that writes "0" to `tasks` without its global
    /// threadgroup lock, whose write side waits for an RCU grace period (a few ms, tens
    /// under load) every time a process is moved by pid.
    fn open_self_join(&self) -> Result<Vec<std::fs::File>, CgroupError>;
    /// Processes currently in the cgroup (not recursive).
    fn processes(&self) -> Result<Vec<Pid>, CgroupError>;
    /// How many processes the kernel's OOM killer has killed in this cgroup: the
    /// `oom_kill` line of v1's `memory.oom_control` or v2's `memory.events`. 0 when the
    /// memory controller is absent.
    fn oom_kills(&self) -> Result<u64, CgroupError>;
    /// CPU, memory and pids use of the cgroup and its children; `None` if the cgroup
    /// does not exist.
    fn stats(&self) -> Result<Option<CgroupStats>, CgroupError>;
    /// SIGKILLs whatever is left, then removes the cgroup directories. Idempotent.
    fn destroy(&self) -> Result<(), CgroupError>;
}

/// Writes each hugepage limit to `<dir>/hugetlb.<size>.<suffix>` (`dir` is `None` without
/// a hugetlb controller). kubelet sends a 0 limit for every page size in
/// /sys/kernel/mm/hugepages, whether or not the controller is there: like runc, those
/// are skipped when it cannot be written; a real limit is an error then.
fn apply_hugepages(
    dir: Option<&Path>,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
    suffix: &str,
) -> Result<(), CgroupError> {
    for h in limits {
        let file = dir.map(|d| d.join(format!("hugetlb.{}.{suffix}", h.page_size())));
        let Some(file) = file.filter(|f| f.exists()) else {
            if h.limit() == 0 {
                continue;
            }
            return Err(CgroupError::Unsupported(format!(
                "hugepage size {} is not available on this host",
                h.page_size()
            )));
        };
        fs::write(&file, &h.limit().to_string())?;
    }
    Ok(())
}

/// The value of `key` in a flat-keyed cgroup file (`key value` per line).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `oom_kill` from a flat-keyed memory file that may not exist (no memory controller).
fn oom_kill_count(file: &Path) -> Result<u64, CgroupError> {
    if !file.exists() {
        return Ok(0);
    }
    Ok(keyed_value(&fs::read(file)?, "oom_kill").unwrap_or(0))
}

/// Moves the calling (single-threaded) process into the cgroup whose files
/// [`CgroupManager::open_self_join`] opened.
pub fn join_self(files: &[std::fs::File]) -> Result<(), CgroupError> {
    use std::os::unix::fs::FileExt;
    for f in files {
        f.write_at(b"0", 0).map_err(|e| CgroupError::Io {
            op: "joining",
            path: std::path::PathBuf::from("the cgroup"),
            source: e,
        })?;
    }
    Ok(())
}

/// Detects which hierarchy `root` holds: a cgroup2 mount at `root` means v2, anything else
/// (per-controller v1 mounts, possibly with a v2 `unified` beside them) means v1.
pub fn detect(root: &Path) -> Version {
    if root.join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// The manager for `path` under `root`, for whichever version `root` holds.
/// `path` is relative to the hierarchy root; a leading '/' is accepted.
pub fn manager(root: &Path, path: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let rel = relative_path(path)?;
    Ok(match detect(root) {
        Version::V1 => Box::new(v1::V1Manager::new(root, rel)),
        Version::V2 => Box::new(v2::V2Manager::new(root, rel)),
    })
}

/// Validates a cgroup path: relative after stripping one leading '/', no `..`, non-empty.
fn relative_path(path: &str) -> Result<PathBuf, CgroupError> {
    let trimmed = path.trim_start_matches('/');
    let rel = PathBuf::from(trimmed);
    let all_normal = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if trimmed.is_empty() || !all_normal {
        return Err(CgroupError::InvalidPath(path.to_string()));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_path_accepts_leading_slash_and_rejects_escapes() {
        assert_eq!(
            relative_path("/crius/pod-1").unwrap(),
            PathBuf::from("crius/pod-1")
        );
        assert_eq!(
            relative_path("crius/a/b").unwrap(),
            PathBuf::from("crius/a/b")
        );
        assert!(relative_path("").is_err());
        assert!(relative_path("/").is_err());
        assert!(relative_path("crius/../etc").is_err());
        assert!(relative_path("./x").is_err());
    }

    #[test]
    fn destroy_removes_nested_dirs_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("pids")).unwrap();
        std::fs::create_dir_all(r.join("memory")).unwrap();
        let pod = manager(r, "/crius/pod-1").unwrap();
        pod.create().unwrap();
        manager(r, "crius/pod-1/ctr").unwrap().create().unwrap();
        assert!(r.join("memory/crius/pod-1/ctr").is_dir());
        pod.destroy().unwrap();
        assert!(!r.join("pids/crius/pod-1").exists());
        assert!(!r.join("memory/crius/pod-1").exists());
        assert!(
            r.join("memory/crius").is_dir(),
            "only the cgroup itself goes"
        );
        pod.destroy().unwrap();
    }

    #[test]
    fn oom_kill_read_from_the_memory_file_of_either_version() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("memory/crius/c")).unwrap();
        let v1 = manager(r, "crius/c").unwrap();
        assert_eq!(
            v1.oom_kills().unwrap(),
            0,
            "no file yet: no memory controller"
        );
        std::fs::write(
            r.join("memory/crius/c/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(v1.oom_kills().unwrap(), 2);

        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::write(r.join("cgroup.controllers"), "memory\n").unwrap();
        std::fs::create_dir_all(r.join("crius/c")).unwrap();
        std::fs::write(
            r.join("crius/c/memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(manager(r, "crius/c").unwrap().oom_kills().unwrap(), 1);
    }

    #[test]
    fn detect_by_controllers_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()), Version::V1);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(detect(dir.path()), Version::V2);
    }
}
