//! Exec and attach over SPDY: the client opens one stream per `streamType` (error
//! always, then stdin, stdout, stderr as it asked); once they are all there the pod's
//! monitor starts the process (or attaches) and hands back the stdio pipes, and the
//! bytes are relayed here. The exit
//! goes on the error stream in the negotiated protocol's form. If the client goes away
//! first, dropping the monitor connection makes the monitor kill the process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::Exec;
use super::activity::Activity;
use super::remotecommand::{Protocol, ResizeDecoder, Size, StreamType};
use super::spdy::{self, Options, Stream, StreamReader, StreamWriter};

/// How long the client has to open the streams it announced (kubelet's stream creation
/// timeout).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);
/// An exec's connection holds at most these streams (kubelet's five).
const MAX_STREAMS: usize = 8;
/// Read size from an exec's pipes (up to what the monitor sized them to hold).
const CHUNK: usize = 128 * 1024;

#[derive(Default)]
struct Streams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Streams {
    /// Whether every stream the client opens for `exec` is here: client-go opens a
    /// resize stream for a tty when the protocol has one, and no stderr.
    fn complete(&self, exec: &Exec, protocol: Protocol) -> bool {
        self.error.is_some()
            && (!(exec.tty && protocol.resizes()) || self.resize.is_some())
            && (!exec.stdin || self.stdin.is_some())
            && (!exec.stdout || self.stdout.is_some())
            && (!exec.stderr || exec.tty || self.stderr.is_some())
    }

    /// Files `s` by its `streamType`; anything else is reset.
    async fn add(&mut self, s: Stream) {
        let kind = s.headers.get("streamType").and_then(StreamType::parse);
        let slot = match kind {
            Some(StreamType::Error) => &mut self.error,
            Some(StreamType::Stdin) => &mut self.stdin,
            Some(StreamType::Stdout) => &mut self.stdout,
            Some(StreamType::Stderr) => &mut self.stderr,
            Some(StreamType::Resize) => &mut self.resize,
            None => {
                s.writer.reset(spdy::frame::PROTOCOL_ERROR).await;
                return;
            }
        };
        let _ = s.writer.reply().await;
        *slot = Some(s);
    }
}

/// Serves one exec on an upgraded connection.
pub async fn run<IO>(io: IO, exec: Exec, protocol: Protocol, idle: Duration)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let opts = Options {
        max_streams: MAX_STREAMS,
    };
    let mut incoming = spdy::serve(io, opts, Activity::new(idle));
    let mut streams = Streams::default();
    let gathered = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while !streams.complete(&exec, protocol) {
            streams.add(incoming.recv().await?).await;
        }
        Some(())
    })
    .await;
    if !matches!(gathered, Ok(Some(()))) {
        tracing::debug!(container = %exec.container_id, "exec client never opened its streams");
        return;
    }
    let Some(error) = streams.error.take() else {
        return;
    };
    let mut process = match exec.start().await {
        Ok(p) => p,
        Err(msg) => {
            let _ = error.writer.write(&protocol.failure_message(&msg)).await;
            let _ = error.writer.finish().await;
            return;
        }
    };
    tracing::debug!(container = %exec.container_id, pid = process.pid, "exec started");
    let stdin = process.stdin.take();
    if let (Some(master), Some(s)) = (process.resize.take(), streams.resize.take()) {
        tokio::spawn(resizes(s.reader, master));
    }
    let relays = relay(&mut streams, stdin, &mut process);
    // The client going away ends `incoming`: the process then dies with the monitor
    // connection, dropped with `process`.
    let gone = async {
        while let Some(extra) = incoming.recv().await {
            extra.writer.reset(spdy::frame::PROTOCOL_ERROR).await;
        }
    };
    tokio::select! {
        code = relays => {
            let message = match code {
                Ok(code) => protocol.exit_message(code),
                Err(e) => protocol.failure_message(&e),
            };
            if !message.is_empty() {
                let _ = error.writer.write(&message).await;
            }
            let _ = error.writer.finish().await;
        }
        () = gone => tracing::debug!(container = %exec.container_id, "exec client went away"),
    }
}

/// Copies stdin in and stdout/stderr out until the output ends, then waits for the
/// exit code (an attachment's end).
async fn relay(
    streams: &mut Streams,
    stdin: Option<OwnedFd>,
    process: &mut crate::monitor::StreamingExec,
) -> Result<i32, String> {
    let pipes = |e: std::io::Error| format!("relaying the process's stdio: {e}");
    let pty = process.pty;
    let out = process.stdout.as_ref().map(|fd| receiver(fd, pty));
    let err = process.stderr.as_ref().map(|fd| receiver(fd, pty));
    let (out, err) = (
        out.transpose().map_err(pipes)?,
        err.transpose().map_err(pipes)?,
    );
    if let (Some(fd), Some(s)) = (stdin, streams.stdin.take()) {
        tokio::spawn(copy_in(s.reader, sender(fd, pty).map_err(pipes)?));
    }
    let to_out = streams.stdout.take().map(|s| s.writer);
    let to_err = streams.stderr.take().map(|s| s.writer);
    tokio::join!(copy_out(out, to_out), copy_out(err, to_err));
    process.wait().await.map_err(|e| e.to_string())
}

/// A reader of a copy of `fd`: a pipe's read end, or a pty master (no FIFO, and
/// already non-blocking).
pub(super) fn receiver(fd: &OwnedFd, pty: bool) -> std::io::Result<pipe::Receiver> {
    let fd = fd.try_clone()?;
    match pty {
        true => pipe::Receiver::from_owned_fd_unchecked(fd),
        false => pipe::Receiver::from_owned_fd(fd),
    }
}

/// A writer of `fd`: a pipe's write end, or a pty master.
pub(super) fn sender(fd: OwnedFd, pty: bool) -> std::io::Result<pipe::Sender> {
    match pty {
        true => pipe::Sender::from_owned_fd_unchecked(fd),
        false => pipe::Sender::from_owned_fd(fd),
    }
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Applies the client's terminal sizes to the pty; a malformed stream ends them.
async fn resizes(mut from: StreamReader, master: OwnedFd) {
    let mut decoder = ResizeDecoder::default();
    while let Some(data) = from.read().await {
        let sizes = match decoder.feed(&data) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "resize stream ended");
                return;
            }
        };
        for size in sizes {
            set_size(&master, size);
        }
    }
}

#[allow(unsafe_code)]
pub(super) fn set_size(master: &OwnedFd, size: Size) {
    let ws = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if let Err(e) = unsafe { tiocswinsz(master.as_raw_fd(), &ws) } {
        tracing::debug!(error = %e, "TIOCSWINSZ");
    }
}

async fn copy_in(mut from: StreamReader, mut to: pipe::Sender) {
    while let Some(data) = from.read().await {
        if to.write_all(&data).await.is_err() {
            break;
        }
    }
    // Dropping `to` closes the process's stdin: the client finished it.
}

/// Copies a pipe to a stream (or discards it when the client did not ask for it).
/// Without a pipe the stream just ends.
async fn copy_out(mut from: Option<pipe::Receiver>, to: Option<StreamWriter>) {
    let mut buf = vec![0u8; CHUNK];
    let mut to = to;
    while let Some(from) = &mut from
        && let Ok(n @ 1..) = from.read(&mut buf).await
    {
        if let Some(w) = &to
            && w.write(&buf[..n]).await.is_err()
        {
            to = None;
        }
    }
    if let Some(w) = to {
        let _ = w.finish().await;
    }
}
