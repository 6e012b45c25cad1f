//! The pod init: PID 1 of the PID namespace a pod's containers share
//! (`NamespaceOption.pid = POD`).
//!
//! A PID namespace cannot be pinned by a bind mount alone: once its init exits the kernel
//! kills everything in it and no process can be created in it again. So the monitor,
//! which lives exactly as long as the pod, clones this tiny process into a new PID
//! namespace. It joins the pod's net/ipc/uts namespaces, moves into the pod cgroup and
//! has its namespace bind-mounted onto the pod's `ns/pid` pin, which containers join by
//! path. It then only reaps the orphans the kernel reparents to it.
//!
//! In a pod with a user namespace of its own, the PID namespace must be owned by it (or
//! its containers' root may not mount /proc), and a namespace's owner is the creator's
//! user namespace: a short-lived helper joins the pod's user namespace, unshares the PID
//! namespace and clones the pod init with `CLONE_PARENT`, so that it is still the
//! monitor's child.
//!
//! It dies with the monitor (`PR_SET_PDEATHSIG`), is killed at pod stop, and if it dies
//! on its own the monitor shuts the pod down (its containers died with the namespace).
//! After the clone it only makes system calls: no allocation, so the pages it shares
//! copy-on-write with the monitor stay shared and it costs a few pages of its own.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{MonitorArgs, MonitorError};
use crate::runtime::cgroups;

/// The pod init's name in `ps` (its comm and its whole command line).
pub const NAME: &CStr = c"crius-pod-init";
/// The clone child's stack; it uses a few KiB of it.
const STACK_SIZE: usize = 64 * 1024;

/// What the daemon asks for (`--pod-init-*` arguments of the monitor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInitOptions {
    /// Where the new PID namespace is bind-mounted for containers to join.
    pub pin: PathBuf,
    /// The pod's pinned namespaces the pod init joins (any type: `setns(fd, 0)`).
    pub join: Vec<PathBuf>,
    /// The pod init's cgroup (a leaf under the pod's), relative to the cgroup root.
    pub cgroup: String,
    /// The pod's user namespace pin, which then owns the PID namespace.
    pub user: Option<PathBuf>,
}

/// The running pod init, a child of the monitor.
#[derive(Debug)]
pub struct PodInit {
    pub pid: Pid,
}

impl PodInit {
    /// The pod init the daemon asked for (`--pod-init-*`), if any.
    pub fn start_if_asked(args: &MonitorArgs) -> Result<Option<PodInit>, MonitorError> {
        (args.pod_init.as_ref())
            .map(|o| PodInit::start(o, &args.cgroup_root))
            .transpose()
    }

    /// Clones the pod init, waits until it is set up, moves it into the pod cgroup and
    /// pins its PID namespace. On failure nothing is left running.
    pub fn start(opts: &PodInitOptions, cgroup_root: &Path) -> Result<PodInit, MonitorError> {
        let joins = opts
            .join
            .iter()
            .map(|p| File::open(p).map_err(|e| MonitorError::io("opening namespace", p, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let title = arg_range();
        let (report_rx, report_tx) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(MonitorError::sys("pipe2"))?;
        let user = (opts.user.as_ref())
            .map(|p| File::open(p).map_err(|e| MonitorError::io("opening namespace", p, e)))
            .transpose()?;
        let mut stack = vec![0u8; STACK_SIZE];
        let rx = report_rx.as_raw_fd();
        let child = Box::new(|| -> isize { child_main(&joins, (rx, &report_tx), title) });
        let pid = match &user {
            // SAFETY: the monitor is single-threaded, so no lock is held by another
            // thread; the child runs on its own stack and only makes system calls.
            None => unsafe {
                nix::sched::clone(
                    child,
                    &mut stack,
                    CloneFlags::CLONE_NEWPID,
                    Some(libc::SIGCHLD),
                )
            }
            .map_err(MonitorError::sys("clone(CLONE_NEWPID)"))?,
            Some(userns) => clone_in_userns(userns, child, &mut stack)?,
        };
        drop(report_tx);
        let init = PodInit { pid };
        let set_up = read_report(&report_rx)
            .and_then(|()| join_cgroup(pid, cgroup_root, &opts.cgroup))
            .and_then(|()| pin(pid, &opts.pin));
        if let Err(e) = set_up {
            init.kill_and_reap();
            return Err(e);
        }
        Ok(init)
    }

    /// SIGKILL; the kernel then kills every process of the namespace too.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }

    /// Only for a pod init with no other process in its namespace (its exit waits until
    /// they are reaped, and containers are the monitor's children).
    fn kill_and_reap(self) {
        self.kill();
        while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
    }
}

/// Clones `child` as pid 1 of a new PID namespace owned by `userns`, through a helper
/// that joins it; returns the child's pid, a child of this process (`CLONE_PARENT`).
fn clone_in_userns(
    userns: &File,
    child: nix::sched::CloneCb<'_>,
    stack: &mut [u8],
) -> Result<Pid, MonitorError> {
    let (pid_rx, pid_tx) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(MonitorError::sys("pipe2"))?;
    let mut helper_stack = vec![0u8; STACK_SIZE];
    let mut child = Some(child);
    let helper = Box::new(move || -> isize {
        let Some(child) = child.take() else {
            return 1;
        };
        match helper_main(userns, child, &mut *stack, &pid_tx) {
            Ok(()) => 0,
            Err(e) => e as isize,
        }
    });
    // SAFETY: as for the pod init's clone; the helper only makes system calls.
    let helper = unsafe {
        nix::sched::clone(
            helper,
            &mut helper_stack,
            CloneFlags::empty(),
            Some(libc::SIGCHLD),
        )
    }
    .map_err(MonitorError::sys("clone"))?;
    let status = loop {
        match waitpid(helper, None) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(MonitorError::sys("waiting for the pod init helper"))?,
        }
    };
    let mut pid = [0u8; 4];
    match status {
        WaitStatus::Exited(_, 0) if nix::unistd::read(&pid_rx, &mut pid) == Ok(4) => {
            Ok(Pid::from_raw(i32::from_ne_bytes(pid)))
        }
        WaitStatus::Exited(_, code) => Err(MonitorError::Sys {
            op: "starting the pod init in the pod's user namespace",
            source: Errno::from_raw(code),
        }),
        _ => Err(MonitorError::Internal("the pod init helper died".into())),
    }
}

/// The helper, in its clone child: the PID namespace it unshares after joining `userns`
/// is owned by it, and `child` is born into it as pid 1.
fn helper_main(
    userns: &File,
    child: nix::sched::CloneCb<'_>,
    stack: &mut [u8],
    pid_tx: &OwnedFd,
) -> Result<(), Errno> {
    setns(userns, CloneFlags::CLONE_NEWUSER)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)?;
    // SAFETY: this helper is single-threaded and only makes system calls.
    let pid =
        unsafe { nix::sched::clone(child, stack, CloneFlags::CLONE_PARENT, Some(libc::SIGCHLD)) }?;
    match nix::unistd::write(pid_tx, &pid.as_raw().to_ne_bytes()) {
        Ok(4) => Ok(()),
        Ok(_) => Err(Errno::EIO),
        Err(e) => Err(e),
    }
}

/// The child's setup result: one byte, 0 or an errno; EOF means it died.
fn read_report(rx: &OwnedFd) -> Result<(), MonitorError> {
    let mut byte = [0u8; 1];
    let n = loop {
        match nix::unistd::read(rx, &mut byte) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(MonitorError::sys("reading the pod init's report"))?,
        }
    };
    match (n, byte[0]) {
        (1, 0) => Ok(()),
        (1, errno) => Err(MonitorError::Sys {
            op: "setting up the pod init",
            source: Errno::from_raw(i32::from(errno)),
        }),
        _ => Err(MonitorError::Internal(
            "the pod init died during setup".into(),
        )),
    }
}

fn join_cgroup(pid: Pid, root: &Path, cgroup: &str) -> Result<(), MonitorError> {
    let joined = cgroups::manager(root, cgroup).and_then(|cg| {
        cg.create()?;
        cg.add_process(pid)
    });
    joined.map_err(|e| MonitorError::Runtime(e.into()))
}

fn pin(pid: Pid, pin: &Path) -> Result<(), MonitorError> {
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| MonitorError::io("creating", dir, e))?;
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(pin)
        .map_err(|e| MonitorError::io("creating namespace pin", pin, e))?;
    let source = PathBuf::from(format!("/proc/{pid}/ns/pid"));
    nix::mount::mount(
        Some(&source),
        pin,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| MonitorError::io("bind-mounting the pod PID namespace onto", pin, e.into()))
}

/// Where this process's command line lives (`arg_start`, `arg_end` of
/// /proc/self/stat), so the pod init can overwrite its copy with [`NAME`].
fn arg_range() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised comm start at field 3; arg_start is field 48.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(45);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// The pod init, in the clone child. Never returns.
fn child_main(joins: &[File], report: (RawFd, &OwnedFd), title: Option<(usize, usize)>) -> ! {
    // Our copy of the read end would keep the report writable after the monitor died.
    let _ = nix::unistd::close(report.0);
    let status = match set_up(joins, title) {
        Ok(()) => 0u8,
        Err(e) => u8::try_from(e as i32).unwrap_or(u8::MAX).max(1),
    };
    // Written after PR_SET_PDEATHSIG: if the monitor died before, this fails (EPIPE).
    let reported = nix::unistd::write(report.1, &[status]) == Ok(1);
    if !reported || status != 0 {
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(1) }
    }
    // SAFETY: closes descriptors only; the pod init keeps none (not even the monitor's
    // socket, which would otherwise look alive after the monitor died).
    unsafe { libc::close_range(0, libc::c_uint::MAX, 0) };
    reap_forever()
}

fn set_up(joins: &[File], title: Option<(usize, usize)>) -> Result<(), Errno> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    for ns in joins {
        setns(ns, CloneFlags::empty())?;
    }
    let _ = nix::sys::prctl::set_name(NAME);
    if let Some((start, end)) = title {
        // SAFETY: [start, end) is this process's argv area (its own copy since the
        // clone), which nothing in this process reads any more.
        unsafe { set_title(start, end) };
    }
    // SIGKILL still works from outside; SIGCHLD stays pending for `reap_forever`.
    SigSet::all().thread_set_mask()
}

/// Overwrites the command line with [`NAME`]. The last byte of the area is set non-NUL,
/// which makes the kernel report the string up to the first NUL (as for setproctitle).
unsafe fn set_title(start: usize, end: usize) {
    let name = NAME.to_bytes_with_nul();
    let len = end - start;
    if len < name.len() + 1 {
        return;
    }
    let area = start as *mut u8;
    // SAFETY: guaranteed by the caller; `len` bytes from `start` are writable.
    unsafe {
        std::ptr::write_bytes(area, 0, len);
        std::ptr::copy_nonoverlapping(name.as_ptr(), area, name.len());
        *area.add(len - 1) = b' ';
    }
}

fn reap_forever() -> ! {
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        // Blocked, so a SIGCHLD that arrived since the last reap is still pending.
        let _ = sigchld.wait();
    }
}
