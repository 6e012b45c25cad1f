//! The pod's containers as the monitor sees them: the runtime handle, the lifecycle
//! timestamps, the exit status and their stdio (`containers/stdio.rs`).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::attach::AttachFd;
use super::log::Stream;
use super::proto::{self, state::Status};
use super::sys;
use super::{ExitRecord, MonitorError, now_ns};
use crate::runtime::{self, CreateOptions, Created, ExecTarget};

mod stdio;
use stdio::{ContainerStdio, StdinOptions};

/// Reads per wakeup of one pipe, so a chatty container cannot starve the others.
const READS_PER_WAKEUP: usize = 8;

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
    stdio: ContainerStdio,
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
        let file = stdio::open_log(&req.log_path)?;
        let opts = StdinOptions {
            stdin: req.stdin,
            stdin_once: req.stdin_once,
            // Capped: the monitor holds up to this much per stream of each container.
            max_line: match req.max_log_line {
                0 => super::log::MAX_LINE,
                n => (n as usize).min(1 << 20),
            },
        };
        let mut opened = match req.tty {
            true => stdio::console(),
            false => stdio::pipes(req.stdin)?,
        };
        let bundle = PathBuf::from(&req.bundle);
        let runtime_stdio = std::mem::replace(&mut opened.runtime, runtime::Stdio::Console);
        let created = runtime::create(CreateOptions {
            id: &req.id,
            bundle: &bundle,
            stdio: runtime_stdio,
            cgroup_root,
        });
        sys::trim_heap();
        let mut created = created?;
        let master = created.console.take();
        let stdio = match ContainerStdio::new(file, req.log_path, opened, &opts, master) {
            Ok(s) => s,
            Err(e) => {
                // Dropping `created` makes init exit unstarted; its cgroup goes too.
                drop(created);
                if let Err(d) = runtime::destroy(&bundle, cgroup_root) {
                    eprintln!("container {}: rolling back: {d}", req.id);
                }
                return Err(e);
            }
        };
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
            stdio,
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
        self.running_mut(id)?.stdio.reopen()
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

    /// Forgets an exited container; the connections of attachers still taking its last
    /// output are returned, owed AttachEnded.
    pub fn delete(&mut self, id: &str, cgroup_root: &Path) -> Result<Vec<u64>, MonitorError> {
        let i = self.index(id).ok_or_else(|| not_found(id))?;
        if self.list[i].status != Status::Exited {
            return Err(MonitorError::FailedPrecondition(format!(
                "container {id:?} has not exited"
            )));
        }
        runtime::destroy(&self.list[i].bundle, cgroup_root)?;
        let mut gone = self.list.remove(i);
        Ok(gone.stdio.attach.take_all())
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
        c.stdio.drain();
        c.stdio.attach.container_exited();
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
            c.stdio.readable().map(|(fd, stream)| OutputFd {
                fd,
                serial: c.serial,
                stream,
            })
        })
    }

    /// Copies what a container wrote on `stream` into its log and to its attachers.
    pub fn on_output(&mut self, serial: u64, stream: Stream, buf: &mut [u8]) {
        if let Some(c) = self.list.iter_mut().find(|c| c.serial == serial) {
            c.stdio.copy(stream, buf, Some(READS_PER_WAKEUP));
        }
    }

    /// Attaches connection `conn` to the running container `req.id`.
    pub fn attach(
        &mut self,
        conn: u64,
        req: &proto::Attach,
    ) -> Result<(proto::AttachStarted, Vec<OwnedFd>), MonitorError> {
        self.running_mut(&req.id)?.stdio.attach.attach(conn, req)
    }

    /// Every attacher fd to watch, with the container it belongs to.
    pub fn attach_fds(&self) -> impl Iterator<Item = (u64, AttachFd<'_>)> {
        self.list
            .iter()
            .flat_map(|c| c.stdio.attach.fds().map(|f| (c.serial, f)))
    }

    /// An attacher fd of container `serial` is ready.
    pub fn on_attach(&mut self, serial: u64, watch: super::attach::Watch, buf: &mut [u8]) {
        use super::attach::Watch;
        let Some(c) = self.list.iter_mut().find(|c| c.serial == serial) else {
            return;
        };
        let io = &mut c.stdio.attach;
        match watch {
            Watch::Input(conn) => io.on_input(conn, buf),
            Watch::Output(conn, stream) => io.on_output_writable(conn, stream),
            Watch::Stdin => io.on_stdin_writable(),
        }
    }

    /// Connections whose attachment ended (each is owed AttachEnded).
    pub fn ended_attaches(&mut self) -> Vec<u64> {
        self.list
            .iter_mut()
            .flat_map(|c| c.stdio.attach.take_ended())
            .collect()
    }

    /// Connection `conn` ended: its attacher, if any, goes. Whether it had one.
    pub fn detach(&mut self, conn: u64) -> bool {
        let mut had = false;
        for c in &mut self.list {
            had |= c.stdio.attach.drop_conn(conn);
        }
        had
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

#[cfg(test)]
mod attach_tests;
#[cfg(test)]
mod tests;
