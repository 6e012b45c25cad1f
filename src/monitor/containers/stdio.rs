//! A container's stdio as the monitor holds it: the pipes (or pty master) it writes
//! to, copied into its CRI log and to its attachers, and its stdin (`attach.rs`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::super::MonitorError;
use super::super::attach::Io;
use super::super::log::{LineEncoder, Stream, now_timestamp};
use super::super::sys::{self, ReadOutcome};

struct Output {
    pipe: File,
    enc: LineEncoder,
}

pub(super) struct ContainerStdio {
    /// `None` when the daemon gave no log path: output is read and dropped.
    file: Option<File>,
    /// Where `file` was opened, for ReopenContainerLog.
    path: String,
    outputs: [Option<Output>; 2],
    pub(super) attach: Io,
}

/// How a container's stdio is set up (from its CreateContainer request).
pub(super) struct StdinOptions {
    pub(super) stdin: bool,
    pub(super) stdin_once: bool,
    pub(super) max_line: usize,
}

/// What the runtime gets for a container, and what the monitor keeps of it.
pub(super) struct Opened {
    pub(super) runtime: crate::runtime::Stdio,
    pub(super) stdin: Option<File>,
    pub(super) stdout: Option<File>,
    pub(super) stderr: Option<File>,
}

/// The pipes of a container without a tty: stdin (if asked) blocking on the
/// container's side and non-blocking on ours, stdout and stderr the other way round.
pub(super) fn pipes(stdin: bool) -> Result<Opened, MonitorError> {
    let (child_in, our_in) = if stdin {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(MonitorError::sys("pipe2"))?;
        sys::set_nonblocking(&w)?;
        (Some(r), Some(File::from(w)))
    } else {
        (None, None)
    };
    let (out, err) = (sys::pipe()?, sys::pipe()?);
    Ok(Opened {
        runtime: crate::runtime::Stdio::Fds {
            stdin: child_in,
            stdout: out.write,
            stderr: err.write,
        },
        stdin: our_in,
        stdout: Some(out.read),
        stderr: Some(err.read),
    })
}

/// A tty container: the runtime allocates the pty, the monitor gets its master.
pub(super) fn console() -> Opened {
    Opened {
        runtime: crate::runtime::Stdio::Console,
        stdin: None,
        stdout: None,
        stderr: None,
    }
}

pub(super) fn open_log(path: &str) -> Result<Option<File>, MonitorError> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = Path::new(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MonitorError::io("creating", dir, e))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(Some)
        .map_err(|e| MonitorError::io("opening log", path, e))
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl ContainerStdio {
    /// From the log file and the monitor's ends; for a tty, `master` is read as stdout
    /// and, if the container has stdin, written as stdin.
    pub(super) fn new(
        file: Option<File>,
        path: String,
        opened: Opened,
        opts: &StdinOptions,
        master: Option<OwnedFd>,
    ) -> Result<ContainerStdio, MonitorError> {
        let output = |pipe, stream| Output {
            pipe,
            enc: LineEncoder::with_max_line(stream, opts.max_line),
        };
        let mut stdin = opened.stdin;
        let mut stdout = opened.stdout;
        let mut resize = None;
        if let Some(master) = master {
            sys::set_nonblocking(&master)?;
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .map_err(|e| MonitorError::Internal(format!("dup of the pty master: {e}")))
            };
            if opts.stdin {
                stdin = Some(File::from(dup(&master)?));
            }
            stdout = Some(File::from(dup(&master)?));
            resize = Some(master);
        }
        Ok(ContainerStdio {
            file,
            path,
            outputs: [
                stdout.map(|p| output(p, Stream::Stdout)),
                opened.stderr.map(|p| output(p, Stream::Stderr)),
            ],
            attach: Io::new(stdin, opts.stdin_once, resize),
        })
    }

    /// Opens the log path again (kubelet rotated the file).
    pub(super) fn reopen(&mut self) -> Result<(), MonitorError> {
        self.file = open_log(&self.path)?;
        Ok(())
    }

    /// The output fds to read now: none while an attacher holds output back.
    pub(super) fn readable(&self) -> impl Iterator<Item = (std::os::fd::BorrowedFd<'_>, Stream)> {
        let blocked = self.attach.output_blocked();
        self.outputs
            .iter()
            .flatten()
            .filter(move |_| !blocked)
            .map(|o| (o.pipe.as_fd(), o.enc.stream()))
    }

    /// Reads `stream` until it would block (or `limit` reads, or an attacher holds
    /// output back), into the log file and the attachers. At end of stream the pipe is
    /// closed.
    pub(super) fn copy(&mut self, stream: Stream, buf: &mut [u8], limit: Option<usize>) {
        let ContainerStdio {
            file,
            outputs,
            attach,
            ..
        } = self;
        let Some(out) = outputs[slot(stream)].as_mut() else {
            return;
        };
        let mut encoded = Vec::new();
        let mut eof = false;
        for _ in 0..limit.unwrap_or(usize::MAX) {
            match sys::read_some(&mut out.pipe, buf) {
                ReadOutcome::Data(n) => {
                    out.enc.feed(&buf[..n], &now_timestamp(), &mut encoded);
                    attach.fan_out(stream, &buf[..n]);
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    eof = true;
                    break;
                }
            }
            append(file, &mut encoded);
            if limit.is_some() && attach.output_blocked() {
                break;
            }
        }
        append(file, &mut encoded);
        if eof {
            self.close(stream);
        }
    }

    /// Flushes an unterminated last line and stops reading `stream`; once no output
    /// is left, the attachers end.
    pub(super) fn close(&mut self, stream: Stream) {
        if let Some(mut out) = self.outputs[slot(stream)].take() {
            let mut encoded = Vec::new();
            out.enc.finish(&now_timestamp(), &mut encoded);
            append(&mut self.file, &mut encoded);
        }
        if self.outputs.iter().all(Option::is_none) {
            self.attach.output_ended();
        }
    }

    /// Reads every output empty and closes it.
    pub(super) fn drain(&mut self) {
        let mut buf = [0u8; 8192];
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.copy(stream, &mut buf, None);
            self.close(stream);
        }
    }
}

/// Appends encoded lines to the log. A failing write (disk full) loses them but the pipe
/// keeps being drained so the container never blocks on its output.
fn append(file: &mut Option<File>, encoded: &mut Vec<u8>) {
    if let (Some(f), false) = (file.as_mut(), encoded.is_empty()) {
        let _ = f.write_all(encoded);
    }
    encoded.clear();
}
