//! SPDY/3 header blocks: `count, (name length, name, value length, value)*`, all lengths
//! 32-bit big endian, compressed with one zlib stream per direction per connection (primed
//! with [`DICTIONARY`]) and a sync flush after each block.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;
use super::dictionary::DICTIONARY;

/// The largest decompressed header block accepted: port-forward's carry a handful of
/// short headers, and a bound keeps a small compressed block from inflating without end.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// A stream's headers in the order sent; names are lower case on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive; several values are NUL-separated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            let name = name.to_ascii_lowercase();
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    fn decode(mut raw: &[u8]) -> Result<Headers, SpdyError> {
        let count = take_u32(&mut raw)?;
        let mut pairs = Vec::new();
        for _ in 0..count {
            let name = take_string(&mut raw)?;
            let value = take_string(&mut raw)?;
            if name.is_empty() {
                return Err(SpdyError::Protocol("a header with an empty name".into()));
            }
            pairs.push((name, value));
        }
        Ok(Headers(pairs))
    }
}

fn take_u32(raw: &mut &[u8]) -> Result<u32, SpdyError> {
    let Some((head, rest)) = raw.split_first_chunk::<4>() else {
        return Err(SpdyError::Protocol("a header block ends early".into()));
    };
    *raw = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(raw: &mut &[u8]) -> Result<String, SpdyError> {
    let len = take_u32(raw)? as usize;
    if len > raw.len() {
        return Err(SpdyError::Protocol(
            "a header is longer than its block".into(),
        ));
    }
    let (s, rest) = raw.split_at(len);
    *raw = rest;
    String::from_utf8(s.to_vec())
        .map_err(|_| SpdyError::Protocol("a header is not valid UTF-8".into()))
}

/// Compresses the header blocks one side sends.
pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Result<Self, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Deflater(z))
    }

    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = headers.encode();
        let mut out = Vec::with_capacity(input.len() + 64);
        let start = self.0.total_in();
        loop {
            let done = (self.0.total_in() - start) as usize;
            out.reserve(256);
            let status = self
                .0
                .compress_vec(&input[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = (self.0.total_in() - start) as usize == input.len();
            // A sync flush is complete once all input is in and output had room to spare.
            if consumed && out.len() < out.capacity() || status == Status::StreamEnd {
                return Ok(out);
            }
        }
    }
}

/// Inflates the header blocks the peer sends.
pub struct Inflater(Decompress);

impl Inflater {
    pub fn new() -> Self {
        Inflater(Decompress::new(true))
    }

    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let start = self.0.total_in();
        loop {
            let done = (self.0.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Protocol("a header block is too large".into()));
                }
                out.reserve(out.len());
            }
            let before = (self.0.total_in(), out.len());
            match self
                .0
                .decompress_vec(&block[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
            let all_in = (self.0.total_in() - start) as usize == block.len();
            let stuck = before == (self.0.total_in(), out.len());
            if all_in && out.len() < out.capacity() || stuck {
                break;
            }
        }
        Headers::decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(kind: &str, id: &str) -> Headers {
        Headers(vec![
            ("streamtype".into(), kind.into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), id.into()),
        ])
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(DICTIONARY).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_round_trip_through_one_zlib_stream_each_way() {
        let (mut tx, mut rx) = (Deflater::new().unwrap(), Inflater::new());
        for i in 0..50 {
            let h = pf(if i % 2 == 0 { "error" } else { "data" }, &i.to_string());
            let block = tx.compress(&h).unwrap();
            assert_eq!(rx.decompress(&block).unwrap(), h);
        }
        let empty = Headers::default();
        assert_eq!(rx.decompress(&tx.compress(&empty).unwrap()).unwrap(), empty);
    }

    #[test]
    fn names_are_sent_lower_case_and_read_in_any_case() {
        let h = Headers(vec![("StreamType".into(), "data".into())]);
        let mut rx = Inflater::new();
        let got = rx.decompress(&Deflater::new().unwrap().compress(&h).unwrap());
        let got = got.unwrap();
        assert_eq!(got.0[0].0, "streamtype");
        assert_eq!(got.get("STREAMTYPE"), Some("data"));
        let multi = Headers(vec![("a".into(), "x\0y".into())]);
        assert_eq!(multi.get("a"), Some("x"));
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        assert!(Inflater::new().decompress(b"not zlib at all").is_err());
        // A valid stream whose block claims more pairs than it holds.
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY).unwrap();
        let mut out = Vec::with_capacity(256);
        z.compress_vec(&[0, 0, 0, 9, 0, 0, 0, 1], &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(Inflater::new().decompress(&out).is_err());
        // A name longer than what follows.
        assert!(Headers::decode(&[0, 0, 0, 1, 0, 0, 1, 0, b'a']).is_err());
        assert!(Headers::decode(&[0, 0]).is_err());
    }

    #[test]
    fn a_header_bomb_is_refused() {
        let big = Headers(vec![("x".into(), "a".repeat(MAX_HEADER_BLOCK * 2))]);
        let block = Deflater::new().unwrap().compress(&big).unwrap();
        assert!(block.len() < MAX_HEADER_BLOCK / 4, "it compresses well");
        assert!(Inflater::new().decompress(&block).is_err());
    }
}
