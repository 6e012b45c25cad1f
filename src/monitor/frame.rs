//! Framing of the monitor protocol: a 4-byte big-endian length, then one prost message.
//! Pure and synchronous; the monitor feeds [`FrameReader`] from non-blocking sockets and
//! the async client uses [`encode`] and [`body_len`].

use std::io::{self, Read};

use prost::Message;

/// Largest request the monitor accepts; anything bigger is garbage and closes the
/// connection.
pub const MAX_REQUEST: usize = 1 << 20;
/// Largest response the client accepts: two capped exec outputs plus slack.
pub const MAX_RESPONSE: usize = 2 * super::exec::MAX_OUTPUT + (1 << 20);

const HEADER: usize = 4;
/// How much one `fill` reads; small to keep the monitor's memory low.
const READ_CHUNK: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub len: usize,
    pub limit: usize,
}

/// Encodes `msg` as one frame.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(HEADER + len);
    // Our own messages are far below 4 GiB (outputs are capped).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    msg.encode(&mut out)
        .expect("a Vec grows as needed, so encoding into it cannot run out of space");
    out
}

/// The body length announced by a frame header, checked against `limit`.
pub fn body_len(header: [u8; HEADER], limit: usize) -> Result<usize, TooLarge> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(TooLarge { len, limit });
    }
    Ok(len)
}

/// Accumulates bytes from a stream and cuts them into frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    limit: usize,
}

impl FrameReader {
    pub fn new(limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            limit,
        }
    }

    /// Reads once from `r`; `Ok(0)` means end of stream.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let res = r.read(&mut self.buf[start..]);
        let n = *res.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        res
    }

    /// The next complete frame body, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TooLarge> {
        let Some(header) = self.buf.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = body_len(*header, self.limit)?;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let body = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            // A large request was served: give the memory back.
            self.buf = Vec::new();
        }
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::proto::{self, request::Kind};

    fn req(kind: Kind) -> proto::Request {
        proto::Request { kind: Some(kind) }
    }

    #[test]
    fn round_trip_in_small_pieces() {
        let a = req(Kind::Ping(proto::Ping {}));
        let b = req(Kind::Kill(proto::KillContainer {
            id: "c1".into(),
            signal: 15,
        }));
        let mut bytes = encode(&a);
        bytes.extend(encode(&b));
        let mut r = FrameReader::new(MAX_REQUEST);
        let mut got = Vec::new();
        // Feed three bytes at a time, as a slow socket would.
        for chunk in bytes.chunks(3) {
            r.fill(&mut &chunk[..]).unwrap();
            while let Some(body) = r.next_frame().unwrap() {
                got.push(proto::Request::decode(&body[..]).unwrap());
            }
        }
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn empty_message_is_a_zero_length_frame() {
        let bytes = encode(&proto::Ping {});
        assert_eq!(bytes, vec![0, 0, 0, 0]);
        let mut r = FrameReader::new(MAX_REQUEST);
        r.fill(&mut &bytes[..]).unwrap();
        assert_eq!(r.next_frame().unwrap(), Some(vec![]));
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let mut r = FrameReader::new(MAX_REQUEST);
        r.fill(&mut &[0xff, 0xff, 0xff, 0xff, 1, 2][..]).unwrap();
        assert_eq!(
            r.next_frame(),
            Err(TooLarge {
                len: u32::MAX as usize,
                limit: MAX_REQUEST
            })
        );
    }

    #[test]
    fn garbage_body_fails_to_decode_without_panicking() {
        let mut bytes = vec![0, 0, 0, 5];
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff]);
        let mut r = FrameReader::new(MAX_REQUEST);
        r.fill(&mut &bytes[..]).unwrap();
        let body = r.next_frame().unwrap().unwrap();
        assert!(proto::Request::decode(&body[..]).is_err());
    }

    #[test]
    fn eof_reads_zero() {
        let mut r = FrameReader::new(MAX_REQUEST);
        assert_eq!(r.fill(&mut &[][..]).unwrap(), 0);
        assert_eq!(r.next_frame().unwrap(), None);
    }
}
