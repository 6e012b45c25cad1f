//! The monitor's event loop: one `poll` over the listening socket, client connections,
//! container and exec output pipes, attachers' pipes and a SIGCHLD signalfd, with exec deadlines and the
//! shutdown grace period as the only timers.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use prost::Message;

use super::attach::Watch;
use super::conn::Conn;
use super::containers::Containers;
use super::exec::{ExecRequest, Execs};
use super::exec_stream::StreamExecs;
use super::frame::{self, FrameReader, MAX_REQUEST};
use super::log::Stream;
use super::podinit::PodInit;
use super::proto::{self, request::Kind as Req, response::Kind as Resp};
use super::sys::{self};
use super::{MonitorArgs, MonitorError, PID_NAME, SOCKET_NAME};
use crate::error::{Classify, Kind};

mod streams;

/// Connections beyond this are closed at once (the daemon uses a handful at most).
const MAX_CONNS: usize = 64;
/// How long Shutdown waits for SIGKILLed containers before destroying them anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn serve(args: &MonitorArgs) -> Result<(), MonitorError> {
    sys::setup_process()?;
    let signals = sys::sigchld_fd()?;
    // The daemon makes the pod dir before spawning; if it is gone, the pod was rolled
    // back while this monitor was starting, and serving it would leak a process.
    if !args.dir.is_dir() {
        return Err(MonitorError::io(
            "opening pod dir",
            &args.dir,
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let socket = args.dir.join(SOCKET_NAME);
    let listener = sys::listen(&socket)?;
    // After `listen`, which refuses to run beside a live monitor of the same pod.
    let pod_init = PodInit::start_if_asked(args).inspect_err(|_| {
        let _ = std::fs::remove_file(&socket);
    })?;
    let pid_file = args.dir.join(PID_NAME);
    crate::store::write_atomic(&pid_file, std::process::id().to_string().as_bytes())?;
    eprintln!(
        "crius monitor {}: serving {}",
        args.pod_id,
        socket.display()
    );
    let monitor = Monitor {
        socket,
        pid_file,
        cgroup_root: args.cgroup_root.clone(),
        listener,
        signals,
        conns: Vec::new(),
        next_conn: 0,
        containers: Containers::default(),
        execs: Execs::default(),
        stream_execs: StreamExecs::default(),
        pod_init,
        shutdown: None,
    };
    monitor.run()
}

#[derive(Clone, Copy)]
enum Token {
    Listener,
    Signals,
    Conn(u64),
    Log(u64, Stream),
    Exec(Pid, Stream),
    /// An attacher's pipe, or the stdin, of the container with this serial.
    Attach(u64, Watch),
}

struct Shutdown {
    /// Every connection that asked; each gets the final Ok (none when the pod init died).
    conns: Vec<u64>,
    deadline: Instant,
}

struct Monitor {
    socket: PathBuf,
    pid_file: PathBuf,
    cgroup_root: PathBuf,
    listener: UnixListener,
    signals: SignalFd,
    conns: Vec<Conn>,
    next_conn: u64,
    containers: Containers,
    execs: Execs,
    stream_execs: StreamExecs,
    /// PID 1 of the pod's shared PID namespace, while it runs.
    pod_init: Option<PodInit>,
    shutdown: Option<Shutdown>,
}

impl Monitor {
    fn run(mut self) -> Result<(), MonitorError> {
        let mut buf = vec![0u8; 8192];
        loop {
            for (token, events) in self.wait()? {
                self.dispatch(token, events, &mut buf);
            }
            self.execs.expire(Instant::now());
            for conn in self.containers.ended_attaches() {
                self.respond(conn, Resp::AttachEnded(proto::AttachEnded {}));
                self.resume(conn);
            }
            self.conns.retain(|c| !c.finished());
            if self.shutdown_due() {
                self.finish_shutdown();
                return Ok(());
            }
        }
    }

    /// Polls every source; returns the ready ones.
    fn wait(&self) -> Result<Vec<(Token, PollFlags)>, MonitorError> {
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        let mut tokens = vec![Token::Listener, Token::Signals];
        for c in &self.conns {
            let mut ev = PollFlags::empty();
            if (!c.waiting || c.streaming) && !c.eof {
                ev |= PollFlags::POLLIN;
            }
            if c.written < c.out.len() {
                ev |= PollFlags::POLLOUT;
            }
            if ev.is_empty() && c.eof {
                // Hung up while its exec runs: POLLHUP would be reported on every round.
                continue;
            }
            fds.push(PollFd::new(c.stream.as_fd(), ev));
            tokens.push(Token::Conn(c.id));
        }
        for o in self.containers.output_fds() {
            fds.push(PollFd::new(o.fd, PollFlags::POLLIN));
            tokens.push(Token::Log(o.serial, o.stream));
        }
        for o in self.execs.output_fds() {
            fds.push(PollFd::new(o.fd, PollFlags::POLLIN));
            tokens.push(Token::Exec(o.pid, o.stream));
        }
        for (serial, a) in self.containers.attach_fds() {
            let ev = match a.watch.writable() {
                true => PollFlags::POLLOUT,
                false => PollFlags::POLLIN,
            };
            fds.push(PollFd::new(a.fd, ev));
            tokens.push(Token::Attach(serial, a.watch));
        }
        match poll(&mut fds, self.timeout()) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(source) => return Err(MonitorError::Sys { op: "poll", source }),
        }
        Ok(fds
            .iter()
            .zip(tokens)
            .filter_map(|(fd, t)| Some((t, fd.revents().filter(|r| !r.is_empty())?)))
            .collect())
    }

    /// Until the nearest exec deadline or the end of the shutdown grace period.
    fn timeout(&self) -> PollTimeout {
        let shutdown = self.shutdown.as_ref().map(|s| s.deadline);
        let Some(next) = [self.execs.next_deadline(), shutdown]
            .into_iter()
            .flatten()
            .min()
        else {
            return PollTimeout::NONE;
        };
        // Round up so we do not wake a hair early and spin.
        let left = next.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
    }

    fn dispatch(&mut self, token: Token, events: PollFlags, buf: &mut [u8]) {
        match token {
            Token::Listener => self.accept(),
            Token::Signals => self.reap(),
            Token::Conn(id) => {
                if events.intersects(PollFlags::POLLOUT)
                    && let Some(c) = self.conn_mut(id)
                {
                    c.flush();
                }
                if events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    self.read_conn(id);
                }
            }
            Token::Log(serial, stream) => self.containers.on_output(serial, stream, buf),
            Token::Exec(pid, stream) => self.execs.on_output(pid, stream, buf),
            Token::Attach(serial, watch) => self.containers.on_attach(serial, watch, buf),
        }
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.conns.len() >= MAX_CONNS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.next_conn += 1;
            self.conns.push(Conn {
                id: self.next_conn,
                stream,
                reader: FrameReader::new(MAX_REQUEST),
                out: Vec::new(),
                written: 0,
                waiting: false,
                subscribed: false,
                streaming: false,
                eof: false,
                dead: false,
            });
        }
    }

    fn reap(&mut self) {
        sys::drain_signals(&self.signals);
        for exit in sys::reap_all() {
            if self.pod_init.as_ref().is_some_and(|p| p.pid == exit.pid) {
                self.pod_init = None;
                if self.shutdown.is_none() {
                    // The namespace and every process in it died: the pod is gone.
                    eprintln!("pod init exited with {}; shutting the pod down", exit.code);
                    self.begin_shutdown(None);
                }
                continue;
            }
            if self
                .containers
                .on_exit(exit.pid, exit.code, &self.cgroup_root)
            {
                self.notify_exit(exit.pid);
                continue;
            }
            if let Some(conn) = self.stream_execs.on_exit(exit.pid) {
                let exited = proto::ExecExited {
                    exit_code: exit.code,
                };
                self.respond(conn, Resp::ExecExited(exited));
                self.resume(conn);
            }
            if let Some(done) = self.execs.on_exit(exit.pid, exit.code) {
                self.respond(done.conn, Resp::Exec(done.result));
                self.resume(done.conn);
            }
            // Anything else is an orphan reparented to us: reaping it is all we owe it.
        }
    }

    /// Tells every subscriber that the container whose init was `pid` exited.
    fn notify_exit(&mut self, pid: Pid) {
        let Some(id) = self.containers.id_of(pid) else {
            return;
        };
        let feeds: Vec<u64> = self
            .conns
            .iter()
            .filter(|c| c.subscribed)
            .map(|c| c.id)
            .collect();
        for conn in feeds {
            let exited = proto::ContainerExited { id: id.clone() };
            self.respond(conn, Resp::Exited(exited));
        }
    }

    fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    fn read_conn(&mut self, id: u64) {
        let Some(c) = self.conn_mut(id) else {
            return;
        };
        match c.reader.fill(&mut c.stream) {
            Ok(0) => c.eof = true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => c.dead = true,
        }
        if c.eof || c.dead {
            self.stream_execs.hang_up(id);
            // A dropped attacher is owed nothing more: the connection may finish.
            if self.containers.detach(id)
                && let Some(c) = self.conn_mut(id)
            {
                c.waiting = false;
            }
        }
        self.process_frames(id);
    }

    /// Serves the buffered requests of a connection, in order, until one is deferred.
    fn process_frames(&mut self, id: u64) {
        loop {
            let Some(c) = self.conn_mut(id) else {
                return;
            };
            if c.waiting || c.dead {
                return;
            }
            let body = match c.reader.next_frame() {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(_) => {
                    // A length beyond the limit: garbage, not a request.
                    c.dead = true;
                    return;
                }
            };
            match proto::Request::decode(&body[..]) {
                Ok(req) => self.handle(id, req),
                Err(_) => c.dead = true,
            }
        }
    }

    fn handle(&mut self, conn: u64, req: proto::Request) {
        let result = match req.kind {
            Some(
                Req::Create(_)
                | Req::Start(_)
                | Req::ExecSync(_)
                | Req::ExecStream(_)
                | Req::Attach(_),
            ) if self.shutdown.is_some() => Err(MonitorError::FailedPrecondition(
                "the monitor is shutting down".into(),
            )),
            None => Err(MonitorError::InvalidArgument("empty request".into())),
            Some(Req::Ping(_)) => Ok(Some(Resp::Pong(proto::Pong {
                pid: i32::try_from(std::process::id()).unwrap_or(0),
            }))),
            Some(Req::Create(c)) => self.containers.create(c, &self.cgroup_root).map(ok),
            Some(Req::Start(s)) => self.containers.start(&s.id).map(ok),
            Some(Req::Kill(k)) => self.containers.kill(&k.id, k.signal).map(ok),
            Some(Req::State(s)) => self.containers.state(&s.id).map(|st| Some(Resp::State(st))),
            Some(Req::ExecSync(e)) => self.exec_sync(conn, e).map(|()| None),
            Some(Req::ExecStream(e)) => self.exec_stream(conn, e).map(|()| None),
            Some(Req::Attach(a)) => self.attach(conn, &a).map(|()| None),
            Some(Req::Delete(d)) => self.delete(&d.id).map(ok),
            Some(Req::ReopenLog(r)) => self.containers.reopen_log(&r.id).map(ok),
            Some(Req::Subscribe(_)) => {
                if let Some(c) = self.conn_mut(conn) {
                    c.subscribed = true;
                }
                Ok(ok(()))
            }
            Some(Req::Shutdown(_)) => {
                self.begin_shutdown(Some(conn));
                Ok(None)
            }
        };
        match result {
            Ok(Some(kind)) => self.respond(conn, kind),
            Ok(None) => {
                if let Some(c) = self.conn_mut(conn) {
                    c.waiting = true;
                }
            }
            Err(e) => {
                if e.kind() == Kind::Internal {
                    eprintln!("request failed: {e}");
                }
                self.respond(conn, Resp::Error(to_proto_error(&e)));
            }
        }
    }

    fn exec_sync(&mut self, conn: u64, req: proto::ExecSync) -> Result<(), MonitorError> {
        let target = self.containers.exec_target(&req.id, &self.cgroup_root)?;
        let timeout = u64::try_from(req.timeout_ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis);
        self.execs.start(ExecRequest {
            target,
            args: &req.args,
            timeout,
            conn,
        })
    }

    fn respond(&mut self, conn: u64, kind: Resp) {
        let frame = frame::encode(&proto::Response { kind: Some(kind) });
        if let Some(c) = self.conn_mut(conn) {
            c.out.extend_from_slice(&frame);
            c.flush();
        }
    }

    /// A deferred reply went out: serve what the client queued behind it.
    fn resume(&mut self, conn: u64) {
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = false;
        }
        self.process_frames(conn);
    }

    fn begin_shutdown(&mut self, conn: Option<u64>) {
        if let Some(s) = &mut self.shutdown {
            s.conns.extend(conn);
            return;
        }
        self.containers.kill_all();
        self.execs.kill_all();
        if let Some(init) = &self.pod_init {
            init.kill();
        }
        self.shutdown = Some(Shutdown {
            conns: conn.into_iter().collect(),
            deadline: Instant::now() + SHUTDOWN_GRACE,
        });
    }

    /// Everything exited (the pod init last: its exit waits until the monitor has reaped
    /// the containers of its namespace), or the grace period is over.
    fn shutdown_due(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| {
            (self.containers.all_exited() && self.pod_init.is_none())
                || Instant::now() >= s.deadline
        })
    }

    /// Destroys the containers, answers the Shutdown request and removes our files.
    fn finish_shutdown(&mut self) {
        self.containers.destroy_all(&self.cgroup_root);
        // The socket goes first: once the daemon reads Ok, it must find no socket.
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.pid_file);
        let conns = self.shutdown.take().map(|s| s.conns).unwrap_or_default();
        for conn in conns {
            self.respond(conn, Resp::Ok(proto::Ok {}));
            if let Some(c) = self.conn_mut(conn) {
                // Blocking now: this is the last thing we do.
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.write_all(&c.out[c.written..]);
            }
        }
    }
}

fn ok<T>(_: T) -> Option<Resp> {
    Some(Resp::Ok(proto::Ok {}))
}

fn to_proto_error(e: &MonitorError) -> proto::Error {
    use proto::error::Code;
    let code = match e.kind() {
        Kind::NotFound => Code::NotFound,
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::AlreadyExists => Code::AlreadyExists,
        _ => Code::Internal,
    };
    proto::Error {
        code: code as i32,
        message: crate::error::error_chain(e),
    }
}
