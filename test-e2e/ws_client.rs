//! A WebSocket remote-command client for exec and attach (`v5.channel.k8s.io`):
//! tokio-tungstenite for the WebSocket, and the channel byte client-go puts first in
//! every binary message (0 stdin, 1 stdout, 2 stderr, 3 the Status, 4 resize, 255 the
//! close of a channel).

use std::time::Duration;

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
    pub got: Received,
}

impl Session {
    /// Connects to a streaming URL, offering v5.
    pub async fn connect(url: &str) -> Session {
        let ws = url.replacen("http://", "ws://", 1);
        let mut req = ws.as_str().into_client_request().unwrap();
        let proto = "v5.channel.k8s.io".parse().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
        let host = req.uri().authority().unwrap().to_string();
        let tcp = TcpStream::connect(host).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        Session {
            ws,
            got: Received::default(),
        }
    }

    /// Sends `data` on channel `ch`.
    pub async fn send(&mut self, ch: u8, data: &[u8]) {
        let mut m = vec![ch];
        m.extend_from_slice(data);
        self.ws.send(Message::binary(m)).await.unwrap();
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
                    Some(Ok(m)) => file(&mut self.got, m),
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

fn file(got: &mut Received, m: Message) {
    let Message::Binary(b) = m else {
        return;
    };
    match b.split_first() {
        Some((1, data)) => got.out.extend_from_slice(data),
        Some((2, data)) => got.err.extend_from_slice(data),
        Some((3, data)) => got.status.push_str(&String::from_utf8_lossy(data)),
        _ => {}
    }
}
