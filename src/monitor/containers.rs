//! The pod's containers as the monitor sees them: the runtime handle, the lifecycle
//! timestamps, the exit status and the output pipes copied into the CRI log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::log::{LineEncoder, Stream, now_timestamp};
use super::proto::{self, state::Status};
use super::sys::{self, ReadOutcome};
use super::{ExitRecord, MonitorError, now_ns};
use crate::runtime::{self, CreateOptions, Created, ExecTarget};

/// Reads per wakeup of one pipe, so a chatty container cannot starve the others.
const READS_PER_WAKEUP: usize = 8;

struct Output {
    pipe: File,
    enc: LineEncoder,
}

struct ContainerLog {
    /// `None` when the daemon gave no log path: output is read and dropped.
    file: Option<File>,
    /// Where `file` was opened, for ReopenContainerLog.
    path: String,
    outputs: [Option<Output>; 2],
}

pub struct Container {
    id: String,
    serial: u64,
    bundle: PathBuf,
    exit_file: Option<PathBuf>,
    pid: Pid,
    /// Present until started (dropping it lets a never-started init die).
    created: Option<Created>,
    status: Status,
    created_at: i64,
    started_at: i64,
    exit: Option<ExitRecord>,
    log: ContainerLog,
    /// What execs into it need, read on the first exec; dropped when it exits.
    exec_target: Option<ExecTarget>,
}

/// The fds the event loop should watch for a container's output.
pub struct OutputFd<'a> {
    pub fd: BorrowedFd<'a>,
    pub serial: u64,
    pub stream: Stream,
}

#[derive(Default)]
pub struct Containers {
    list: Vec<Container>,
    next_serial: u64,
}

fn not_found(id: &str) -> MonitorError {
    MonitorError::NotFound(format!("container {id:?} not found in this pod"))
}

fn open_log(path: &str) -> Result<Option<File>, MonitorError> {
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

impl Containers {
    pub fn create(
        &mut self,
        req: proto::CreateContainer,
        cgroup_root: &Path,
    ) -> Result<(), MonitorError> {
        if req.id.is_empty() || req.bundle.is_empty() {
            return Err(MonitorError::InvalidArgument(
                "create needs a container id and a bundle".into(),
            ));
        }
        if self.find(&req.id).is_some() {
            return Err(MonitorError::AlreadyExists(format!(
                "container {:?} already exists in this pod",
                req.id
            )));
        }
        let file = open_log(&req.log_path)?;
        // Capped: the monitor holds up to this much per stream of each container.
        let max_line = match req.max_log_line {
            0 => super::log::MAX_LINE,
            n => (n as usize).min(1 << 20),
        };
        let (out, err) = (sys::pipe()?, sys::pipe()?);
        let bundle = PathBuf::from(&req.bundle);
        let created = runtime::create(CreateOptions {
            id: &req.id,
            bundle: &bundle,
            stdio: runtime::Stdio {
                stdin: None,
                stdout: out.write,
                stderr: err.write,
                terminal: false,
            },
            cgroup_root,
        });
        sys::trim_heap();
        let created = created?;
        self.next_serial += 1;
        self.list.push(Container {
            id: req.id,
            serial: self.next_serial,
            bundle,
            exit_file: (!req.exit_file.is_empty()).then(|| PathBuf::from(req.exit_file)),
            pid: created.pid,
            created: Some(created),
            status: Status::Created,
            created_at: now_ns(),
            started_at: 0,
            exit: None,
            exec_target: None,
            log: ContainerLog {
                file,
                path: req.log_path.clone(),
                outputs: [
                    Some(Output {
                        pipe: out.read,
                        enc: LineEncoder::with_max_line(Stream::Stdout, max_line),
                    }),
                    Some(Output {
                        pipe: err.read,
                        enc: LineEncoder::with_max_line(Stream::Stderr, max_line),
                    }),
                ],
            },
        });
        Ok(())
    }

    pub fn start(&mut self, id: &str) -> Result<(), MonitorError> {
        let c = self.find_mut(id).ok_or_else(|| not_found(id))?;
        let Some(created) = c.created.take() else {
            return Err(MonitorError::FailedPrecondition(format!(
                "container {id:?} is not in the created state"
            )));
        };
        created.start()?;
        c.status = Status::Running;
        c.started_at = now_ns();
        Ok(())
    }

    pub fn kill(&self, id: &str, signal: i32) -> Result<(), MonitorError> {
        let c = self.find(id).ok_or_else(|| not_found(id))?;
        let sig = Signal::try_from(signal)
            .map_err(|_| MonitorError::InvalidArgument(format!("invalid signal {signal}")))?;
        if c.status == Status::Exited {
            return Ok(());
        }
        match kill(c.pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(MonitorError::Sys { op: "kill", source }),
        }
    }

    pub fn state(&self, id: &str) -> Result<proto::State, MonitorError> {
        let c = self.find(id).ok_or_else(|| not_found(id))?;
        let mut st = proto::State {
            status: c.status as i32,
            pid: c.pid.as_raw(),
            created_at: c.created_at,
            started_at: c.started_at,
            ..Default::default()
        };
        if let Some(exit) = &c.exit {
            st.finished_at = exit.finished_at;
            st.exit_code = exit.exit_code;
            st.reason = exit.reason.clone();
            st.message = exit.message.clone();
        }
        Ok(st)
    }

    /// Opens the log path again (kubelet renamed the file to rotate it): what the
    /// container writes from now on goes to a new file. Only a running container's log
    /// is reopened; the CRI says no new file may appear after refusing.
    pub fn reopen_log(&mut self, id: &str) -> Result<(), MonitorError> {
        let c = self.running_mut(id)?;
        c.log.file = open_log(&c.log.path)?;
        Ok(())
    }

    /// The container `id`, which must be running (exec, log reopen).
    fn running_mut(&mut self, id: &str) -> Result<&mut Container, MonitorError> {
        let c = self
            .list
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| not_found(id))?;
        if c.status != Status::Running {
            return Err(MonitorError::FailedPrecondition(format!(
                "container {id:?} is not running"
            )));
        }
        Ok(c)
    }

    pub fn delete(&mut self, id: &str, cgroup_root: &Path) -> Result<(), MonitorError> {
        let i = self.index(id).ok_or_else(|| not_found(id))?;
        if self.list[i].status != Status::Exited {
            return Err(MonitorError::FailedPrecondition(format!(
                "container {id:?} has not exited"
            )));
        }
        runtime::destroy(&self.list[i].bundle, cgroup_root)?;
        self.list.remove(i);
        Ok(())
    }

    /// What an exec into the running container `id` needs, prepared on the first one.
    pub fn exec_target(
        &mut self,
        id: &str,
        cgroup_root: &Path,
    ) -> Result<&ExecTarget, MonitorError> {
        let c = self.running_mut(id)?;
        let target = match c.exec_target.take() {
            Some(t) => t,
            None => {
                let target = ExecTarget::prepare(&c.bundle, c.pid, cgroup_root);
                sys::trim_heap();
                target?
            }
        };
        Ok(c.exec_target.insert(target))
    }

    /// Records the exit of a container's init; `false` if `pid` is no container's.
    pub fn on_exit(&mut self, pid: Pid, code: i32, cgroup_root: &Path) -> bool {
        let Some(c) = self
            .list
            .iter_mut()
            .find(|c| c.pid == pid && c.status != Status::Exited)
        else {
            return false;
        };
        c.created = None;
        c.exec_target = None;
        c.status = Status::Exited;
        if let Err(e) = runtime::kill_leftovers(&c.bundle, cgroup_root) {
            eprintln!("container {}: ending what its init left: {e}", c.id);
        }
        // Everything init wrote is in the pipes now; log it before reporting the exit.
        c.drain_output();
        // The cgroup outlives init until Delete, so its OOM counter is still readable.
        let oom = runtime::oom_killed(&c.bundle, cgroup_root).unwrap_or_else(|e| {
            eprintln!("container {}: reading its OOM kills: {e}", c.id);
            false
        });
        let record = ExitRecord {
            exit_code: code,
            finished_at: now_ns(),
            reason: if oom {
                "OOMKilled"
            } else {
                ExitRecord::reason_for(code)
            }
            .into(),
            message: String::new(),
        };
        if let Some(path) = &c.exit_file
            && let Err(e) = crate::store::write_json(path, &record)
        {
            eprintln!("container {}: {e}", c.id);
        }
        c.exit = Some(record);
        true
    }

    /// The id of the container whose init is (or, most recently, was) `pid`.
    pub fn id_of(&self, pid: Pid) -> Option<String> {
        let c = self.list.iter().rev().find(|c| c.pid == pid)?;
        Some(c.id.clone())
    }

    pub fn output_fds(&self) -> impl Iterator<Item = OutputFd<'_>> {
        self.list.iter().flat_map(|c| {
            c.log.outputs.iter().flatten().map(|o| OutputFd {
                fd: o.pipe.as_fd(),
                serial: c.serial,
                stream: o.enc.stream(),
            })
        })
    }

    /// Copies what a container wrote on `stream` into its log.
    pub fn on_output(&mut self, serial: u64, stream: Stream, buf: &mut [u8]) {
        if let Some(c) = self.list.iter_mut().find(|c| c.serial == serial) {
            c.log.copy(stream, buf, Some(READS_PER_WAKEUP));
        }
    }

    /// SIGKILLs every container that has not exited.
    pub fn kill_all(&self) {
        for c in self.list.iter().filter(|c| c.status != Status::Exited) {
            let _ = kill(c.pid, Signal::SIGKILL);
        }
    }

    pub fn all_exited(&self) -> bool {
        self.list.iter().all(|c| c.status == Status::Exited)
    }

    /// Destroys every container, reporting failures and going on with the rest.
    pub fn destroy_all(&mut self, cgroup_root: &Path) {
        for c in self.list.drain(..) {
            if let Err(e) = runtime::destroy(&c.bundle, cgroup_root) {
                eprintln!("destroying container {}: {e}", c.id);
            }
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.list.iter().position(|c| c.id == id)
    }

    fn find(&self, id: &str) -> Option<&Container> {
        self.list.iter().find(|c| c.id == id)
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Container> {
        self.list.iter_mut().find(|c| c.id == id)
    }
}

impl Container {
    /// Reads both pipes empty and closes them (see `ContainerLog::copy`).
    fn drain_output(&mut self) {
        let mut buf = [0u8; 8192];
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.log.copy(stream, &mut buf, None);
            self.log.close(stream);
        }
    }
}

impl ContainerLog {
    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Reads `stream` until it would block (or `limit` reads), encoding into the log
    /// file. At end of stream the pipe is closed.
    fn copy(&mut self, stream: Stream, buf: &mut [u8], limit: Option<usize>) {
        let ContainerLog { file, outputs, .. } = self;
        let Some(out) = outputs[Self::slot(stream)].as_mut() else {
            return;
        };
        let mut encoded = Vec::new();
        let mut eof = false;
        for _ in 0..limit.unwrap_or(usize::MAX) {
            match sys::read_some(&mut out.pipe, buf) {
                ReadOutcome::Data(n) => out.enc.feed(&buf[..n], &now_timestamp(), &mut encoded),
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof => {
                    eof = true;
                    break;
                }
            }
            append(file, &mut encoded);
        }
        append(file, &mut encoded);
        if eof {
            self.close(stream);
        }
    }

    /// Flushes an unterminated last line and stops reading `stream`.
    fn close(&mut self, stream: Stream) {
        if let Some(mut out) = self.outputs[Self::slot(stream)].take() {
            let mut encoded = Vec::new();
            out.enc.finish(&now_timestamp(), &mut encoded);
            append(&mut self.file, &mut encoded);
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

#[cfg(test)]
mod tests;
