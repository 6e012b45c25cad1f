//! Exec and attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every
//! binary message's first byte names its stream (`remotecommand::Channel`). The process
//! starts (or the attachment begins) at once; stdout and stderr go out on channels 1 and 2, channel 0 feeds stdin (v5's
//! close message on 255 ends it), 4 carries resizes, and the exit goes on 3 as v4's
//! Status. A client that goes away ends the relay, and the process with it.

use std::os::fd::OwnedFd;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::Exec;
use super::exec::{receiver, sender, set_size};
use super::remotecommand::{Channel, Protocol, ResizeDecoder, ws_frame, ws_parse};

pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const CHUNK: usize = 32 * 1024;

/// Serves one exec on an upgraded WebSocket connection.
pub async fn run<IO>(io: IO, exec: Exec, idle: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut source) = ws.split();
    let mut process = match exec.start().await {
        Ok(p) => p,
        Err(msg) => {
            let msg = Protocol::V4.failure_message(&msg);
            let _ = sink
                .send(Message::binary(ws_frame(Channel::Error, &msg)))
                .await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(normal))).await;
    });
    let input = Input::new(process.stdin.take(), process.resize.take(), process.pty);
    let reader = async {
        let mut input = input;
        loop {
            match tokio::time::timeout(idle, source.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => input.handle(&b).await,
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    };
    let relay = async {
        let code = output(&mut process, exec.stdout, exec.stderr, &out_tx).await;
        let status = match code {
            Ok(code) => Protocol::V4.exit_message(code),
            Err(e) => Protocol::V4.failure_message(&e),
        };
        // The channels end with the connection's normal close: client-go reads them
        // to that end, and a server's close message (255) is only for clients to send.
        let _ = out_tx
            .send(Message::binary(ws_frame(Channel::Error, &status)))
            .await;
    };
    tokio::select! {
        () = relay => {}
        () = reader => tracing::debug!(container = %exec.container_id, "exec client went away"),
    }
    drop(out_tx);
    let _ = writer.await;
}

/// What the client sends: stdin, its end, and terminal sizes.
struct Input {
    stdin: Option<pipe::Sender>,
    master: Option<OwnedFd>,
    resize: ResizeDecoder,
}

impl Input {
    fn new(stdin: Option<OwnedFd>, master: Option<OwnedFd>, pty: bool) -> Self {
        Input {
            stdin: stdin.and_then(|fd| sender(fd, pty).ok()),
            master,
            resize: ResizeDecoder::default(),
        }
    }

    async fn handle(&mut self, message: &[u8]) {
        match ws_parse(message) {
            Some((Channel::Stdin, data)) => {
                if let Some(s) = &mut self.stdin
                    && s.write_all(data).await.is_err()
                {
                    self.stdin = None;
                }
            }
            Some((Channel::Close, [0])) => self.stdin = None,
            Some((Channel::Resize, data)) => {
                let sizes = self.resize.feed(data).unwrap_or_default();
                if let Some(m) = &self.master {
                    sizes.into_iter().for_each(|s| set_size(m, s));
                }
            }
            _ => {}
        }
    }
}

/// Relays stdout and stderr until they end, then waits for the exit code (an
/// attachment's end).
async fn output(
    process: &mut crate::monitor::StreamingExec,
    stdout: bool,
    stderr: bool,
    out: &mpsc::Sender<Message>,
) -> Result<i32, String> {
    let pipes = |e: std::io::Error| format!("relaying the process's stdio: {e}");
    let pty = process.pty;
    let o = process.stdout.as_ref().map(|fd| receiver(fd, pty));
    let e = process.stderr.as_ref().map(|fd| receiver(fd, pty));
    let (o, e) = (o.transpose().map_err(pipes)?, e.transpose().map_err(pipes)?);
    tokio::join!(
        copy(o, Channel::Stdout, stdout, out),
        copy(e, Channel::Stderr, stderr, out)
    );
    process.wait().await.map_err(|e| e.to_string())
}

async fn copy(
    mut from: Option<pipe::Receiver>,
    ch: Channel,
    wanted: bool,
    out: &mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; CHUNK];
    while let Some(from) = &mut from
        && let Ok(n @ 1..) = from.read(&mut buf).await
    {
        if wanted
            && out
                .send(Message::binary(ws_frame(ch, &buf[..n])))
                .await
                .is_err()
        {
            return;
        }
    }
}
