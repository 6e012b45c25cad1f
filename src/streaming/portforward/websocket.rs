//! Port-forward over WebSocket, as kubelet serves it: the ports come in `?port=`
//! (repeatable); port i has channel 2i for data and 2i+1 for errors. Every message
//! starts with its channel byte (binary), or its channel digit and base64 (the base64
//! protocol). The server first sends each channel the port, 2 bytes little endian, then
//! connects to all ports at once; a port that cannot be reached gets the reason on its
//! error channel. The WebSocket closes once every port's connection has ended.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Forwarder, pump};
use crate::streaming::activity::Activity;
use crate::streaming::wschannel;

/// The subprotocols accepted for port-forward, in order of preference: SPDY tunneled in
/// WebSocket (`tunnel.rs`), then kubelet's channel forms.
const PROTOCOLS: [&str; 3] = [
    super::tunnel::PROTOCOL,
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];
/// Channel bytes run to 255: two per port.
const MAX_PORTS: usize = 128;

/// The ports of `?port=80&port=8080`: at least one, each in 1..=65535.
pub fn ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k != "port" {
            continue;
        }
        match v.parse::<u16>() {
            Ok(p) if p > 0 => ports.push(p),
            _ => return Err(format!("invalid port {v:?}")),
        }
    }
    if ports.is_empty() || ports.len() > MAX_PORTS {
        return Err(format!(
            "between 1 and {MAX_PORTS} \"port\" query parameters required"
        ));
    }
    Ok(ports)
}

/// The first supported protocol the client offers; none if it offers none of them.
pub fn choose_protocol(h: &HeaderMap) -> Option<&'static str> {
    let offered: Vec<String> = h
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Sends messages on one channel.
#[derive(Clone)]
struct Channel {
    id: u8,
    base64: bool,
    out: mpsc::Sender<Message>,
}

impl Channel {
    async fn send(&self, data: &[u8]) -> bool {
        let msg = wschannel::encode(self.base64, self.id, data);
        self.out.send(msg).await.is_ok()
    }
}

pub async fn run<IO>(io: IO, ports: Vec<u16>, base64: bool, fwd: Forwarder)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let (sink, mut source) = ws.split();
    let (out, out_rx) = mpsc::channel::<Message>(64);
    let activity = Activity::new(fwd.idle);
    let fwd = Arc::new(fwd);
    let mut inputs = Vec::new();
    let mut tasks = JoinSet::new();
    for (i, port) in ports.into_iter().enumerate() {
        let data = Channel {
            id: (2 * i) as u8,
            base64,
            out: out.clone(),
        };
        let error = Channel {
            id: data.id + 1,
            ..data.clone()
        };
        data.send(&port.to_le_bytes()).await;
        error.send(&port.to_le_bytes()).await;
        let (tx, rx) = mpsc::channel(16);
        inputs.push(tx);
        tasks.spawn(forward(fwd.clone(), port, rx, data, error));
    }
    drop(out);
    let writer = tokio::spawn(write_loop(sink, out_rx, activity.clone()));
    loop {
        tokio::select! {
            msg = source.next() => {
                activity.touch();
                match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(m)) => {
                        let Some((ch, data)) = wschannel::decode(m, base64) else { continue };
                        let ch = usize::from(ch);
                        // Data for port i on channel 2i; anything else is ignored.
                        if let (0, Some(tx)) = (ch % 2, inputs.get(ch / 2)) {
                            let _ = tx.send(data).await;
                        }
                    }
                }
            }
            done = tasks.join_next(), if !tasks.is_empty() => {
                if done.is_some() && tasks.is_empty() { break }
            }
            () = activity.idle() => break,
        }
    }
    drop(inputs);
    tasks.abort_all();
    let _ = writer.await;
}

/// Sends what the ports' tasks queue; a Close once they have all ended.
async fn write_loop<S>(mut sink: S, mut queued: mpsc::Receiver<Message>, activity: Activity)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(m) = queued.recv().await {
        if sink.send(m).await.is_err() {
            return;
        }
        activity.touch();
    }
    let _ = sink.send(Message::Close(None)).await;
}

async fn forward(
    fwd: Arc<Forwarder>,
    port: u16,
    input: mpsc::Receiver<Vec<u8>>,
    data: Channel,
    error: Channel,
) {
    match fwd.connect(port).await {
        Err(msg) => {
            error.send(msg.as_bytes()).await;
        }
        Ok((tcp, _permit)) => pump(tcp, input, &data).await,
    }
}

impl super::FromClient for mpsc::Receiver<Vec<u8>> {
    async fn next(&mut self) -> Option<Vec<u8>> {
        self.recv().await
    }
}

impl super::ToClient for Channel {
    async fn send(&self, data: &[u8]) -> bool {
        Channel::send(self, data).await
    }

    /// The channel stays: the connection's end closes it.
    async fn finish(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(ports("port=80&port=8080").unwrap(), vec![80, 8080]);
        assert_eq!(ports("x=1&port=1").unwrap(), vec![1]);
        for bad in ["", "port=0", "port=65536", "port=http", "x=1"] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_supported_protocol_offered_is_chosen() {
        let mut h = HeaderMap::new();
        assert_eq!(choose_protocol(&h), None);
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "x, v4.base64.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(choose_protocol(&h), Some("v4.base64.channel.k8s.io"));
    }
}
