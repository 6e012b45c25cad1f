//! The messages the caller and the processes it forks exchange while a container (or an
//! exec'd process) is set up, over a `socketpair`:
//!
//! ```text
//!  caller (monitor)            intermediate                 init (grandchild)
//!  ----------------            ------------                 -----------------
//!  fork ---------------------> setns(ns paths)
//!                              unshare(new ns)
//!                              fork ----------------------> (pid 1 of the new pid ns)
//!        <---- Pid(init) ----- exit(0)                      wait for Continue
//!  waitpid(intermediate)
//!  cgroup: create, apply,
//!  add init
//!        ------------------------ Continue --------------->
//!                                                           mounts, pivot_root, devices,
//!                                                           sysctl, rlimits, user, caps,
//!                                                           resolve the executable
//!        <-------------------- Ready | Error(text) --------
//!  create() returns Created                                 block reading the start pipe
//!  Created::start(): close ------ start pipe ------------->  execve
//! ```
//!
//! `exec` has no intermediate: the caller forks the process straight into the
//! container's pid namespace (`namespaces::PidNsForChildren`); the process moves itself
//! into the cgroup, joins the other namespaces and closes its end (EOF: set up) before
//! it runs the command, or answers Error. For `create`, EOF means the peer died without
//! saying why.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use super::RuntimeError;

const TAG_PID: u8 = b'P';
const TAG_CONTINUE: u8 = b'C';
const TAG_READY: u8 = b'R';
const TAG_ERROR: u8 = b'E';
const TAG_CONSOLE: u8 = b'T';

/// Longest error text accepted, so a confused peer cannot make us allocate wildly.
const MAX_ERROR_LEN: u32 = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    Pid(i32),
    Continue,
    Ready,
    Error(String),
    /// A terminal's master came with this message: [`Channel::take_console`].
    Console,
}

/// One end of the sync channel, and a terminal master received on it.
pub(super) struct Channel(UnixStream, Option<OwnedFd>);

/// A connected pair: (caller's end, child's end). Both are close-on-exec and above fd 2,
/// so installing the container's stdio on 0..2 cannot clobber them.
pub(super) fn channel() -> Result<(Channel, Channel), RuntimeError> {
    let (a, b) = UnixStream::pair().map_err(|e| io_err("socketpair", e))?;
    let a = a.try_clone().map_err(|e| io_err("dup", e))?;
    let b = b.try_clone().map_err(|e| io_err("dup", e))?;
    Ok((Channel(a, None), Channel(b, None)))
}

fn io_err(op: &'static str, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        op,
        path: "sync channel".into(),
        source,
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Channel {
    /// A second handle on the same channel (for a process that forks and lets both
    /// sides talk), also above fd 2.
    pub(super) fn try_clone_channel(&self) -> Result<Channel, RuntimeError> {
        let dup = self.0.try_clone().map_err(|e| io_err("dup", e))?;
        Ok(Channel(dup, None))
    }

    pub(super) fn send(&mut self, msg: &Message) -> Result<(), RuntimeError> {
        let mut buf = Vec::with_capacity(8);
        match msg {
            Message::Pid(pid) => {
                buf.push(TAG_PID);
                buf.extend_from_slice(&pid.to_le_bytes());
            }
            Message::Continue => buf.push(TAG_CONTINUE),
            Message::Console => {
                return Err(RuntimeError::Init(
                    "a console goes with its fd: send_console".into(),
                ));
            }
            Message::Ready => buf.push(TAG_READY),
            Message::Error(text) => {
                let bytes = &text.as_bytes()[..text.len().min(MAX_ERROR_LEN as usize)];
                buf.push(TAG_ERROR);
                buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                buf.extend_from_slice(bytes);
            }
        }
        self.0.write_all(&buf).map_err(|e| io_err("write", e))
    }

    /// Sends a terminal's master: a Console message with the fd attached.
    pub(super) fn send_console(&mut self, master: &OwnedFd) -> Result<(), RuntimeError> {
        let fds = [master.as_raw_fd()];
        let iov = [IoSlice::new(&[TAG_CONSOLE])];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(self.0.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(io_err("sendmsg", e.into())),
            }
        }
    }

    /// The terminal master that came with the last Console message.
    pub(super) fn take_console(&mut self) -> Option<OwnedFd> {
        self.1.take()
    }

    /// The next message; `None` on EOF (the peer exited or closed its end).
    pub(super) fn recv(&mut self) -> Result<Option<Message>, RuntimeError> {
        let Some(tag) = self.recv_tag()? else {
            return Ok(None);
        };
        let msg = match tag {
            TAG_PID => Message::Pid(i32::from_le_bytes(self.read_array()?)),
            TAG_CONTINUE => Message::Continue,
            TAG_READY => Message::Ready,
            TAG_CONSOLE if self.1.is_some() => Message::Console,
            TAG_ERROR => {
                let len = u32::from_le_bytes(self.read_array()?).min(MAX_ERROR_LEN);
                let mut text = vec![0u8; len as usize];
                self.0
                    .read_exact(&mut text)
                    .map_err(|e| io_err("read", e))?;
                Message::Error(String::from_utf8_lossy(&text).into_owned())
            }
            other => {
                return Err(RuntimeError::Init(format!(
                    "sync channel: unknown message tag {other:#x}"
                )));
            }
        };
        Ok(Some(msg))
    }

    /// One tag byte, and the fd a Console message carries. Every message starts with a
    /// write of its own, so a tag byte is always the first byte of a segment.
    #[allow(unsafe_code)]
    fn recv_tag(&mut self) -> Result<Option<u8>, RuntimeError> {
        let mut tag = [0u8; 1];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut tag)];
        let msg = loop {
            let flags = MsgFlags::MSG_CMSG_CLOEXEC;
            match recvmsg::<()>(self.0.as_raw_fd(), &mut iov, Some(&mut space), flags) {
                Ok(m) => break m,
                // The monitor's signal handlers may interrupt the wait for init.
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(io_err("read", e.into())),
            }
        };
        let bytes = msg.bytes;
        let mut received = None;
        for c in msg.cmsgs().map_err(|e| io_err("recvmsg", e.into()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this fd in our table for us.
                    received = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if received.is_some() {
            self.1 = received;
        }
        Ok((bytes > 0).then_some(tag[0]))
    }

    fn read_array(&mut self) -> Result<[u8; 4], RuntimeError> {
        let mut b = [0u8; 4];
        self.0.read_exact(&mut b).map_err(|e| io_err("read", e))?;
        Ok(b)
    }

    /// Waits for the message `want`; an Error message or EOF becomes `RuntimeError::Init`.
    pub(super) fn expect(&mut self, want: Message, stage: &str) -> Result<(), RuntimeError> {
        match self.recv()? {
            Some(m) if m == want => Ok(()),
            Some(Message::Error(text)) => Err(RuntimeError::Init(text)),
            Some(other) => Err(RuntimeError::Init(format!(
                "{stage}: expected {want:?}, got {other:?}"
            ))),
            None => Err(RuntimeError::Init(format!("{stage}: process exited early"))),
        }
    }

    /// Waits for a Pid message.
    pub(super) fn expect_pid(&mut self, stage: &str) -> Result<i32, RuntimeError> {
        match self.recv()? {
            Some(Message::Pid(pid)) => Ok(pid),
            Some(Message::Error(text)) => Err(RuntimeError::Init(text)),
            Some(other) => Err(RuntimeError::Init(format!(
                "{stage}: expected a pid, got {other:?}"
            ))),
            None => Err(RuntimeError::Init(format!("{stage}: process exited early"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (mut a, mut b) = channel().unwrap();
        for m in [
            Message::Pid(4242),
            Message::Continue,
            Message::Ready,
            Message::Error("executable file `x` not found in $PATH".into()),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn a_console_arrives_with_its_fd() {
        let (mut a, mut b) = channel().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        a.send_console(&OwnedFd::from(w)).unwrap();
        a.send(&Message::Ready).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Message::Console));
        assert_eq!(b.recv().unwrap(), Some(Message::Ready));
        let mut got = std::fs::File::from(b.take_console().expect("the fd"));
        got.write_all(b"x").unwrap();
        drop(got);
        let mut r = r;
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
        assert!(b.take_console().is_none());
    }

    #[test]
    fn expect_turns_error_into_init() {
        let (mut a, mut b) = channel().unwrap();
        a.send(&Message::Error("boom".into())).unwrap();
        match b.expect(Message::Ready, "init") {
            Err(RuntimeError::Init(m)) => assert_eq!(m, "boom"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
