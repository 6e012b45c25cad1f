use super::*;

/// Two SYN_STREAMs as client-go sends them for one forwarded connection (error stream,
/// then data stream), recorded from an independent zlib (Python's, primed with the SPDY
/// dictionary): the second block is only readable after the first, in one stream.
const SYN_ERROR: &str = "800300010000003d0000000100000000000078bbe3c6a7c202253a48f95b044eea1606\
                         1606409ab308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff";
const SYN_DATA: &str = "800300010000001600000003000000000000225333a8a44a04000000ffff";

fn read(bytes: &[u8], z: &mut Inflater) -> Result<Frame, SpdyError> {
    let (h, payload) = bytes.split_at(8);
    let head = Head::parse(h.try_into().unwrap())?;
    assert_eq!(head.length, payload.len(), "the recorded length");
    decode(head, payload.to_vec(), z)
}

fn round_trip(f: &Frame) -> Frame {
    let mut out = Vec::new();
    encode(f, &mut Deflater::new().unwrap(), &mut out).unwrap();
    read(&out, &mut Inflater::new()).unwrap()
}

#[test]
fn recorded_syn_streams_decode_in_order() {
    let mut z = Inflater::new();
    let Frame::SynStream {
        stream, headers, ..
    } = read(&hex::decode(SYN_ERROR).unwrap(), &mut z).unwrap()
    else {
        panic!("not a SYN_STREAM")
    };
    assert_eq!(stream, 1);
    assert_eq!(headers.get("streamType"), Some("error"));
    assert_eq!(headers.get("port"), Some("8080"));
    assert_eq!(headers.get("requestID"), Some("0"));
    let Frame::SynStream {
        stream, headers, ..
    } = read(&hex::decode(SYN_DATA).unwrap(), &mut z).unwrap()
    else {
        panic!("not a SYN_STREAM")
    };
    assert_eq!((stream, headers.get("streamtype")), (3, Some("data")));
}

#[test]
fn hand_built_control_frames() {
    let z = &mut Inflater::new();
    let ping = [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7];
    assert_eq!(read(&ping, z).unwrap(), Frame::Ping(7));
    let rst = [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5];
    let want = Frame::RstStream {
        stream: 5,
        status: CANCEL,
    };
    assert_eq!(read(&rst, z).unwrap(), want);
    let wu = [0x80, 3, 0, 9, 0, 0, 0, 8, 0x80, 0, 0, 1, 0, 1, 0, 0];
    let want = Frame::WindowUpdate {
        stream: 1,
        delta: 65536,
    };
    assert_eq!(read(&wu, z).unwrap(), want, "the reserved bit is ignored");
    let settings = [
        0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 7, 0, 0, 0x10, 0,
    ];
    assert_eq!(
        read(&settings, z).unwrap(),
        Frame::Settings(vec![(7, 4096)])
    );
    let goaway = [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0];
    let want = Frame::GoAway {
        last_good: 3,
        status: 0,
    };
    assert_eq!(read(&goaway, z).unwrap(), want);
    let unknown = [0x80, 3, 0, 0x44, 0, 0, 0, 0];
    assert_eq!(read(&unknown, z).unwrap(), Frame::Unknown(0x44));
}

#[test]
fn data_frames() {
    let data = [0, 0, 0, 3, FLAG_FIN, 0, 0, 2, b'h', b'i'];
    let want = Frame::Data {
        stream: 3,
        flags: FLAG_FIN,
        data: b"hi".to_vec(),
    };
    assert_eq!(read(&data, &mut Inflater::new()).unwrap(), want);
    assert_eq!(round_trip(&want), want);
}

#[test]
fn every_frame_round_trips() {
    let h = Headers(vec![("port".into(), "80".into())]);
    for f in [
        Frame::SynStream {
            stream: 9,
            associated: 0,
            priority: 3,
            flags: FLAG_FIN,
            headers: h.clone(),
        },
        Frame::SynReply {
            stream: 9,
            flags: 0,
            headers: Headers::default(),
        },
        Frame::Headers {
            stream: 9,
            flags: 0,
            headers: h,
        },
        Frame::RstStream {
            stream: 9,
            status: PROTOCOL_ERROR,
        },
        Frame::Settings(vec![(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]),
        Frame::Ping(2),
        Frame::GoAway {
            last_good: 9,
            status: 0,
        },
        Frame::WindowUpdate {
            stream: 0,
            delta: 100,
        },
    ] {
        assert_eq!(round_trip(&f), f);
    }
}

#[test]
fn malformed_frames_are_errors() {
    let z = &mut Inflater::new();
    assert!(matches!(
        Head::parse([0x80, 2, 0, 1, 0, 0, 0, 0]),
        Err(SpdyError::Protocol(_))
    ));
    for short in [
        &[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0][..],
        &[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1],
        &[0x80, 3, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1],
        &[0x80, 3, 0, 4, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(read(short, z).is_err(), "{short:?}");
    }
    // A SYN_STREAM whose header block is not zlib.
    let bad = [
        0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2,
    ];
    assert!(read(&bad, z).is_err());
    let mut out = Vec::new();
    let huge = Frame::Data {
        stream: 1,
        flags: 0,
        data: vec![0; MAX_LENGTH + 1],
    };
    assert!(encode(&huge, &mut Deflater::new().unwrap(), &mut out).is_err());
}

/// A small deterministic generator: the same "random" input on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next()).collect()
    }
}

#[test]
fn arbitrary_input_is_an_error_or_a_frame_never_a_panic() {
    let mut rng = Lcg(7);
    for i in 0..20_000 {
        let kind = (i % 11) as u8;
        let mut head = [0x80, 3, 0, kind, rng.next() & 1, 0, 0, 0];
        let len = usize::from(rng.next() % 48);
        let payload = rng.bytes(len);
        head[7] = payload.len() as u8;
        if i % 5 == 0 {
            head = rng.bytes(8).try_into().unwrap();
        }
        if let Ok(h) = Head::parse(head) {
            let _ = decode(h, payload, &mut Inflater::new());
        }
    }
    // Header blocks: garbage after a valid zlib start, in one stream.
    let mut z = Inflater::new();
    let start = &hex::decode(SYN_ERROR).unwrap()[18..];
    for n in 0..2_000 {
        let mut block = start[..(n % start.len())].to_vec();
        block.extend(rng.bytes(n % 64));
        let _ = z.decompress(&block);
        let _ = Inflater::new().decompress(&block);
    }
}
