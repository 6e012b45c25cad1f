//! File helpers shared by the v1 and v2 managers: every error carries the path.

use std::io::ErrorKind;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::CgroupError;

/// How long `destroy` waits for killed processes to leave a cgroup.
const KILL_WAIT: Duration = Duration::from_secs(2);

pub(super) fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|e| io_err("write", path, e))
}

pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_err("read", path, e))
}

pub(super) fn create_dir_all(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|e| io_err("mkdir", path, e))
}

/// Pids listed in a `cgroup.procs` file; a missing file (cgroup gone) is an empty list.
pub(super) fn read_procs(dir: &Path) -> Result<Vec<Pid>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", &path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .map(Pid::from_raw)
        .collect())
}

pub(super) fn add_proc(dir: &Path, pid: Pid) -> Result<(), CgroupError> {
    write(&dir.join("cgroup.procs"), &pid.to_string())
}

/// `dir/file` open for writing: `tasks` (v1) or `cgroup.procs` (v2), for `join_self`.
pub(super) fn open_for_join(dir: &Path, file: &str) -> Result<std::fs::File, CgroupError> {
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_err("opening", &path, e))
}

/// SIGKILLs every process in `dir` and its descendants, waits for them to leave, then
/// removes the directories bottom-up. A missing `dir` is success.
pub(super) fn kill_and_remove(dir: &Path) -> Result<(), CgroupError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("readdir", dir, e))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_and_remove(&entry.path())?;
        }
    }
    kill_all(dir)?;
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("rmdir", dir, e)),
    }
}

fn kill_all(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let procs = read_procs(dir)?;
        if procs.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Busy {
                path: dir.to_path_buf(),
            });
        }
        for pid in procs {
            // ESRCH: it exited between the read and the kill, which is what we want.
            let _ = kill(pid, Signal::SIGKILL);
        }
        sleep(Duration::from_millis(10));
    }
}
