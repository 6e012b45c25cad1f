//! The CRI container log format, as containerd's `internal/cri/io` logger writes it:
//!
//! ```text
//! 2026-11-22T08:30:00.123456789+01:00 stdout F a full line
//! 2026-11-22T08:30:00.123456789+01:00 stderr P the first 16 KiB of a longer line
//! ```
//!
//! A line is cut into pieces of at most [`MAX_LINE`] bytes; all but the last are tagged
//! `P`. A trailing `\r` before the newline is dropped. Output left at end of stream
//! without a newline is written tagged `P` (as containerd does: the line never ended, and
//! the kubelet then prints it without adding a newline).
//!
//! Pure code: the caller supplies the timestamp and writes the encoded bytes.

use chrono::{DateTime, Local, SecondsFormat};

/// containerd's default `max_container_log_line_size`.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// RFC 3339 with nanoseconds in local time ("Z" when local time is UTC).
pub fn timestamp(t: DateTime<Local>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub fn now_timestamp() -> String {
    timestamp(Local::now())
}

/// Turns one stream's raw output into CRI log lines.
#[derive(Debug)]
pub struct LineEncoder {
    stream: Stream,
    /// The unfinished current line (at most `max_line` + 1 bytes).
    pending: Vec<u8>,
    max_line: usize,
}

impl LineEncoder {
    #[cfg(test)]
    pub fn new(stream: Stream) -> Self {
        Self::with_max_line(stream, MAX_LINE)
    }

    pub fn with_max_line(stream: Stream, max_line: usize) -> Self {
        LineEncoder {
            stream,
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Appends to `out` the log lines completed by `data`.
    pub fn feed(&mut self, mut data: &[u8], ts: &str, out: &mut Vec<u8>) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.push(&data[..nl], ts, out);
            if self.pending.last() == Some(&b'\r') {
                self.pending.pop();
            }
            self.emit(b'F', ts, out);
            data = &data[nl + 1..];
        }
        self.push(data, ts, out);
    }

    /// End of stream: writes what is left of an unterminated line, tagged `P`.
    pub fn finish(&mut self, ts: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.emit(b'P', ts, out);
        }
        self.pending = Vec::new();
    }

    /// Adds bytes without a newline, writing full-size `P` pieces as they fill up.
    fn push(&mut self, mut data: &[u8], ts: &str, out: &mut Vec<u8>) {
        while !data.is_empty() {
            // One byte over the limit forces a cut; a second allows for a held-back `\r`.
            let room = self.max_line + 2 - self.pending.len().min(self.max_line + 2);
            let take = room.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.split_overlong(ts, out);
        }
    }

    /// Writes a `P` piece when the line is longer than `max_line`. A `\r` in last
    /// position does not count: it may be the first half of a `\r\n`.
    fn split_overlong(&mut self, ts: &str, out: &mut Vec<u8>) {
        let len = self.pending.len();
        let content = if self.pending.last() == Some(&b'\r') {
            len - 1
        } else {
            len
        };
        if content > self.max_line {
            write_line(out, self.header(ts, b'P'), &self.pending[..self.max_line]);
            self.pending.drain(..self.max_line);
        }
    }

    fn emit(&mut self, tag: u8, ts: &str, out: &mut Vec<u8>) {
        write_line(out, self.header(ts, tag), &self.pending);
        self.pending.clear();
        if self.pending.capacity() > 4096 {
            // Long lines are rare: do not keep 16 KiB per stream around for them.
            self.pending.shrink_to(4096);
        }
    }

    fn header<'a>(&self, ts: &'a str, tag: u8) -> Header<'a> {
        Header {
            ts,
            stream: self.stream,
            tag,
        }
    }
}

struct Header<'a> {
    ts: &'a str,
    stream: Stream,
    tag: u8,
}

fn write_line(out: &mut Vec<u8>, h: Header<'_>, content: &[u8]) {
    out.extend_from_slice(h.ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(h.stream.name());
    out.push(b' ');
    out.push(h.tag);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const TS: &str = "2026-11-22T08:30:00.000000001Z";

    fn encode(enc: &mut LineEncoder, chunks: &[&[u8]], eof: bool) -> String {
        let mut out = Vec::new();
        for c in chunks {
            enc.feed(c, TS, &mut out);
        }
        if eof {
            enc.finish(TS, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_lines_and_empty_lines() {
        let mut e = LineEncoder::new(Stream::Stdout);
        let got = encode(&mut e, &[b"hello\n\nworld\r\n"], true);
        assert_eq!(
            got,
            format!("{TS} stdout F hello\n{TS} stdout F \n{TS} stdout F world\n")
        );
    }

    #[test]
    fn a_line_split_across_reads_is_one_line() {
        let mut e = LineEncoder::new(Stream::Stderr);
        assert_eq!(encode(&mut e, &[b"hel", b"lo"], false), "");
        let got = encode(&mut e, &[b" there\nnext"], false);
        assert_eq!(got, format!("{TS} stderr F hello there\n"));
        assert_eq!(encode(&mut e, &[], true), format!("{TS} stderr P next\n"));
    }

    #[test]
    fn long_lines_are_cut_into_partial_pieces() {
        let mut e = LineEncoder::with_max_line(Stream::Stdout, 4);
        let got = encode(&mut e, &[b"abcdefghij\n", b"wxyz\n", b"12345678\n"], true);
        let want = [
            "P abcd", "P efgh", "F ij", "F wxyz", // exactly max: one full line
            "P 1234", "F 5678", // a multiple of max: the last piece is full size
        ];
        let want: String = want.iter().map(|l| format!("{TS} stdout {l}\n")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_at_the_cut_point_is_not_split() {
        let mut e = LineEncoder::with_max_line(Stream::Stdout, 4);
        let got = encode(&mut e, &[b"abcd\r", b"\nefgh\rx\n"], true);
        assert_eq!(
            got,
            format!("{TS} stdout F abcd\n{TS} stdout P efgh\n{TS} stdout F \rx\n")
        );
    }

    #[test]
    fn default_limit_is_16k() {
        let mut e = LineEncoder::new(Stream::Stdout);
        let line = vec![b'a'; MAX_LINE + 10];
        let mut out = Vec::new();
        e.feed(&line, TS, &mut out);
        e.feed(b"\n", TS, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), TS.len() + " stdout P ".len() + MAX_LINE);
        assert_eq!(lines[1], format!("{TS} stdout F aaaaaaaaaa"));
    }

    #[test]
    fn eof_without_output_writes_nothing() {
        let mut e = LineEncoder::new(Stream::Stdout);
        assert_eq!(
            encode(&mut e, &[b"done\n"], true),
            format!("{TS} stdout F done\n")
        );
    }

    #[test]
    fn timestamp_has_nanoseconds_and_offset() {
        let t = Local.timestamp_opt(1_795_336_200, 123_456_789).unwrap();
        let s = timestamp(t);
        // The offset depends on the machine's zone; parse it back to check it is exact.
        let back = DateTime::parse_from_rfc3339(&s).unwrap();
        assert_eq!(back.timestamp(), 1_795_336_200);
        assert_eq!(back.timestamp_subsec_nanos(), 123_456_789);
        assert!(s.contains(".123456789"), "{s}");
        assert!(
            s.ends_with('Z') || s[s.len() - 6..].starts_with(['+', '-']),
            "{s}"
        );
        let utc = t.with_timezone(&chrono::FixedOffset::east_opt(0).unwrap());
        assert_eq!(
            utc.to_rfc3339_opts(SecondsFormat::Nanos, true),
            "2026-11-22T08:30:00.123456789Z"
        );
    }
}
