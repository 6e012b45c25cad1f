//! kubelet's port-forward protocol over SPDY (`spdy.rs`: a pair of streams, error and
//! data, per forwarded connection) or WebSocket (`websocket.rs`: a data and an error
//! channel per port in `?port=`). Either way each forwarded connection is a TCP
//! connection to the port on the pod's localhost (`dial.rs`); `tunnel.rs` serves SPDY
//! carried inside a WebSocket (client-go's newer transport). A failure to connect is
//! written on the error stream as text, as kubelet does.

mod dial;
pub mod spdy;
pub mod tunnel;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{PortForward, Shared};

/// After the pod's side closes, how long the client's side may still send (containerd
/// gives the same second before it closes both).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Read size from the pod's port.
const CHUNK: usize = 32 * 1024;

/// One PortForward request's connection to its pod.
pub struct Forwarder {
    request: PortForward,
    streams: Arc<Semaphore>,
    max_streams: usize,
    pub idle: Duration,
}

impl Forwarder {
    pub fn new(request: PortForward, shared: &Shared) -> Self {
        Forwarder {
            request,
            streams: shared.streams.clone(),
            max_streams: shared.max_streams,
            idle: shared.idle,
        }
    }

    /// A connection to `port` and its slot among the streams in flight, or the message
    /// for the client's error stream.
    pub async fn connect(&self, port: u16) -> Result<(TcpStream, OwnedSemaphorePermit), String> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            format!(
                "too many port-forward connections in flight ({} at most)",
                self.max_streams
            )
        })?;
        let pod = &self.request.pod_id;
        match dial::dial(&self.request.network, port).await {
            Ok(tcp) => Ok((tcp, permit)),
            Err(e) => {
                tracing::debug!(pod = %pod, port, error = %e, "port-forward failed");
                Err(format!("error forwarding port {port} to pod {pod}: {e}"))
            }
        }
    }
}

/// What the client sends for one forwarded connection, whatever carries it.
trait FromClient {
    /// The next bytes; `None` once the client finished or went away.
    async fn next(&mut self) -> Option<Vec<u8>>;
}

/// Where the pod's bytes go back to the client.
trait ToClient {
    /// `false` once the client cannot take more.
    async fn send(&self, data: &[u8]) -> bool;
    /// The pod's side closed.
    async fn finish(&self);
}

/// Copies both ways until the pod's side closes (then the client's side gets a grace
/// to finish) or the client finishes and the pod's side has said all it will.
async fn pump(tcp: TcpStream, mut from: impl FromClient, to: &impl ToClient) {
    let (mut r, mut w) = tcp.into_split();
    let up = async move {
        while let Some(d) = from.next().await {
            if w.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            if !to.send(&buf[..n]).await {
                break;
            }
        }
        to.finish().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => { let _ = tokio::time::timeout(CLOSE_GRACE, up).await; }
        () = &mut up => down.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::{Network, tokens::Tokens};

    #[tokio::test]
    async fn connections_past_the_limit_get_a_message_and_failures_name_pod_and_port() {
        let shared = Shared {
            tokens: Tokens::new(Duration::from_secs(60), 1),
            streams: Arc::new(Semaphore::new(1)),
            max_streams: 1,
            idle: Duration::from_secs(60),
        };
        let request = PortForward {
            pod_id: "p1".into(),
            network: Network::Host,
        };
        let fwd = Forwarder::new(request, &shared);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = fwd.connect(port).await.expect("the first connection");
        let e = fwd.connect(port).await.unwrap_err();
        assert!(e.contains("too many port-forward connections"), "{e}");
        drop((held, listener));
        let e = fwd.connect(port).await.unwrap_err();
        assert!(e.contains(&format!("port {port} to pod p1")), "{e}");
    }
}
