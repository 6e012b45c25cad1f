use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream};

use super::*;

/// The client side of a test connection, framing with this module's own codec.
struct Client {
    io: DuplexStream,
    tx: Deflater,
    rx: Inflater,
}

impl Client {
    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        frame::encode(&f, &mut self.tx, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Frame> {
        let f = tokio::time::timeout(
            Duration::from_secs(60),
            read_frame(&mut self.io, &mut self.rx),
        );
        f.await.expect("a frame within 60 s").unwrap()
    }

    /// Announces flow control with a tiny initial window, as a flow-controlling peer.
    async fn initial_window(&mut self, size: u32) {
        let setting = (frame::SETTINGS_INITIAL_WINDOW_SIZE, size);
        self.send(Frame::Settings(vec![setting])).await;
    }

    async fn syn(&mut self, stream: u32, kind: &str) {
        let headers = Headers(vec![("streamtype".into(), kind.into())]);
        let (associated, priority, flags) = (0, 0, 0);
        let f = Frame::SynStream {
            stream,
            associated,
            priority,
            flags,
            headers,
        };
        self.send(f).await;
    }
}

fn start(max_streams: usize) -> (Client, mpsc::Receiver<Stream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let streams = serve(
        b,
        Options { max_streams },
        Activity::new(Duration::from_secs(60)),
    );
    let client = Client {
        io: a,
        tx: Deflater::new().unwrap(),
        rx: Inflater::new(),
    };
    (client, streams)
}

fn data(stream: u32, flags: u8, data: &[u8]) -> Frame {
    let data = data.to_vec();
    Frame::Data {
        stream,
        flags,
        data,
    }
}

#[tokio::test]
async fn a_stream_is_accepted_answered_and_carries_data_both_ways() {
    let (mut c, mut streams) = start(8);
    c.syn(1, "data").await;
    let mut s = streams.recv().await.unwrap();
    assert_eq!((s.id, s.headers.get("streamType")), (1, Some("data")));
    s.writer.reply().await.unwrap();
    assert!(matches!(
        c.recv().await,
        Some(Frame::SynReply { stream: 1, .. })
    ));
    c.send(data(1, 0, b"ping")).await;
    c.send(data(1, FLAG_FIN, b"!")).await;
    assert_eq!(s.reader.read().await.unwrap(), b"ping");
    assert_eq!(s.reader.read().await.unwrap(), b"!");
    assert_eq!(s.reader.read().await, None, "FIN ends the stream's input");
    s.writer.write(b"pong").await.unwrap();
    s.writer.finish().await.unwrap();
    assert_eq!(c.recv().await, Some(data(1, 0, b"pong")));
    assert_eq!(c.recv().await, Some(data(1, FLAG_FIN, b"")));
    c.send(Frame::Ping(1)).await;
    assert_eq!(c.recv().await, Some(Frame::Ping(1)), "pings are echoed");
}

#[tokio::test]
async fn consumed_data_reopens_the_windows() {
    let (mut c, mut streams) = start(8);
    c.syn(1, "data").await;
    let mut s = streams.recv().await.unwrap();
    c.send(data(1, 0, &[7; 40_000])).await;
    assert_eq!(s.reader.read().await.unwrap().len(), 40_000);
    let want = [(1, 40_000), (0, 40_000)];
    for (stream, delta) in want {
        assert_eq!(c.recv().await, Some(Frame::WindowUpdate { stream, delta }));
    }
}

#[tokio::test]
async fn a_flow_controlling_peer_is_sent_no_more_than_its_window() {
    let (mut c, mut streams) = start(8);
    c.initial_window(10).await;
    c.syn(1, "data").await;
    let s = streams.recv().await.unwrap();
    let writer = s.writer.clone();
    let write = tokio::spawn(async move { writer.write(&[1; 25]).await });
    assert_eq!(c.recv().await, Some(data(1, 0, &[1; 10])));
    c.send(Frame::WindowUpdate {
        stream: 1,
        delta: 15,
    })
    .await;
    assert_eq!(c.recv().await, Some(data(1, 0, &[1; 15])));
    write.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_malformed_frame_closes_the_connection_with_goaway() {
    let (mut c, mut streams) = start(8);
    c.syn(1, "data").await;
    let _s = streams.recv().await.unwrap();
    c.io.write_all(&[0x80, 2, 0, 1, 0, 0, 0, 0]).await.unwrap(); // SPDY/2
    let want = Frame::GoAway {
        last_good: 1,
        status: 1,
    };
    assert_eq!(c.recv().await, Some(want));
    assert_eq!(c.recv().await, None, "then EOF");
}

#[tokio::test]
async fn even_or_reused_stream_ids_are_protocol_errors() {
    let (mut c, mut streams) = start(8);
    c.syn(3, "data").await;
    let _s = streams.recv().await.unwrap();
    c.syn(1, "data").await;
    assert!(matches!(
        c.recv().await,
        Some(Frame::GoAway { status: 1, .. })
    ));
}

#[tokio::test]
async fn streams_past_the_limit_are_refused_and_resets_reach_the_writer() {
    let (mut c, mut streams) = start(1);
    c.syn(1, "data").await;
    let s = streams.recv().await.unwrap();
    c.syn(3, "data").await;
    let refused = Frame::RstStream {
        stream: 3,
        status: frame::REFUSED_STREAM,
    };
    assert_eq!(c.recv().await, Some(refused));
    c.send(Frame::RstStream {
        stream: 1,
        status: frame::CANCEL,
    })
    .await;
    c.send(Frame::Ping(5)).await;
    assert_eq!(
        c.recv().await,
        Some(Frame::Ping(5)),
        "the reset was handled"
    );
    assert!(matches!(s.writer.write(b"x").await, Err(SpdyError::Reset)));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_with_goaway() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let opts = Options { max_streams: 8 };
    let _streams = serve(b, opts, Activity::new(Duration::from_secs(30)));
    let mut c = Client {
        io: a,
        tx: Deflater::new().unwrap(),
        rx: Inflater::new(),
    };
    tokio::time::sleep(Duration::from_secs(20)).await;
    c.send(Frame::Ping(1)).await;
    assert_eq!(
        c.recv().await,
        Some(Frame::Ping(1)),
        "traffic keeps it open"
    );
    let goaway = Frame::GoAway {
        last_good: 0,
        status: 0,
    };
    assert_eq!(c.recv().await, Some(goaway), "30 s later");
    assert_eq!(c.recv().await, None);
}

#[tokio::test]
async fn an_unread_stream_does_not_hold_up_window_updates_for_another() {
    let (mut c, mut streams) = start(8);
    c.initial_window(10).await;
    c.syn(1, "data").await;
    let _unread = streams.recv().await.unwrap();
    c.syn(3, "data").await;
    let s = streams.recv().await.unwrap();
    for _ in 0..40 {
        c.send(data(1, 0, &[0; 1024])).await; // within the window, never read
    }
    let writer = s.writer.clone();
    let write = tokio::spawn(async move { writer.write(&[2; 20]).await });
    assert_eq!(c.recv().await, Some(data(3, 0, &[2; 10])));
    c.send(Frame::WindowUpdate {
        stream: 3,
        delta: 10,
    })
    .await;
    assert_eq!(
        c.recv().await,
        Some(data(3, 0, &[2; 10])),
        "the update was read"
    );
    write.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_streams() {
    let (mut c, mut streams) = start(8);
    c.syn(1, "data").await;
    let mut s = streams.recv().await.unwrap();
    drop(c);
    assert_eq!(s.reader.read().await, None, "EOF ends the stream's input");
    assert!(s.writer.write(b"x").await.is_err(), "and its output");
    assert!(streams.recv().await.is_none(), "and the session");
}
