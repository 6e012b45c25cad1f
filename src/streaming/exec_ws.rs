//! Exec and attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`, their
//! base64 forms and the older `channel.k8s.io`): every message starts with the channel
//! of its stream (`remotecommand::Channel`, framed by `wschannel`). The process
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
use super::remotecommand::{Channel, Protocol, ResizeDecoder};
use super::wschannel;

/// A WebSocket subprotocol of kubelet's for exec and attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsProtocol {
    pub name: &'static str,
    /// Text messages with the channel as a digit and the payload in base64.
    base64: bool,
    /// What the error channel carries: v4's Status (v4, v5), or a failure's text.
    status: Protocol,
}

const fn ws(name: &'static str, base64: bool, status: Protocol) -> WsProtocol {
    WsProtocol {
        name,
        base64,
        status,
    }
}

/// In crius's order of preference. Only v5 has the close channel (client to server).
pub const PROTOCOLS: [WsProtocol; 5] = [
    ws("v5.channel.k8s.io", false, Protocol::V4),
    ws("v4.channel.k8s.io", false, Protocol::V4),
    ws("v4.base64.channel.k8s.io", true, Protocol::V4),
    ws("channel.k8s.io", false, Protocol::V1),
    ws("base64.channel.k8s.io", true, Protocol::V1),
];
const CHUNK: usize = 128 * 1024;

/// What a client that offers no subprotocol gets, as from kubelet: binary channels,
/// the error channel before v4's Status; no protocol named in the answer.
const UNNAMED: WsProtocol = ws("", false, Protocol::V1);

impl WsProtocol {
    fn frame(self, channel: Channel, data: &[u8]) -> Message {
        wschannel::encode(self.base64, channel as u8, data)
    }
}

/// The client's first offer that crius speaks, in the client's order (kubelet's
/// wsstream handshake); [`UNNAMED`] when it offers none.
pub fn choose(offered: &[String]) -> Option<WsProtocol> {
    if offered.is_empty() {
        return Some(UNNAMED);
    }
    offered
        .iter()
        .find_map(|o| PROTOCOLS.into_iter().find(|p| p.name == o))
}

/// Serves one exec (or attach) on an upgraded WebSocket connection.
pub async fn run<IO>(io: IO, exec: Exec, proto: WsProtocol, idle: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut source) = ws.split();
    // kubelet's first message, empty, on the lowest channel the client reads: the
    // connection is established (clients of the older protocols wait for it).
    let first = match (exec.stdout, exec.stderr) {
        (true, _) => Channel::Stdout,
        (false, true) => Channel::Stderr,
        (false, false) => Channel::Error,
    };
    let _ = sink.send(proto.frame(first, &[])).await;
    let mut process = match exec.start().await {
        Ok(p) => p,
        Err(msg) => {
            let msg = proto.status.failure_message(&msg);
            let _ = sink.send(proto.frame(Channel::Error, &msg)).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let (out_tx, out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(write_loop(sink, out_rx));
    let input = Input::new(process.stdin.take(), process.resize.take(), process.pty);
    let reader = async {
        let mut input = input;
        loop {
            match tokio::time::timeout(idle, source.next()).await {
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return,
                Ok(Some(Ok(m))) => {
                    if let Some((ch, data)) = wschannel::decode(m, proto.base64) {
                        input.handle(ch, &data).await;
                    }
                }
            }
        }
    };
    let relay = async {
        let code = output(&mut process, &exec, proto, &out_tx).await;
        let status = match code {
            Ok(code) => proto.status.exit_message(code),
            Err(e) => proto.status.failure_message(&e),
        };
        // The channels end with the connection's normal close: client-go reads them
        // to that end, and a server's close message (255) is only for clients to send.
        // Before v4, success puts nothing on the error channel.
        if !status.is_empty() {
            let _ = out_tx.send(proto.frame(Channel::Error, &status)).await;
        }
    };
    tokio::select! {
        () = relay => {}
        () = reader => tracing::debug!(container = %exec.container_id, "exec client went away"),
    }
    drop(out_tx);
    let _ = writer.await;
}

/// Sends what the relay queues, then closes normally: client-go reads each channel to
/// that end.
async fn write_loop<S>(mut sink: S, mut queued: mpsc::Receiver<Message>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(m) = queued.recv().await {
        if sink.send(m).await.is_err() {
            return;
        }
    }
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
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

    async fn handle(&mut self, channel: u8, data: &[u8]) {
        match Channel::from_byte(channel).map(|c| (c, data)) {
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
    exec: &Exec,
    proto: WsProtocol,
    out: &mpsc::Sender<Message>,
) -> Result<i32, String> {
    let pipes = |e: std::io::Error| format!("relaying the process's stdio: {e}");
    let pty = process.pty;
    let o = process.stdout.as_ref().map(|fd| receiver(fd, pty));
    let e = process.stderr.as_ref().map(|fd| receiver(fd, pty));
    let (o, e) = (o.transpose().map_err(pipes)?, e.transpose().map_err(pipes)?);
    let to = |ch, wanted| Relay { ch, wanted, proto };
    tokio::join!(
        copy(o, to(Channel::Stdout, exec.stdout), out),
        copy(e, to(Channel::Stderr, exec.stderr), out)
    );
    process.wait().await.map_err(|e| e.to_string())
}

/// Where an output goes: its channel, if the client asked for it.
#[derive(Clone, Copy)]
struct Relay {
    ch: Channel,
    wanted: bool,
    proto: WsProtocol,
}

async fn copy(mut from: Option<pipe::Receiver>, to: Relay, out: &mpsc::Sender<Message>) {
    let mut buf = vec![0u8; CHUNK];
    while let Some(from) = &mut from
        && let Ok(n @ 1..) = from.read(&mut buf).await
    {
        if to.wanted && out.send(to.proto.frame(to.ch, &buf[..n])).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_order_decides_and_none_offered_is_binary_v1() {
        let offered = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pick = |l: &[&str]| choose(&offered(l)).map(|p| p.name);
        assert_eq!(
            pick(&["base64.channel.k8s.io", "v5.channel.k8s.io"]),
            Some("base64.channel.k8s.io")
        );
        assert_eq!(pick(&["x", "v4.channel.k8s.io"]), Some("v4.channel.k8s.io"));
        assert_eq!(pick(&["x"]), None);
        let none = choose(&[]).unwrap();
        assert_eq!(
            (none.name, none.base64, none.status),
            ("", false, Protocol::V1)
        );
    }
}
