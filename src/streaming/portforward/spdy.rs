//! Port-forward over SPDY: for each forwarded connection the client opens an `error`
//! stream and a `data` stream with the same `port` and `requestID` headers; once both
//! are there the server connects to the port and copies bytes between it and the data
//! stream. A failure is written on the error stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Forwarder, pump};
use crate::streaming::activity::Activity;
use crate::streaming::spdy::frame::{CANCEL, PROTOCOL_ERROR};
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

/// How long the first stream of a pair waits for the second (kubelet's stream
/// creation timeout); then its client is told on the error stream, and both reset.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

struct Pair {
    port: u16,
    since: Instant,
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Streams waiting for the other stream of their request.
#[derive(Default)]
struct Pairs(HashMap<String, Pair>);

impl Pairs {
    /// Files `s`; returns the port and both streams once its pair is complete.
    async fn add(
        &mut self,
        s: Stream,
        kind: Kind,
        port: u16,
        request: String,
    ) -> Option<(u16, Stream, Stream)> {
        let pair = self.0.entry(request.clone()).or_insert(Pair {
            port,
            since: Instant::now(),
            error: None,
            data: None,
        });
        let slot = match kind {
            Kind::Error => &mut pair.error,
            Kind::Data => &mut pair.data,
        };
        if slot.is_some() || pair.port != port {
            s.writer.reset(PROTOCOL_ERROR).await;
            return None;
        }
        *slot = Some(s);
        if pair.error.is_none() || pair.data.is_none() {
            return None;
        }
        let pair = self.0.remove(&request)?;
        Some((pair.port, pair.error?, pair.data?))
    }

    /// Gives up on pairs that waited too long.
    async fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .0
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= PAIR_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            let Some(pair) = self.0.remove(&id) else {
                continue;
            };
            if let Some(error) = &pair.error {
                let msg = format!("timed out waiting for the data stream of request {id}");
                let _ = error.writer.write(msg.as_bytes()).await;
            }
            for s in [pair.error, pair.data].into_iter().flatten() {
                s.writer.reset(CANCEL).await;
            }
        }
    }
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
    let mut pairs = Pairs::default();
    let mut sweep = tokio::time::interval(PAIR_TIMEOUT / 6);
    loop {
        let s = tokio::select! {
            s = streams.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = sweep.tick() => {
                pairs.expire().await;
                continue;
            }
        };
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
        if let Some((port, error, data)) = pairs.add(s, kind, port, request).await {
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

impl super::FromClient for StreamReader {
    async fn next(&mut self) -> Option<Vec<u8>> {
        self.read().await
    }
}

impl super::ToClient for StreamWriter {
    async fn send(&self, data: &[u8]) -> bool {
        self.write(data).await.is_ok()
    }

    async fn finish(&self) {
        let _ = StreamWriter::finish(self).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::streaming::spdy::frame::{self, Frame};
    use crate::streaming::spdy::headers::{Deflater, Headers, Inflater};
    use crate::streaming::spdy::session::read_frame;

    fn syn(stream: u32, kind: &str, request: &str) -> Frame {
        let h = [("streamtype", kind), ("port", "80"), ("requestid", request)];
        let headers = Headers(
            h.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let (associated, priority, flags) = (0, 0, 0);
        Frame::SynStream {
            stream,
            associated,
            priority,
            flags,
            headers,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn streams_pair_by_request_and_a_lone_one_times_out() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let opts = Options { max_streams: 8 };
        let mut streams = spdy::serve(server, opts, Activity::new(Duration::from_secs(3600)));
        let mut z = Deflater::new().unwrap();
        let mut out = Vec::new();
        for f in [
            syn(1, "error", "0"),
            syn(3, "data", "0"),
            syn(5, "error", "1"),
        ] {
            frame::encode(&f, &mut z, &mut out).unwrap();
        }
        client.write_all(&out).await.unwrap();
        let mut pairs = Pairs::default();
        let mut got = Vec::new();
        for _ in 0..3 {
            let s = streams.recv().await.unwrap();
            let (kind, port, request) = classify(&s).unwrap();
            got.push(
                pairs
                    .add(s, kind, port, request)
                    .await
                    .map(|(p, e, d)| (p, e.id, d.id)),
            );
        }
        assert_eq!(got, vec![None, Some((80, 1, 3)), None]);
        pairs.expire().await;
        assert_eq!(pairs.0.len(), 1, "not late yet");
        tokio::time::advance(PAIR_TIMEOUT).await;
        pairs.expire().await;
        assert!(pairs.0.is_empty());
        let mut rx = Inflater::new();
        let Some(Frame::Data {
            stream: 5, data, ..
        }) = read_frame(&mut client, &mut rx).await.unwrap()
        else {
            panic!("the timeout message first")
        };
        assert!(String::from_utf8_lossy(&data).contains("request 1"));
        let reset = read_frame(&mut client, &mut rx).await.unwrap();
        assert_eq!(
            reset,
            Some(Frame::RstStream {
                stream: 5,
                status: CANCEL
            })
        );
    }
}
