//! A monitor client connection and its buffered, non-blocking output.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use super::frame::FrameReader;

/// One client connection of the monitor's socket: frames in, replies out, written as
/// far as the non-blocking socket takes them.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) stream: UnixStream,
    pub(super) reader: FrameReader,
    pub(super) out: Vec<u8>,
    pub(super) written: usize,
    /// A deferred reply (exec, shutdown) is due: later requests wait in `reader`.
    pub(super) waiting: bool,
    /// An exit feed (Subscribe): every reaped container is reported on it.
    pub(super) subscribed: bool,
    /// Carries a streaming exec: read even while waiting, to see the daemon hang up.
    pub(super) streaming: bool,
    pub(super) eof: bool,
    pub(super) dead: bool,
}

impl Conn {
    pub(super) fn finished(&self) -> bool {
        self.dead || (self.eof && !self.waiting && self.out.is_empty())
    }

    /// Writes as much of the pending output as the socket takes.
    pub(super) fn flush(&mut self) {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        self.written = 0;
        // Exec results can be megabytes: do not keep that capacity around.
        self.out = Vec::new();
    }
}
