//! ExecSync: processes run inside a container whose output is collected in memory and
//! sent back, on the connection that asked, when the process exits or is killed at its
//! deadline. The event loop keeps serving other requests meanwhile.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::MonitorError;
use super::log::Stream;
use super::proto;
use super::sys::{self, ReadOutcome};
use crate::runtime::{self, ExecOptions, ExecTarget};

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
    pub target: &'a ExecTarget,
    pub args: &'a [String],
    pub timeout: Option<Duration>,
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
            target: req.target,
            args: req.args,
            stdio: runtime::Stdio::Fds {
                stdin: None,
                stdout: out.write,
                stderr: err.write,
            },
        })?
        .pid;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::OwnedFd;

    fn fake(execs: &mut Execs, pid: Pid, timeout: Option<Duration>) -> (OwnedFd, OwnedFd) {
        let (out, err) = (sys::pipe().unwrap(), sys::pipe().unwrap());
        execs.list.push(Exec {
            pid,
            conn: 7,
            out: [
                Capture {
                    pipe: Some(out.read),
                    data: Vec::new(),
                },
                Capture {
                    pipe: Some(err.read),
                    data: Vec::new(),
                },
            ],
            deadline: timeout.map(|t| Instant::now() + t),
            timed_out: false,
        });
        (out.write, err.write)
    }

    #[test]
    fn output_is_collected_until_exit() {
        let mut execs = Execs::default();
        let pid = Pid::from_raw(999_999);
        let (out, err) = fake(&mut execs, pid, None);
        let (mut out, mut err) = (File::from(out), File::from(err));
        let mut buf = [0u8; 4];
        out.write_all(b"hello ").unwrap();
        execs.on_output(pid, Stream::Stdout, &mut buf);
        out.write_all(b"world").unwrap();
        err.write_all(b"warn").unwrap();
        assert!(execs.on_exit(Pid::from_raw(1234), 0).is_none());
        let done = execs.on_exit(pid, 3).unwrap();
        assert_eq!(done.conn, 7);
        assert_eq!(done.result.stdout, b"hello world");
        assert_eq!(done.result.stderr, b"warn");
        assert_eq!((done.result.exit_code, done.result.timed_out), (3, false));
        assert_eq!(execs.output_fds().count(), 0);
    }

    #[test]
    fn deadline_kills_the_process_and_marks_the_result() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let mut execs = Execs::default();
        let _pipes = fake(&mut execs, pid, Some(Duration::from_millis(1)));
        assert!(execs.next_deadline().is_some());
        execs.expire(Instant::now() + Duration::from_millis(5));
        assert!(execs.next_deadline().is_none());
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        let done = execs.on_exit(pid, 137).unwrap();
        assert!(done.result.timed_out);
    }

    #[test]
    fn output_is_capped() {
        let mut c = Capture {
            pipe: None,
            data: vec![0; MAX_OUTPUT - 2],
        };
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        sys::set_nonblocking(&r).unwrap();
        c.pipe = Some(File::from(r));
        File::from(w).write_all(b"abcdef").unwrap();
        let mut buf = [0u8; 16];
        c.read(&mut buf, None);
        assert_eq!(c.data.len(), MAX_OUTPUT);
        assert_eq!(&c.data[MAX_OUTPUT - 2..], b"ab");
    }
}
