//! A container's stdin and its attachers (`Attach` in monitor.proto). Each attacher is
//! a monitor connection with up to three pipes whose other ends the daemon holds: its
//! input goes to the container's stdin, the container's output is copied to it as well
//! as to the log. Everything is non-blocking: input the container does not take yet
//! waits in the attacher's buffer (and its pipe is not read meanwhile), and output an
//! attacher does not take yet waits in its buffer while the container's output is not
//! read (a slow attacher holds the container back, as under containerd, rather than
//! lose bytes).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::MonitorError;
use super::log::Stream;
use super::proto;
use super::sys::{self, ReadOutcome};

/// Bytes an attacher's output may hold back beyond what its pipe took: at most what
/// the container's last read brought (its output is not read while any is held).
struct Sink {
    pipe: File,
    pending: Vec<u8>,
}

struct Input {
    pipe: File,
    pending: Vec<u8>,
}

struct Attacher {
    conn: u64,
    input: Option<Input>,
    outputs: [Option<Sink>; 2],
    /// Detached, or the container's output ended: AttachEnded goes out once the
    /// outputs are flushed and closed.
    ending: bool,
}

/// A container's stdin and attachers.
pub struct Io {
    /// The container's stdin (a pipe's write end, or a duplicate of the pty master),
    /// non-blocking; `None` without stdin, or once stdin_once closed it.
    stdin: Option<File>,
    stdin_once: bool,
    /// The pty master for a tty container: attachers get duplicates to resize it.
    master: Option<OwnedFd>,
    attachers: Vec<Attacher>,
    /// The container's output ended: a new attacher has nothing to wait for.
    output_done: bool,
}

/// An fd of an attacher (or the container's stdin) the event loop should watch.
pub struct AttachFd<'a> {
    pub fd: BorrowedFd<'a>,
    pub watch: Watch,
}

/// What a watched fd is ready for.
#[derive(Debug, Clone, Copy)]
pub enum Watch {
    /// The attacher on this connection sent input.
    Input(u64),
    /// The attacher on this connection takes held-back output again.
    Output(u64, Stream),
    /// The container's stdin takes held-back input again.
    Stdin,
}

impl Watch {
    pub fn writable(self) -> bool {
        !matches!(self, Watch::Input(_))
    }
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Io {
    pub fn new(stdin: Option<File>, stdin_once: bool, master: Option<OwnedFd>) -> Io {
        Io {
            stdin,
            stdin_once,
            master,
            attachers: Vec::new(),
            output_done: false,
        }
    }

    /// Adds an attacher on `conn`; what it gets and the daemon's ends of its pipes.
    pub fn attach(
        &mut self,
        conn: u64,
        req: &proto::Attach,
    ) -> Result<(proto::AttachStarted, Vec<OwnedFd>), MonitorError> {
        let tty = self.master.is_some();
        let started = proto::AttachStarted {
            stdin: req.stdin && self.stdin.is_some(),
            stdout: req.stdout,
            stderr: req.stderr && !tty,
            resize: tty,
        };
        let mut fds = Vec::new();
        let mut attacher = Attacher {
            conn,
            input: None,
            outputs: [None, None],
            ending: self.output_done,
        };
        if started.stdin {
            let p = sys::pipe()?;
            fds.push(p.write);
            attacher.input = Some(Input {
                pipe: p.read,
                pending: Vec::new(),
            });
        }
        for (wanted, i) in [(started.stdout, 0), (started.stderr, 1)] {
            if wanted {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(MonitorError::sys("pipe2"))?;
                sys::set_nonblocking(&write)?;
                fds.push(read);
                attacher.outputs[i] = Some(Sink {
                    pipe: File::from(write),
                    pending: Vec::new(),
                });
            }
        }
        if let Some(master) = &self.master {
            let dup = master
                .try_clone()
                .map_err(|e| MonitorError::Internal(format!("dup of the pty master: {e}")))?;
            fds.push(dup);
        }
        self.attachers.push(attacher);
        Ok((started, fds))
    }

    /// Whether an attacher still holds output back: the container's is not read then.
    pub fn output_blocked(&self) -> bool {
        self.attachers
            .iter()
            .flat_map(|a| a.outputs.iter().flatten())
            .any(|s| !s.pending.is_empty())
    }

    /// Copies what the container wrote on `stream` to every attacher that wants it.
    pub fn fan_out(&mut self, stream: Stream, data: &[u8]) {
        for a in &mut self.attachers {
            let out = &mut a.outputs[slot(stream)];
            if let Some(sink) = out {
                if sink.pending.is_empty() {
                    match write_some(&mut sink.pipe, data) {
                        Ok(n) => sink.pending.extend_from_slice(&data[n..]),
                        // The daemon closed its end: the client went away.
                        Err(_) => *out = None,
                    }
                } else {
                    sink.pending.extend_from_slice(data);
                }
            }
        }
    }

    /// The fds to watch: attachers' inputs while the container's stdin takes bytes,
    /// outputs with bytes held back, and the container's stdin while input waits for it.
    pub fn fds(&self) -> impl Iterator<Item = AttachFd<'_>> {
        let stdin_waiting = self
            .attachers
            .iter()
            .any(|a| a.input.as_ref().is_some_and(|i| !i.pending.is_empty()));
        let inputs = self.attachers.iter().filter_map(move |a| {
            let input = a.input.as_ref().filter(|_| !stdin_waiting)?;
            Some(attach_fd(input.pipe.as_fd(), Watch::Input(a.conn)))
        });
        let outputs = self.attachers.iter().flat_map(|a| {
            [Stream::Stdout, Stream::Stderr]
                .into_iter()
                .filter_map(|s| {
                    let sink = a.outputs[slot(s)].as_ref()?;
                    let held = !sink.pending.is_empty();
                    held.then(|| attach_fd(sink.pipe.as_fd(), Watch::Output(a.conn, s)))
                })
        });
        let stdin = self
            .stdin
            .as_ref()
            .filter(|_| stdin_waiting)
            .map(|f| attach_fd(f.as_fd(), Watch::Stdin));
        inputs.chain(outputs).chain(stdin)
    }

    /// Reads what the attacher on `conn` sent and passes it to the container's stdin.
    pub fn on_input(&mut self, conn: u64, buf: &mut [u8]) {
        let Some(i) = self.attachers.iter().position(|a| a.conn == conn) else {
            return;
        };
        let Some(input) = self.attachers[i].input.as_mut() else {
            return;
        };
        match sys::read_some(&mut input.pipe, buf) {
            ReadOutcome::WouldBlock => {}
            // Without a stdin (closed, or the container closed it) input is dropped.
            ReadOutcome::Data(n) => {
                if let Some(stdin) = &mut self.stdin {
                    match write_some(stdin, &buf[..n]) {
                        Ok(w) => input.pending.extend_from_slice(&buf[w..n]),
                        // The container closed its stdin: nothing it will read again.
                        Err(_) => self.close_stdin(),
                    }
                }
            }
            ReadOutcome::Eof => self.input_ended(i),
        }
    }

    /// An attacher's stdin ended (its input was all passed on: inputs are not read
    /// while any waits). containerd's rule: a stdin_once container without a tty has
    /// its stdin closed and the attacher stays until the output ends (at once if it
    /// takes no output); otherwise the attacher is detached.
    fn input_ended(&mut self, i: usize) {
        self.attachers[i].input = None;
        if self.closes_stdin_once() {
            self.close_stdin();
            let a = &mut self.attachers[i];
            a.ending |= a.outputs.iter().all(Option::is_none);
        } else {
            let a = &mut self.attachers[i];
            a.outputs = [None, None];
            a.ending = true;
        }
    }

    /// Whether the end of an attacher's stdin closes the container's.
    fn closes_stdin_once(&self) -> bool {
        self.stdin_once && self.master.is_none()
    }

    /// Closes the container's stdin; input still waiting for it is dropped.
    fn close_stdin(&mut self) {
        self.stdin = None;
        for input in self.attachers.iter_mut().filter_map(|a| a.input.as_mut()) {
            input.pending.clear();
        }
    }

    /// The container's stdin takes bytes again: pass on what attachers sent.
    pub fn on_stdin_writable(&mut self) {
        for a in &mut self.attachers {
            let Some(input) = a.input.as_mut().filter(|i| !i.pending.is_empty()) else {
                continue;
            };
            let Some(stdin) = self.stdin.as_mut() else {
                input.pending.clear();
                continue;
            };
            match write_some(stdin, &input.pending) {
                Ok(n) => drop(input.pending.drain(..n)),
                Err(_) => {
                    self.close_stdin();
                    return;
                }
            }
            if !input.pending.is_empty() {
                return;
            }
        }
    }

    /// The attacher on `conn` takes output on `stream` again.
    pub fn on_output_writable(&mut self, conn: u64, stream: Stream) {
        let Some(a) = self.attachers.iter_mut().find(|a| a.conn == conn) else {
            return;
        };
        let out = &mut a.outputs[slot(stream)];
        if let Some(sink) = out {
            match write_some(&mut sink.pipe, &sink.pending) {
                Ok(n) => drop(sink.pending.drain(..n)),
                Err(_) => *out = None,
            }
        }
    }

    /// The container's output ended (all of it was fanned out): every attacher ends
    /// once it has taken the rest. A pty's stdin goes with it (no slave is left); a
    /// pipe's stays until the container exits, which may still read it.
    pub fn output_ended(&mut self) {
        self.output_done = true;
        if self.master.is_some() {
            self.close_stdin();
        }
        for a in &mut self.attachers {
            a.input = None;
            a.ending = true;
        }
    }

    /// The container exited: nothing will read its stdin again.
    pub fn container_exited(&mut self) {
        self.close_stdin();
        self.output_ended();
    }

    /// Attachers that ended and took all their output: removed (closing the daemon's
    /// pipes); their connections are owed AttachEnded.
    pub fn take_ended(&mut self) -> Vec<u64> {
        let mut ended = Vec::new();
        self.attachers.retain(|a| {
            let flushed = a.outputs.iter().flatten().all(|s| s.pending.is_empty());
            let done = a.ending && flushed;
            if done {
                ended.push(a.conn);
            }
            !done
        });
        ended
    }

    /// The attacher's connection ended: it goes, and its pipes close. Its stdin ended
    /// with it, with the same effect on a stdin_once container as a closed stdin
    /// (containerd closes it either way). Whether `conn` had an attacher here.
    pub fn drop_conn(&mut self, conn: u64) -> bool {
        let Some(i) = self.attachers.iter().position(|a| a.conn == conn) else {
            return false;
        };
        let gone = self.attachers.remove(i);
        if gone.input.is_some() && self.closes_stdin_once() {
            self.close_stdin();
        }
        true
    }

    /// Every attacher goes (the container is deleted); their connections are owed
    /// AttachEnded.
    pub fn take_all(&mut self) -> Vec<u64> {
        self.attachers.drain(..).map(|a| a.conn).collect()
    }
}

fn attach_fd(fd: BorrowedFd<'_>, watch: Watch) -> AttachFd<'_> {
    AttachFd { fd, watch }
}

/// Writes what the non-blocking `pipe` takes now.
fn write_some(pipe: &mut File, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match pipe.write(&data[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
