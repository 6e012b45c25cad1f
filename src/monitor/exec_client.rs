//! The daemon's side of a streaming exec (`ExecStream` in monitor.proto): one
//! connection per exec, the process's stdio fds received with the start reply, the
//! exit read from the same connection. Dropping the handle closes the connection, and
//! the monitor then kills the process.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use super::MonitorError;
use super::client::{MonitorClient, read_response, remote_error, unexpected};
use super::frame;
use super::proto::{self, request::Kind as Req, response::Kind as Resp};

/// A running streaming exec: its pid, the daemon's ends of its stdio, and the
/// connection its exit arrives on.
#[derive(Debug)]
pub struct StreamingExec {
    pub pid: i32,
    /// For a tty, a duplicate of the pty master (as stdout is).
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    /// `None` for a tty: the terminal merges it into stdout.
    pub stderr: Option<OwnedFd>,
    conn: UnixStream,
    socket: std::path::PathBuf,
}

/// At most this many fds come with a start reply.
const MAX_FDS: usize = 3;

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
        let mut conn = self.connect().await?;
        let unavailable = |source| MonitorError::Unavailable {
            socket: self.socket().to_owned(),
            source,
        };
        let req = proto::Request {
            kind: Some(Req::ExecStream(proto::ExecStream {
                id: id.into(),
                args,
                stdin,
                tty,
            })),
        };
        conn.write_all(&frame::encode(&req))
            .await
            .map_err(unavailable)?;
        let (first, fds) = recv_with_fds(&conn).await.map_err(unavailable)?;
        let resp = read_rest(&mut conn, first).await.map_err(unavailable)?;
        let pid = match resp.kind {
            Some(Resp::ExecStarted(s)) => s.pid,
            Some(Resp::Error(e)) => return Err(remote_error(e)),
            Some(other) => return Err(unexpected("exec_stream", &other)),
            None => return Err(unexpected("exec_stream", &Resp::Ok(proto::Ok {}))),
        };
        let (stdin, stdout, stderr) = unpack(fds, stdin, tty)?;
        Ok(StreamingExec {
            pid,
            stdin,
            stdout,
            stderr,
            conn,
            socket: self.socket().to_owned(),
        })
    }
}

impl StreamingExec {
    /// Waits for the process to exit; its exit code (128 + signal if killed).
    pub async fn wait(&mut self) -> Result<i32, MonitorError> {
        match read_response(&mut self.conn, &self.socket).await?.kind {
            Some(Resp::ExecExited(e)) => Ok(e.exit_code),
            Some(Resp::Error(e)) => Err(remote_error(e)),
            Some(other) => Err(unexpected("exec_stream wait", &other)),
            None => Err(unexpected("exec_stream wait", &Resp::Ok(proto::Ok {}))),
        }
    }
}

/// The start reply's fds as (stdin, stdout, stderr): the pipes' ends in order, or for
/// a tty the pty master as stdout and, duplicated, as stdin.
type Stdio = (Option<OwnedFd>, OwnedFd, Option<OwnedFd>);

fn unpack(mut fds: Vec<OwnedFd>, stdin: bool, tty: bool) -> Result<Stdio, MonitorError> {
    let want = match (tty, stdin) {
        (true, _) => 1,
        (false, true) => 3,
        (false, false) => 2,
    };
    if fds.len() != want {
        return Err(MonitorError::Internal(format!(
            "exec start came with {} fds, not {want}",
            fds.len()
        )));
    }
    let internal = |e: std::io::Error| MonitorError::Internal(format!("dup of the pty: {e}"));
    if tty {
        let master = fds.remove(0);
        let input = stdin
            .then(|| master.try_clone().map_err(internal))
            .transpose()?;
        return Ok((input, master, None));
    }
    let err = fds.pop();
    let out = fds.remove(fds.len() - 1);
    Ok((fds.pop(), out, err))
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
