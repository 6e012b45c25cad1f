//! The daemon's side of a streaming exec (`ExecStream` in monitor.proto) and of an
//! attachment (`Attach`): one connection each, the stdio fds received with the start
//! reply, the end (exit code, AttachEnded) read from the same connection. Dropping the
//! handle closes the connection: the monitor then kills the exec'd process, or drops
//! the attacher.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::MonitorError;
use super::client::{MonitorClient, read_response, remote_error, unexpected};
use super::frame;
use super::proto::{self, request::Kind as Req, response::Kind as Resp};

/// A running streaming exec, or an attachment to a container's stdio: the daemon's
/// ends of the stdio, and the connection the end arrives on.
#[derive(Debug)]
pub struct StreamingExec {
    /// The exec'd process's pid; 0 for an attachment.
    pub pid: i32,
    /// For an exec's tty, a duplicate of the pty master (as stdout is).
    pub stdin: Option<OwnedFd>,
    /// `None` for an attachment that did not ask for it.
    pub stdout: Option<OwnedFd>,
    /// `None` with a tty: the terminal merges it into stdout.
    pub stderr: Option<OwnedFd>,
    /// A pty master to set the terminal's size on.
    pub resize: Option<OwnedFd>,
    /// stdin and stdout are a pty master (an exec's tty), not pipes.
    pub pty: bool,
    conn: UnixStream,
    socket: std::path::PathBuf,
}

/// At most this many fds come with a start reply.
const MAX_FDS: usize = 4;

impl MonitorClient {
    /// Starts `args` in container `id`, stdin connected if `stdin` is set, on a pty
    /// if `tty` is.
    pub async fn exec_stream(
        &self,
        id: &str,
        args: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<StreamingExec, MonitorError> {
        let req = Req::ExecStream(proto::ExecStream {
            id: id.into(),
            args,
            stdin,
            tty,
        });
        let (resp, fds, conn) = self.start_stream(req).await?;
        let pid = match resp {
            Resp::ExecStarted(s) => s.pid,
            other => return Err(unexpected("exec_stream", &other)),
        };
        let stdio = unpack_exec(fds, stdin, tty)?;
        Ok(stdio.into_stream(pid, tty, conn, self.socket()))
    }

    /// Attaches to container `id`'s stdio; the reply says which streams it has.
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<StreamingExec, MonitorError> {
        let req = Req::Attach(proto::Attach {
            id: id.into(),
            stdin,
            stdout,
            stderr,
        });
        let (resp, fds, conn) = self.start_stream(req).await?;
        let Resp::AttachStarted(started) = resp else {
            return Err(unexpected("attach", &resp));
        };
        let stdio = unpack_attach(fds, &started)?;
        Ok(stdio.into_stream(0, false, conn, self.socket()))
    }

    /// Sends `req` on a new connection; the start reply and the fds that came with it.
    async fn start_stream(
        &self,
        req: Req,
    ) -> Result<(Resp, Vec<OwnedFd>, UnixStream), MonitorError> {
        let mut conn = self.connect().await?;
        let unavailable = |source| MonitorError::Unavailable {
            socket: self.socket().to_owned(),
            source,
        };
        let req = proto::Request { kind: Some(req) };
        conn.write_all(&frame::encode(&req))
            .await
            .map_err(unavailable)?;
        let (first, fds) = recv_with_fds(&conn).await.map_err(unavailable)?;
        let resp = read_rest(&mut conn, first).await.map_err(unavailable)?;
        match resp.kind {
            Some(Resp::Error(e)) => Err(remote_error(e)),
            Some(kind) => Ok((kind, fds, conn)),
            None => Err(unexpected("stream start", &Resp::Ok(proto::Ok {}))),
        }
    }
}

impl StreamingExec {
    /// Waits for the end: an exec's exit code (128 + signal if killed); 0 once an
    /// attachment ended.
    pub async fn wait(&mut self) -> Result<i32, MonitorError> {
        match read_response(&mut self.conn, &self.socket).await?.kind {
            Some(Resp::ExecExited(e)) => Ok(e.exit_code),
            Some(Resp::AttachEnded(_)) => Ok(0),
            Some(Resp::Error(e)) => Err(remote_error(e)),
            Some(other) => Err(unexpected("stream wait", &other)),
            None => Err(unexpected("stream wait", &Resp::Ok(proto::Ok {}))),
        }
    }
}

/// The start reply's fds, by role.
#[derive(Default)]
struct Stdio {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    resize: Option<OwnedFd>,
}

impl Stdio {
    fn into_stream(
        self,
        pid: i32,
        pty: bool,
        conn: UnixStream,
        socket: &std::path::Path,
    ) -> StreamingExec {
        StreamingExec {
            pid,
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            resize: self.resize,
            pty,
            conn,
            socket: socket.to_owned(),
        }
    }
}

fn fd_count(got: usize, want: usize) -> Result<(), MonitorError> {
    match got == want {
        true => Ok(()),
        false => Err(MonitorError::Internal(format!(
            "stream start came with {got} fds, not {want}"
        ))),
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, MonitorError> {
    fd.try_clone()
        .map_err(|e| MonitorError::Internal(format!("dup of the pty: {e}")))
}

/// An exec's fds: the pipes' ends in order, or for a tty the pty master, which is also
/// stdin (if asked) and what resizes go to.
fn unpack_exec(fds: Vec<OwnedFd>, stdin: bool, tty: bool) -> Result<Stdio, MonitorError> {
    if tty {
        fd_count(fds.len(), 1)?;
        let master = fds.into_iter().next();
        let master = master.ok_or_else(|| MonitorError::Internal("no pty master".into()))?;
        return Ok(Stdio {
            stdin: stdin.then(|| dup(&master)).transpose()?,
            resize: Some(dup(&master)?),
            stdout: Some(master),
            stderr: None,
        });
    }
    fd_count(fds.len(), 2 + usize::from(stdin))?;
    let mut fds = fds.into_iter();
    Ok(Stdio {
        stdin: if stdin { fds.next() } else { None },
        stdout: fds.next(),
        stderr: fds.next(),
        resize: None,
    })
}

/// An attachment's fds, in the order AttachStarted lists them.
fn unpack_attach(fds: Vec<OwnedFd>, got: &proto::AttachStarted) -> Result<Stdio, MonitorError> {
    let flags = [got.stdin, got.stdout, got.stderr, got.resize];
    fd_count(fds.len(), flags.iter().filter(|f| **f).count())?;
    let mut fds = fds.into_iter();
    let mut take = |wanted: bool| if wanted { fds.next() } else { None };
    Ok(Stdio {
        stdin: take(got.stdin),
        stdout: take(got.stdout),
        stderr: take(got.stderr),
        resize: take(got.resize),
    })
}

/// The first bytes of the reply and the fds that came with them.
async fn recv_with_fds(conn: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    loop {
        conn.readable().await?;
        match conn.try_io(Interest::READABLE, || recv_once(conn.as_raw_fd())) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok((bytes, _)) if bytes.is_empty() => {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            r => return r,
        }
    }
}

#[allow(unsafe_code)]
fn recv_once(fd: RawFd) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = [0u8; 4];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in this process for us.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    let n = msg.bytes;
    Ok((buf[..n].to_vec(), fds))
}

/// The response frame whose first bytes are `first`.
async fn read_rest(conn: &mut UnixStream, first: Vec<u8>) -> std::io::Result<proto::Response> {
    let mut header = [0u8; 4];
    header[..first.len()].copy_from_slice(&first);
    conn.read_exact(&mut header[first.len()..]).await?;
    let len = frame::body_len(header, frame::MAX_RESPONSE)
        .map_err(|t| std::io::Error::other(format!("a {}-byte frame", t.len)))?;
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    use prost::Message;
    proto::Response::decode(&body[..]).map_err(std::io::Error::other)
}
