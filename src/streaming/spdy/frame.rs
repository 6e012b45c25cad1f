//! SPDY/3.1 frames. Every frame has an 8-byte head:
//!
//! ```text
//! control: |1| version (15) | type (16) |  flags (8) | length (24) |  data
//! data:    |0|     stream id (31)       |  flags (8) | length (24) |  data
//! ```
//! Stream ids and window deltas are 31 bits (the top bit is reserved and ignored).

use super::SpdyError;
use super::headers::{Deflater, Headers, Inflater};

pub const VERSION: u16 = 3;
/// DATA, SYN_STREAM, SYN_REPLY, HEADERS: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM status codes used here.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;
pub const CANCEL: u32 = 5;
/// The largest frame length the 24-bit field can carry.
pub const MAX_LENGTH: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
const ID_MASK: u32 = 0x7fff_ffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// `(id, value)` pairs; the per-entry flags are not kept.
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this side does not know: the spec says to ignore it.
    Unknown(u16),
}

/// The 8-byte head: what kind of frame, its flags and how long its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// `Some(type)` for a control frame, `None` for DATA.
    pub control: Option<u16>,
    /// The stream of a DATA frame.
    pub stream: u32,
    pub flags: u8,
    pub length: usize,
}

impl Head {
    pub fn parse(b: [u8; 8]) -> Result<Head, SpdyError> {
        let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let length = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
        if first & 0x8000_0000 == 0 {
            return Ok(Head {
                control: None,
                stream: first & ID_MASK,
                flags: b[4],
                length,
            });
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Protocol(format!(
                "SPDY version {version}, not 3"
            )));
        }
        Ok(Head {
            control: Some((first & 0xffff) as u16),
            stream: 0,
            flags: b[4],
            length,
        })
    }
}

/// Reads a frame's payload given its head. Header blocks go through `inflater`, the
/// connection's one decompression stream, so every block must be read in order.
pub fn decode(head: Head, payload: Vec<u8>, inflater: &mut Inflater) -> Result<Frame, SpdyError> {
    let Some(kind) = head.control else {
        return Ok(Frame::Data {
            stream: head.stream,
            flags: head.flags,
            data: payload,
        });
    };
    let p = Payload(&payload);
    let frame = match kind {
        SYN_STREAM => Frame::SynStream {
            stream: p.id(0)?,
            associated: p.id(4)?,
            priority: p.byte(8)? >> 5,
            flags: head.flags,
            headers: inflater.decompress(p.rest(10)?)?,
        },
        SYN_REPLY => Frame::SynReply {
            stream: p.id(0)?,
            flags: head.flags,
            headers: inflater.decompress(p.rest(4)?)?,
        },
        HEADERS => Frame::Headers {
            stream: p.id(0)?,
            flags: head.flags,
            headers: inflater.decompress(p.rest(4)?)?,
        },
        RST_STREAM => Frame::RstStream {
            stream: p.id(0)?,
            status: p.u32(4)?,
        },
        SETTINGS => Frame::Settings(settings(&p)?),
        PING => Frame::Ping(p.u32(0)?),
        GOAWAY => Frame::GoAway {
            last_good: p.id(0)?,
            status: p.u32(4).unwrap_or(0),
        },
        WINDOW_UPDATE => Frame::WindowUpdate {
            stream: p.id(0)?,
            delta: p.id(4)?,
        },
        other => Frame::Unknown(other),
    };
    Ok(frame)
}

fn settings(p: &Payload) -> Result<Vec<(u32, u32)>, SpdyError> {
    let count = p.u32(0)? as usize;
    if count > (p.0.len().saturating_sub(4)) / 8 {
        return Err(SpdyError::Protocol(
            "SETTINGS count beyond its length".into(),
        ));
    }
    (0..count)
        .map(|i| Ok((p.u32(4 + 8 * i)? & 0x00ff_ffff, p.u32(8 + 8 * i)?)))
        .collect()
}

struct Payload<'a>(&'a [u8]);

impl Payload<'_> {
    fn u32(&self, at: usize) -> Result<u32, SpdyError> {
        match self.0.get(at..at + 4) {
            Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            None => Err(SpdyError::Protocol("a control frame is too short".into())),
        }
    }
    fn id(&self, at: usize) -> Result<u32, SpdyError> {
        Ok(self.u32(at)? & ID_MASK)
    }
    fn byte(&self, at: usize) -> Result<u8, SpdyError> {
        self.0
            .get(at)
            .copied()
            .ok_or_else(|| SpdyError::Protocol("a control frame is too short".into()))
    }
    fn rest(&self, at: usize) -> Result<&[u8], SpdyError> {
        self.0
            .get(at..)
            .ok_or_else(|| SpdyError::Protocol("a control frame is too short".into()))
    }
}

/// Appends `frame` to `out`, compressing header blocks with `deflater`.
pub fn encode(frame: &Frame, deflater: &mut Deflater, out: &mut Vec<u8>) -> Result<(), SpdyError> {
    let (kind, flags, body) = match frame {
        Frame::Data {
            stream,
            flags,
            data,
        } => {
            head(out, stream & ID_MASK, *flags, data.len())?;
            out.extend_from_slice(data);
            return Ok(());
        }
        Frame::SynStream {
            stream,
            associated,
            priority,
            flags,
            headers,
        } => {
            let mut b = words(&[*stream, *associated]);
            b.extend_from_slice(&[priority << 5, 0]);
            b.extend(deflater.compress(headers)?);
            (SYN_STREAM, *flags, b)
        }
        Frame::SynReply {
            stream,
            flags,
            headers,
        } => (SYN_REPLY, *flags, with_block(*stream, deflater, headers)?),
        Frame::Headers {
            stream,
            flags,
            headers,
        } => (HEADERS, *flags, with_block(*stream, deflater, headers)?),
        Frame::RstStream { stream, status } => (RST_STREAM, 0, words(&[*stream, *status])),
        Frame::Settings(entries) => {
            let mut w = vec![entries.len() as u32];
            entries.iter().for_each(|(id, v)| w.extend([*id, *v]));
            (SETTINGS, 0, words(&w))
        }
        Frame::Ping(id) => (PING, 0, words(&[*id])),
        Frame::GoAway { last_good, status } => (GOAWAY, 0, words(&[*last_good, *status])),
        Frame::WindowUpdate { stream, delta } => (WINDOW_UPDATE, 0, words(&[*stream, *delta])),
        Frame::Unknown(kind) => (*kind, 0, Vec::new()),
    };
    let first = 0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind);
    head(out, first, flags, body.len())?;
    out.extend_from_slice(&body);
    Ok(())
}

fn with_block(stream: u32, z: &mut Deflater, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
    let mut b = words(&[stream]);
    b.extend(z.compress(headers)?);
    Ok(b)
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn head(out: &mut Vec<u8>, first: u32, flags: u8, len: usize) -> Result<(), SpdyError> {
    if len > MAX_LENGTH {
        return Err(SpdyError::Protocol(format!("a frame of {len} bytes")));
    }
    out.extend_from_slice(&first.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    Ok(())
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
