//! Process-wide setup of the monitor, its listening socket and small fd helpers. Only
//! `serve` calls the setup, never a test running inside the test harness.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::MonitorError;

/// Binds the monitor socket (0600), unless a live monitor already answers on it.
pub fn listen(socket: &Path) -> Result<UnixListener, MonitorError> {
    if UnixStream::connect(socket).is_ok() {
        return Err(MonitorError::AlreadyRunning(socket.into()));
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(MonitorError::io("removing stale socket", socket, e)),
    }
    // The umask makes the socket 0600 from the start, with no window for others.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(socket);
    umask(old);
    let listener = bound.map_err(|e| MonitorError::io("binding", socket, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| MonitorError::io("configuring", socket, e))?;
    Ok(listener)
}

/// Gives the heap's free pages back to the kernel. Reading a bundle's config.json (with
/// a seccomp profile, about 20 KiB of JSON) and compiling its filter free what they
/// allocate, but glibc keeps those pages, and in a monitor they would stay private dirty
/// for its whole life.
#[allow(unsafe_code)]
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only touches the allocator's own state, under its lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Detaches from the daemon's session, becomes the subreaper of the containers and
/// drops whatever descriptors the launcher leaked.
///
/// SIGPIPE needs no handling: the Rust runtime ignores it before `main`, so a write to a
/// closed connection fails with EPIPE. The container runtime must reset signal
/// dispositions and the signal mask (SIGCHLD is blocked here) in its children.
pub fn setup_process() -> Result<(), MonitorError> {
    // EPERM means we already lead a process group (started by hand); that is fine.
    let _ = nix::unistd::setsid();
    // Do not pin whatever filesystem the daemon was started in.
    std::env::set_current_dir("/")
        .map_err(|e| MonitorError::io("changing directory to", "/", e))?;
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(MonitorError::sys("prctl(PR_SET_CHILD_SUBREAPER)"))?;
    close_inherited_fds()
}

fn close_inherited_fds() -> Result<(), MonitorError> {
    let dir = Path::new("/proc/self/fd");
    let entries = std::fs::read_dir(dir).map_err(|e| MonitorError::io("listing", dir, e))?;
    // Collect first: the directory iterator holds an fd of its own.
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // EBADF is the read_dir fd, already closed.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

/// Blocks SIGCHLD and returns a non-blocking signalfd that reports it.
pub fn sigchld_fd() -> Result<SignalFd, MonitorError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(MonitorError::sys("blocking SIGCHLD"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(MonitorError::sys("signalfd"))
}

/// Empties the signalfd; signals coalesce, so the caller reaps everything afterwards.
pub fn drain_signals(fd: &SignalFd) {
    while let Ok(Some(_)) = fd.read_signal() {}
}

/// One reaped child: its pid and its status as a shell would report it.
pub struct Exit {
    pub pid: Pid,
    pub code: i32,
}

/// Reaps every child that has exited.
pub fn reap_all() -> Vec<Exit> {
    let mut exits = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => exits.push(Exit { pid, code }),
            Ok(WaitStatus::Signaled(pid, sig, _)) => exits.push(Exit {
                pid,
                code: 128 + sig as i32,
            }),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            // Stops and continues are not asked for; other errors cannot be acted on.
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    exits
}

/// A pipe whose read end (ours) is non-blocking and whose write end is for a child.
pub struct Pipe {
    pub read: File,
    pub write: OwnedFd,
}

pub fn pipe() -> Result<Pipe, MonitorError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(MonitorError::sys("pipe2"))?;
    set_nonblocking(&r)?;
    Ok(Pipe {
        read: File::from(r),
        write: w,
    })
}

pub fn set_nonblocking(fd: impl AsFd) -> Result<(), MonitorError> {
    let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(MonitorError::sys("fcntl(F_GETFL)"))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(MonitorError::sys("fcntl(F_SETFL)"))?;
    Ok(())
}

/// What one non-blocking read produced.
pub enum ReadOutcome {
    Data(usize),
    WouldBlock,
    Eof,
}

/// Reads once, folding EINTR/EAGAIN and EOF (and read errors, which end a pipe just
/// the same) into [`ReadOutcome`].
pub fn read_some(f: &mut File, buf: &mut [u8]) -> ReadOutcome {
    loop {
        match f.read(buf) {
            Ok(0) => return ReadOutcome::Eof,
            Ok(n) => return ReadOutcome::Data(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
            Err(_) => return ReadOutcome::Eof,
        }
    }
}
