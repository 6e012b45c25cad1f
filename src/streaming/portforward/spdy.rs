//! Port-forward over SPDY: for each forwarded connection the client opens an `error`
//! stream and a `data` stream with the same `port` and `requestID` headers; once both
//! are there the server connects to the port and copies bytes between it and the data
//! stream. A failure is written on the error stream.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CHUNK, CLOSE_GRACE, Forwarder};
use crate::streaming::activity::Activity;
use crate::streaming::spdy::frame::PROTOCOL_ERROR;
use crate::streaming::spdy::{self, Options, Stream, StreamReader, StreamWriter};

/// Streams one connection may hold open: 2 per forwarded connection.
const MAX_STREAMS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// What a new stream is for: its kind, port and the request that pairs it.
fn classify(s: &Stream) -> Result<(Kind, u16, String), String> {
    let kind = match s.headers.get("streamType") {
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    let port = s
        .headers
        .get("port")
        .ok_or("a port-forward stream without a port header")?;
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("invalid port {port:?}")),
    };
    // Clients before requestID paired streams by id: error n, data n+2 (as kubelet).
    let request = match s.headers.get("requestID") {
        Some(id) => id.to_string(),
        None if kind == Kind::Error => s.id.to_string(),
        None => s.id.saturating_sub(2).to_string(),
    };
    Ok((kind, port, request))
}

#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<Stream>,
    data: Option<Stream>,
}

pub async fn run<IO>(io: IO, fwd: Forwarder)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let opts = Options {
        max_streams: MAX_STREAMS,
    };
    let mut streams = spdy::serve(io, opts, Activity::new(fwd.idle));
    let fwd = Arc::new(fwd);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(s) = streams.recv().await {
        let (kind, port, request) = match classify(&s) {
            Ok(c) => c,
            Err(msg) => {
                tracing::debug!(stream = s.id, %msg, "refusing a port-forward stream");
                s.writer.reset(PROTOCOL_ERROR).await;
                continue;
            }
        };
        if s.writer.reply().await.is_err() {
            break;
        }
        let pair = pending.entry(request.clone()).or_insert(Pair {
            port,
            ..Pair::default()
        });
        let slot = match kind {
            Kind::Error => &mut pair.error,
            Kind::Data => &mut pair.data,
        };
        if slot.is_some() || pair.port != port {
            s.writer.reset(PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(s);
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                port,
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&request)
        {
            tokio::spawn(forward(fwd.clone(), port, error, data));
        }
    }
}

async fn forward(fwd: Arc<Forwarder>, port: u16, error: Stream, data: Stream) {
    match fwd.connect(port).await {
        Err(msg) => {
            let _ = error.writer.write(msg.as_bytes()).await;
            let _ = data.writer.finish().await;
        }
        Ok((tcp, _permit)) => pump(tcp, data.reader, &data.writer).await,
    }
    let _ = error.writer.finish().await;
}

/// Copies both ways until the pod's side closes (then the client's side gets a grace
/// to finish) or the client finishes and the pod's side has said all it will.
async fn pump(tcp: TcpStream, mut from: StreamReader, to: &StreamWriter) {
    let (mut r, mut w) = tcp.into_split();
    let up = async move {
        while let Some(d) = from.read().await {
            if w.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            if to.write(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.finish().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => { let _ = tokio::time::timeout(CLOSE_GRACE, up).await; }
        () = &mut up => down.await,
    }
}
