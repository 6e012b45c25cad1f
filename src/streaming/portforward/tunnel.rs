//! SPDY tunneled through WebSocket, as client-go's `NewSPDYOverWebsocketDialer` speaks
//! it (crictl `--transport websocket`, kubectl through API servers with
//! PortForwardWebsockets): the subprotocol `SPDY/3.1+portforward.k8s.io`, and the SPDY
//! connection's bytes carried as they are in binary messages. The messages are turned
//! back into a byte stream and served by the same SPDY port-forward as a plain upgrade.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{CHUNK, Forwarder};

pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Bytes buffered between the WebSocket and the SPDY session, each way.
const PIPE: usize = 256 * 1024;

pub async fn run<IO>(io: IO, fwd: Forwarder)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (mut sink, mut source) = ws.split();
    let (ours, spdy) = tokio::io::duplex(PIPE);
    let (mut r, mut w) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) if w.write_all(&b).await.is_ok() => {}
                Message::Binary(_) | Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = w.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    super::spdy::run(spdy, fwd).await;
}
