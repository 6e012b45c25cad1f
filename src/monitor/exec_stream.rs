//! Streaming exec, the monitor's part: fork the process as ExecSync does, hand the
//! daemon its ends of the stdio pipes (SCM_RIGHTS) and keep only the reaping. The
//! daemon relays the bytes; the monitor reports the exit on the connection that asked,
//! and kills the process when that connection ends first.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::unistd::Pid;

use super::MonitorError;
use super::sys;
use crate::runtime::{self, ExecOptions, ExecTarget};

/// Bytes a streaming exec's output pipes hold (the kernel's default is 64 KiB).
const STREAM_PIPE: i32 = 1 << 20;

/// A started process and the daemon's ends of its stdio, in protocol order.
pub struct Started {
    pub pid: Pid,
    pub fds: Vec<OwnedFd>,
}

/// Forks `args` in the container with stdio on fresh pipes, or for `tty` on a pty the
/// runtime allocates inside the container (its master is the one fd handed back).
pub fn spawn(
    target: &ExecTarget,
    args: &[String],
    stdin: bool,
    tty: bool,
) -> Result<Started, MonitorError> {
    if args.is_empty() {
        return Err(MonitorError::InvalidArgument("exec needs a command".into()));
    }
    let (stdio, mut fds) = if tty {
        (runtime::Stdio::Console, Vec::new())
    } else {
        pipes(stdin)?
    };
    let spawned = runtime::exec(ExecOptions {
        target,
        args,
        stdio,
    })?;
    if let Some(master) = spawned.console {
        sys::set_nonblocking(&master)?;
        fds.push(master);
    }
    Ok(Started {
        pid: spawned.pid,
        fds,
    })
}

/// Pipes: the stdin write end (if asked), the stdout and stderr read ends for the daemon.
fn pipes(stdin: bool) -> Result<(runtime::Stdio, Vec<OwnedFd>), MonitorError> {
    // The daemon writes stdin and the child reads it: a plain blocking pipe (sys::pipe
    // makes its read end non-blocking, for the monitor's own reads).
    let (child_in, our_in) = if stdin {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(MonitorError::sys("pipe2"))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let (out, err) = (sys::pipe()?, sys::pipe()?);
    // A bulk writer (cat, tar for kubectl cp) blocks less and the daemon reads more
    // per wakeup; where the limit (fs.pipe-max-size) refuses, the default stays.
    for p in [&out.write, &err.write] {
        let _ = nix::fcntl::fcntl(p, nix::fcntl::FcntlArg::F_SETPIPE_SZ(STREAM_PIPE));
    }
    let stdio = runtime::Stdio::Fds {
        stdin: child_in,
        stdout: out.write,
        stderr: err.write,
    };
    let mut fds: Vec<OwnedFd> = our_in.into_iter().collect();
    fds.push(OwnedFd::from(out.read));
    fds.push(OwnedFd::from(err.read));
    Ok((stdio, fds))
}

/// Sends `frame` with `fds` attached to its first byte. The connection is fresh and
/// the frame small, so the socket takes it whole; anything else is the peer's loss.
pub fn send_with_fds(stream: &UnixStream, frame: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < frame.len() {
        let iov = [IoSlice::new(&frame[sent..])];
        let cmsgs: &[ControlMessage] = if sent == 0 { &cmsg } else { &[] };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Which streaming exec belongs to which connection.
#[derive(Default)]
pub struct StreamExecs {
    list: Vec<(Pid, u64)>,
}

impl StreamExecs {
    pub fn add(&mut self, pid: Pid, conn: u64) {
        self.list.push((pid, conn));
    }

    /// The connection to tell that `pid` exited; `None` if it is no streaming exec.
    pub fn on_exit(&mut self, pid: Pid) -> Option<u64> {
        let i = self.list.iter().position(|(p, _)| *p == pid)?;
        Some(self.list.swap_remove(i).1)
    }

    /// The connection `conn` ended: its processes die with it (they are reaped later).
    pub fn hang_up(&self, conn: u64) {
        for (pid, _) in self.list.iter().filter(|(_, c)| *c == conn) {
            let _ = kill(*pid, Signal::SIGKILL);
        }
    }
}
