//! ExecSync: processes run inside a container whose output is collected in memory and
//! sent back, on the connection that asked, when the process exits or is killed at its
//! deadline. The event loop keeps serving other requests meanwhile.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::MonitorError;
use super::log::Stream;
use super::proto;
use super::sys::{self, ReadOutcome};
use crate::runtime::{self, ExecOptions};

/// Cap on each of stdout and stderr; the rest is read and dropped so the process never
/// blocks on a full pipe.
pub const MAX_OUTPUT: usize = 16 << 20;

#[derive(Default)]
struct Capture {
    pipe: Option<File>,
    data: Vec<u8>,
}

struct Exec {
    pid: Pid,
    /// The connection waiting for the result.
    conn: u64,
    out: [Capture; 2],
    deadline: Option<Instant>,
    timed_out: bool,
}

/// What an exec needs from the container and the request.
pub struct ExecRequest<'a> {
    pub bundle: &'a Path,
    pub container_pid: Pid,
    pub args: &'a [String],
    pub timeout: Option<Duration>,
    pub cgroup_root: &'a Path,
    pub conn: u64,
}

/// A finished exec and the connection to send its result on.
pub struct Finished {
    pub conn: u64,
    pub result: proto::ExecResult,
}

pub struct OutputFd<'a> {
    pub fd: BorrowedFd<'a>,
    pub pid: Pid,
    pub stream: Stream,
}

#[derive(Default)]
pub struct Execs {
    list: Vec<Exec>,
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Execs {
    pub fn start(&mut self, req: ExecRequest<'_>) -> Result<(), MonitorError> {
        if req.args.is_empty() {
            return Err(MonitorError::InvalidArgument("exec needs a command".into()));
        }
        let (out, err) = (sys::pipe()?, sys::pipe()?);
        let pid = runtime::exec(ExecOptions {
            bundle: req.bundle,
            container_pid: req.container_pid,
            args: req.args,
            stdio: runtime::Stdio {
                stdin: None,
                stdout: out.write,
                stderr: err.write,
            },
            cgroup_root: req.cgroup_root,
        })?;
        let capture = |pipe| Capture {
            pipe: Some(pipe),
            data: Vec::new(),
        };
        self.list.push(Exec {
            pid,
            conn: req.conn,
            out: [capture(out.read), capture(err.read)],
            deadline: req.timeout.map(|t| Instant::now() + t),
            timed_out: false,
        });
        Ok(())
    }

    pub fn output_fds(&self) -> impl Iterator<Item = OutputFd<'_>> {
        self.list.iter().flat_map(|e| {
            [Stream::Stdout, Stream::Stderr]
                .into_iter()
                .filter_map(move |s| {
                    let pipe = e.out[slot(s)].pipe.as_ref()?;
                    Some(OutputFd {
                        fd: pipe.as_fd(),
                        pid: e.pid,
                        stream: s,
                    })
                })
        })
    }

    pub fn on_output(&mut self, pid: Pid, stream: Stream, buf: &mut [u8]) {
        if let Some(e) = self.list.iter_mut().find(|e| e.pid == pid) {
            e.out[slot(stream)].read(buf, Some(8));
        }
    }

    /// Completes the exec whose process `pid` exited; `None` if `pid` is no exec's.
    pub fn on_exit(&mut self, pid: Pid, code: i32) -> Option<Finished> {
        let i = self.list.iter().position(|e| e.pid == pid)?;
        let mut e = self.list.swap_remove(i);
        let mut buf = [0u8; 8192];
        for c in &mut e.out {
            // The process is gone, so what it wrote is all in the pipe already.
            c.read(&mut buf, None);
        }
        let [out, err] = e.out;
        Some(Finished {
            conn: e.conn,
            result: proto::ExecResult {
                stdout: out.data,
                stderr: err.data,
                exit_code: code,
                timed_out: e.timed_out,
            },
        })
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.list.iter().filter_map(|e| e.deadline).min()
    }

    /// SIGKILLs the execs whose deadline has passed; their result follows on reaping.
    pub fn expire(&mut self, now: Instant) {
        for e in &mut self.list {
            if e.deadline.is_some_and(|d| d <= now) {
                let _ = kill(e.pid, Signal::SIGKILL);
                e.deadline = None;
                e.timed_out = true;
            }
        }
    }

    pub fn kill_all(&self) {
        for e in &self.list {
            let _ = kill(e.pid, Signal::SIGKILL);
        }
    }
}

impl Capture {
    /// Reads until the pipe would block (or `limit` reads), closing it at end of stream.
    fn read(&mut self, buf: &mut [u8], limit: Option<usize>) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        for _ in 0..limit.unwrap_or(usize::MAX) {
            match sys::read_some(pipe, buf) {
                ReadOutcome::Data(n) => {
                    let keep = n.min(MAX_OUTPUT - self.data.len());
                    self.data.extend_from_slice(&buf[..keep]);
                }
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Eof => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}
