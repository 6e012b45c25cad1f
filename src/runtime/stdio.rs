//! File descriptors of a container process: its stdio on 0..2 and nothing else across
//! execve.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};

use super::{RuntimeError, Stdio, io_err, sys_err};

/// A duplicate of `fd` numbered 3 or above (and close-on-exec), so that installing stdio
/// on 0..2 cannot overwrite it.
pub(super) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, RuntimeError> {
    fd.try_clone()
        .map_err(|e| io_err("dup", Path::new("fd"), e))
}

/// In the child: makes the given fds its 0, 1 and 2 (stdin defaults to /dev/null). A
/// console comes later, once the container's devpts is reachable: until then all three
/// are /dev/null.
pub(super) fn install(stdio: Stdio) -> Result<(), RuntimeError> {
    let (stdin, stdout, stderr) = match stdio {
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => (stdin, Some(stdout), Some(stderr)),
        Stdio::Console => (None, None, None),
    };
    // Move all three out of 0..2 first: one of them may already sit on a target number.
    let stdin = above_stdio(stdin.map_or_else(null, Ok)?)?;
    let stdout = above_stdio(stdout.map_or_else(null, Ok)?)?;
    let stderr = above_stdio(stderr.map_or_else(null, Ok)?)?;
    dup2_stdin(&stdin).map_err(sys_err("dup2 stdin"))?;
    dup2_stdout(&stdout).map_err(sys_err("dup2 stdout"))?;
    dup2_stderr(&stderr).map_err(sys_err("dup2 stderr"))?;
    Ok(())
}

fn null() -> Result<OwnedFd, RuntimeError> {
    let null = Path::new("/dev/null");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(null)
        .map_err(|e| io_err("open", null, e))?;
    Ok(file.into())
}

/// Marks every fd above 2 close-on-exec, so nothing the caller had open (the monitor's
/// sockets, other containers' pipes) leaks into the container.
pub(super) fn close_on_exec_above_stdio() -> Result<(), RuntimeError> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags.
    let rc = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    let dir = Path::new("/proc/self/fd");
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("readdir", dir, e))?;
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a number that may already be closed fails harmlessly (EBADF).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Closes every fd above 2 except `keep`. Only for a forked child that never returns
/// (it execs or `_exit`s), so no Rust owner of a closed fd runs its destructor later.
pub(super) fn close_all_except(keep: &[RawFd]) -> Result<(), RuntimeError> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut low = 3u32;
    for fd in keep.into_iter().chain([u32::MAX]) {
        if fd > low {
            close_range(low, fd - 1)?;
        }
        low = fd.saturating_add(1);
    }
    Ok(())
}

fn close_range(first: u32, last: u32) -> Result<(), RuntimeError> {
    // SAFETY: see close_all_except: the caller guarantees nothing uses these fds again.
    let rc = unsafe { libc::close_range(first, last, 0) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(io_err("close_range", Path::new("/proc/self/fd"), e));
    }
    Ok(())
}

/// Writes `msg` to fd 2 without std's stderr lock, which another thread of the parent
/// may have held at fork time.
pub(super) fn write_stderr(msg: &str) {
    let stderr = std::io::stderr();
    let fd = stderr.as_raw_fd();
    // SAFETY: fd 2 and a live buffer; a failed write is ignored as there is nowhere left
    // to report it.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}
