//! The server side of one SPDY/3.1 connection. A reader task decodes frames and routes
//! them (new streams to the application, data to its stream, pings answered, window
//! updates to the send windows); a writer task owns the socket's write half and the
//! header compressor, and writes the frames everyone queues, in order.
//!
//! A malformed frame, a GOAWAY, EOF or the idle timeout ends the reader; it then
//! resets every open stream's window (their writers stop) and tells the writer to
//! flush and close the socket.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};

use super::SpdyError;
use super::flow::{Consumed, INITIAL_WINDOW, PeerFlow, SendWindow, acquire_both};
use super::frame::{self, FLAG_FIN, Frame, Head};
use super::headers::{Deflater, Headers, Inflater};
use crate::streaming::activity::Activity;

/// The largest DATA frame this side sends.
const MAX_CHUNK: usize = 64 * 1024;
/// Frames queued for the writer; bounds what one connection buffers.
const OUT_QUEUE: usize = 64;
/// Bytes buffered for one stream's reader. A peer that honours our 64 KiB receive
/// window never fills it, so the reader never waits on one stream while a WINDOW_UPDATE
/// another stream needs sits unread behind it; a peer without flow control (spdystream)
/// is slowed down by it instead.
const IN_BUFFER: usize = 1 << 20;
const GOAWAY_PROTOCOL_ERROR: u32 = 1;
const FLOW_CONTROL_ERROR: u32 = 7;

enum Out {
    Frame(Frame),
    Close,
}

#[derive(Clone)]
struct Conn {
    out: mpsc::Sender<Out>,
    session: Arc<SendWindow>,
    peer: Arc<PeerFlow>,
}

impl Conn {
    async fn send(&self, f: Frame) -> Result<(), SpdyError> {
        self.out
            .send(Out::Frame(f))
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

/// A stream the peer opened: its headers and both directions.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

pub struct StreamReader {
    id: u32,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Room in the stream's buffer, in bytes (`IN_BUFFER` at most).
    room: Arc<Semaphore>,
    conn: Conn,
    consumed: Consumed,
}

impl StreamReader {
    /// The next data the peer sent; `None` once it finished or reset the stream.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        let data = self.rx.recv().await?;
        self.room.add_permits(data.len().min(IN_BUFFER));
        if let Some(delta) = self.consumed.add(data.len()) {
            for stream in [self.id, 0] {
                let _ = self.conn.send(Frame::WindowUpdate { stream, delta }).await;
            }
        }
        Some(data)
    }
}

#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    window: Arc<SendWindow>,
    conn: Conn,
}

impl StreamWriter {
    /// Accepts the stream (SYN_REPLY without headers, as kubelet answers).
    pub async fn reply(&self) -> Result<(), SpdyError> {
        let headers = Headers::default();
        let (stream, flags) = (self.id, 0);
        self.conn
            .send(Frame::SynReply {
                stream,
                flags,
                headers,
            })
            .await
    }

    /// Sends `data` as DATA frames within the flow-control windows.
    pub async fn write(&self, mut data: &[u8]) -> Result<(), SpdyError> {
        let c = &self.conn;
        while !data.is_empty() {
            let want = data.len().min(MAX_CHUNK);
            let n = acquire_both(&self.window, &c.session, want, &c.peer).await?;
            let (now, rest) = data.split_at(n);
            let f = Frame::Data {
                stream: self.id,
                flags: 0,
                data: now.to_vec(),
            };
            c.send(f).await?;
            data = rest;
        }
        Ok(())
    }

    /// This side's last frame on the stream.
    pub async fn finish(&self) -> Result<(), SpdyError> {
        let (stream, flags, data) = (self.id, FLAG_FIN, Vec::new());
        let sent = self
            .conn
            .send(Frame::Data {
                stream,
                flags,
                data,
            })
            .await;
        self.window.close(); // Nothing more to send; the reader may forget the stream.
        sent
    }

    pub async fn reset(&self, status: u32) {
        self.window.close();
        let _ = self
            .conn
            .send(Frame::RstStream {
                stream: self.id,
                status,
            })
            .await;
    }
}

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct Options {
    /// Streams open at once; more are refused (RST_STREAM REFUSED_STREAM).
    pub max_streams: usize,
}

/// Serves SPDY on `io`; the streams the peer opens arrive on the returned channel.
pub fn serve<IO>(io: IO, opts: Options, activity: Activity) -> mpsc::Receiver<Stream>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let (out, out_rx) = mpsc::channel(OUT_QUEUE);
    let (accept, streams) = mpsc::channel(16);
    let conn = Conn {
        out,
        session: Arc::new(SendWindow::default()),
        peer: Arc::new(PeerFlow::default()),
    };
    tokio::spawn(write_loop(w, out_rx, activity.clone()));
    let reader = Reader {
        conn,
        accept,
        opts,
        streams: HashMap::new(),
        last_id: 0,
        initial: INITIAL_WINDOW,
        activity,
    };
    tokio::spawn(reader.run(r));
    streams
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Out>, a: Activity) {
    let Ok(mut z) = Deflater::new() else { return };
    let mut buf = Vec::with_capacity(MAX_CHUNK + 64);
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Out::Close => closing = true,
                Out::Frame(f) => {
                    if let Err(e) = frame::encode(&f, &mut z, &mut buf) {
                        tracing::warn!(error = %e, "dropping an SPDY frame that does not encode");
                    }
                }
            }
            if !closing && buf.len() < 4 * MAX_CHUNK {
                next = rx.try_recv().ok();
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() || closing {
            break;
        }
        a.touch();
    }
    let _ = w.shutdown().await;
}

struct Open {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    room: Arc<Semaphore>,
    window: Arc<SendWindow>,
}

struct Reader {
    conn: Conn,
    accept: mpsc::Sender<Stream>,
    opts: Options,
    streams: HashMap<u32, Open>,
    last_id: u32,
    initial: i64,
    activity: Activity,
}

/// Reads one frame; `None` at a clean EOF between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    z: &mut Inflater,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(SpdyError::Io(e)),
    }
    let head = Head::parse(head)?;
    let mut payload = vec![0; head.length];
    r.read_exact(&mut payload).await.map_err(SpdyError::Io)?;
    frame::decode(head, payload, z).map(Some)
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, mut r: R) {
        let mut z = Inflater::new();
        let idle = self.activity.clone();
        loop {
            let next = tokio::select! {
                f = read_frame(&mut r, &mut z) => f,
                () = idle.idle() => {
                    tracing::debug!("closing an idle SPDY connection");
                    self.goaway(0).await;
                    break;
                }
            };
            self.activity.touch();
            let outcome = match next {
                Ok(Some(f)) => self.handle(f).await,
                Ok(None) => Err(SpdyError::Closed),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(true) => {}
                Ok(false) | Err(SpdyError::Closed) => break,
                Err(e) => {
                    tracing::info!(error = %e, "closing an SPDY connection after a bad frame");
                    self.goaway(GOAWAY_PROTOCOL_ERROR).await;
                    break;
                }
            }
        }
        for open in self.streams.values() {
            open.window.close();
        }
        let _ = self.conn.out.send(Out::Close).await;
    }

    async fn goaway(&self, status: u32) {
        let last_good = self.last_id;
        let _ = self.conn.send(Frame::GoAway { last_good, status }).await;
    }

    /// Routes one frame; `false` ends the connection.
    async fn handle(&mut self, f: Frame) -> Result<bool, SpdyError> {
        match f {
            Frame::SynStream {
                stream,
                flags,
                headers,
                ..
            } => self.open(stream, flags, headers).await?,
            Frame::Data {
                stream,
                flags,
                data,
            } => self.data(stream, flags, data).await,
            Frame::RstStream { stream, .. } => {
                if let Some(open) = self.streams.remove(&stream) {
                    open.window.close();
                }
            }
            Frame::Settings(entries) => self.settings(&entries),
            Frame::Ping(id) => self.conn.send(Frame::Ping(id)).await?,
            Frame::GoAway { .. } => return Ok(false),
            Frame::WindowUpdate { stream, delta } => self.window_update(stream, delta).await?,
            Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Unknown(_) => {}
        }
        Ok(true)
    }

    async fn open(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), SpdyError> {
        if id.is_multiple_of(2) || id <= self.last_id {
            return Err(SpdyError::Protocol(format!(
                "stream id {id} after {} (a client's ids are odd and increasing)",
                self.last_id
            )));
        }
        self.last_id = id;
        self.streams
            .retain(|_, open| open.tx.is_some() || !open.window.is_closed());
        let window = Arc::new(SendWindow::default());
        let writer = StreamWriter {
            id,
            window: window.clone(),
            conn: self.conn.clone(),
        };
        if self.streams.len() >= self.opts.max_streams {
            writer.reset(frame::REFUSED_STREAM).await;
            return Ok(());
        }
        let shift = self.initial - INITIAL_WINDOW;
        window.shift(shift);
        let (tx, rx) = mpsc::unbounded_channel();
        let tx = (flags & FLAG_FIN == 0).then_some(tx);
        let room = Arc::new(Semaphore::new(IN_BUFFER));
        let open = Open {
            tx,
            room: room.clone(),
            window,
        };
        self.streams.insert(id, open);
        let reader = StreamReader {
            id,
            rx,
            room,
            conn: self.conn.clone(),
            consumed: Consumed::default(),
        };
        let stream = Stream {
            id,
            headers,
            reader,
            writer,
        };
        if let Err(refused) = self.accept.send(stream).await {
            refused.0.writer.reset(frame::REFUSED_STREAM).await;
        }
        Ok(())
    }

    async fn data(&mut self, id: u32, flags: u8, data: Vec<u8>) {
        let Some(open) = self.streams.get_mut(&id) else {
            return; // Data after a reset races the RST_STREAM; nothing to do.
        };
        if let Some(tx) = &open.tx
            && !data.is_empty()
        {
            let room = open.room.clone();
            let taken = room
                .acquire_many_owned(data.len().min(IN_BUFFER) as u32)
                .await;
            taken.into_iter().for_each(|p| p.forget());
            if tx.send(data).is_err() {
                open.tx = None; // The application stopped reading.
            }
        }
        if flags & FLAG_FIN != 0 {
            open.tx = None;
        }
    }

    fn settings(&mut self, entries: &[(u32, u32)]) {
        for &(id, value) in entries {
            if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                self.conn.peer.enable();
                let diff = i64::from(value) - self.initial;
                self.initial = i64::from(value);
                for open in self.streams.values() {
                    open.window.shift(diff);
                }
            }
        }
    }

    async fn window_update(&mut self, id: u32, delta: u32) -> Result<(), SpdyError> {
        self.conn.peer.enable();
        if id == 0 {
            return self.conn.session.update(|w| w.grant(delta));
        }
        let Some(open) = self.streams.get(&id) else {
            return Ok(());
        };
        if let Err(e) = open.window.update(|w| w.grant(delta)) {
            tracing::debug!(stream = id, error = %e, "resetting a stream");
            let window = open.window.clone();
            self.streams.remove(&id);
            window.close();
            let status = FLOW_CONTROL_ERROR;
            self.conn
                .send(Frame::RstStream { stream: id, status })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
