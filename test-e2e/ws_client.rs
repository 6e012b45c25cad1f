//! A WebSocket remote-command client for exec and attach (`v5.channel.k8s.io` by
//! default): tokio-tungstenite for the WebSocket, and the channel byte client-go puts
//! first in every binary message (0 stdin, 1 stdout, 2 stderr, 3 the Status, 4 resize,
//! 255 the close of a channel), or in the `base64.` protocols a digit then base64 text.

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What a session received, by channel.
#[derive(Debug, Default)]
pub struct Received {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub status: String,
}

impl Received {
    pub fn out_text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    pub fn err_text(&self) -> String {
        String::from_utf8_lossy(&self.err).into_owned()
    }
}

pub struct Session {
    ws: WebSocketStream<TcpStream>,
    /// The `base64.` form: text messages, the channel as a digit.
    base64: bool,
    pub got: Received,
}

impl Session {
    /// Connects to a streaming URL, offering v5.
    pub async fn connect(url: &str) -> Session {
        Session::connect_with(url, "v5.channel.k8s.io").await
    }

    /// Connects offering only `protocol` (none for "").
    pub async fn connect_with(url: &str, protocol: &str) -> Session {
        let ws = url.replacen("http://", "ws://", 1);
        let mut req = ws.as_str().into_client_request().unwrap();
        if !protocol.is_empty() {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        }
        let host = req.uri().authority().unwrap().to_string();
        let tcp = TcpStream::connect(host).await.unwrap();
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        let chosen = resp.headers().get("Sec-WebSocket-Protocol");
        let chosen = chosen.map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            chosen.unwrap_or_default(),
            protocol,
            "the protocol answered"
        );
        Session {
            ws,
            base64: protocol.contains("base64"),
            got: Received::default(),
        }
    }

    /// Sends `data` on channel `ch`.
    pub async fn send(&mut self, ch: u8, data: &[u8]) {
        let m = if self.base64 {
            let text = base64::engine::general_purpose::STANDARD.encode(data);
            Message::text(format!("{ch}{text}"))
        } else {
            let mut m = vec![ch];
            m.extend_from_slice(data);
            Message::binary(m)
        };
        self.ws.send(m).await.unwrap();
    }

    pub async fn stdin(&mut self, data: &[u8]) {
        self.send(0, data).await;
    }

    /// v5's close of stdin.
    pub async fn close_stdin(&mut self) {
        self.send(255, &[0]).await;
    }

    pub async fn resize(&mut self, width: u16, height: u16) {
        let size = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send(4, size.as_bytes()).await;
    }

    /// Reads until `done` holds for what came so far (false if the session ended or
    /// `within` passed first).
    pub async fn read_until(&mut self, within: Duration, done: impl Fn(&Received) -> bool) -> bool {
        let read = async {
            while !done(&self.got) {
                match self.ws.next().await {
                    Some(Ok(m)) => file(&mut self.got, m, self.base64),
                    _ => return false,
                }
            }
            true
        };
        tokio::time::timeout(within, read).await.unwrap_or(false)
    }

    /// Reads to the end of the session (the server's close).
    pub async fn finish(mut self, within: Duration) -> Received {
        let ended = self.read_until(within, |_| false).await;
        assert!(!ended);
        self.got
    }
}

fn file(got: &mut Received, m: Message, base64: bool) {
    let b = match m {
        Message::Binary(b) if !base64 => b.to_vec(),
        Message::Text(t) if base64 && !t.is_empty() => {
            let (ch, data) = t.as_str().split_at(1);
            let mut b = vec![ch.as_bytes()[0] - b'0'];
            let data = base64::engine::general_purpose::STANDARD.decode(data);
            b.extend(data.expect("base64 from the server"));
            b
        }
        Message::Binary(_) | Message::Text(_) => panic!("data in the other form"),
        _ => return,
    };
    match b.split_first() {
        Some((1, data)) => got.out.extend_from_slice(data),
        Some((2, data)) => got.err.extend_from_slice(data),
        Some((3, data)) => got.status.push_str(&String::from_utf8_lossy(data)),
        _ => {}
    }
}
