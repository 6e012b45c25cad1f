//! The built-in OCI runtime. Its only input is an OCI bundle (`config.json` + rootfs); it
//! runs inside the per-pod monitor, which is single-threaded, so forking here is safe.
//! No tokio in this module tree.
//!
//! Lifecycle, as in the OCI runtime spec: [`create`] builds the container (namespaces,
//! cgroup, mounts, pivot_root, user, rlimits) with its init process blocked before
//! `execve`; [`Created::start`] releases it; the caller (the monitor) reaps it, sends
//! signals and finally calls [`destroy`].
//!
//! The caller must be a child subreaper (`PR_SET_CHILD_SUBREAPER`): container inits and
//! exec'd processes are grandchildren whose parent exits, so they are reparented to it
//! and it reaps them.
//!
//! Modules: `process` (the fork stages of create/exec), `sync` (the caller<->child
//! protocol), `init` (the container init's steps), `namespaces`, `rootfs` + `mounts` +
//! `paths` + `devices` + `cgroupfs` (the filesystem view), `user` + `capabilities` +
//! `rlimits` (identity and limits), `seccomp` (the syscall filter), `executable`
//! (argv/env/$PATH), `stdio` (fds), `console` (a pty inside the container),
//! `bundle` (config.json), `cgroups` (v1/v2 managers, shared with the daemon).
//!
//! A user namespace is only joined by path (the daemon makes and maps the pod's); init
//! becomes its root once it has opened what it needs from the host (`rootfs.rs`), and
//! `idmap`/`ridmap` binds are id-mapped through it by the caller (`idmap.rs`).
//!
//! Not implemented yet: new user namespaces and time namespaces (rejected as
//! InvalidSpec), seccomp notification agents (`SCMP_ACT_NOTIFY`, rejected),
//! SELinux labels, hooks, cgroup v2 device rules (need eBPF), hugetlb/blkio/network
//! limits, intelRdt, personality.

pub mod cgroups;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid bundle {bundle}: {message}")]
    InvalidSpec { bundle: PathBuf, message: String },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::Error,
    },
    /// A volume of a container in a pod user namespace whose filesystem (or the kernel)
    /// refuses id-mapped mounts.
    #[error(
        "cannot id-map {path} for the pod's user namespace (its filesystem may not support id-mapped mounts): {source}"
    )]
    Idmap {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The container's init reported a failure before exec (e.g. executable not found).
    #[error("container init failed: {0}")]
    Init(String),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    /// `linux.seccomp` asks for what the filter cannot express.
    #[error("invalid seccomp profile: {what}")]
    SeccompProfile { what: String },
    /// libseccomp refused part of `linux.seccomp` while compiling it.
    #[error("invalid seccomp profile: {what}: {source}")]
    Seccomp {
        what: String,
        source: libseccomp::error::SeccompError,
    },
}

impl crate::error::Classify for RuntimeError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            RuntimeError::InvalidSpec { .. }
            | RuntimeError::SeccompProfile { .. }
            | RuntimeError::Seccomp { .. } => Kind::InvalidArgument,
            // A failed init (e.g. executable not found) fails the call, as in other CRI
            // runtimes.
            RuntimeError::Cgroup(e) => e.kind(),
            // The request is fine; this node cannot serve it.
            RuntimeError::Idmap { .. } => Kind::FailedPrecondition,
            RuntimeError::Init(_) | RuntimeError::Io { .. } | RuntimeError::Sys { .. } => {
                Kind::Internal
            }
        }
    }
}

/// What becomes a container process's fd 0, 1, 2.
pub enum Stdio {
    /// These fds; `None` for stdin means /dev/null.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty allocated inside the container (`console.rs`): its slave on all three and
    /// as the controlling terminal of a session of its own; its master is handed back
    /// ([`Created::console`], [`Spawned::console`]). For `create`, the spec's
    /// `process.terminal` must say so too, as runc's `--console-socket` requires.
    Console,
}

impl Stdio {
    fn is_console(&self) -> bool {
        matches!(self, Stdio::Console)
    }
}

pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub stdio: Stdio,
    /// Root of the cgroup hierarchies (normally /sys/fs/cgroup); injectable for tests.
    pub cgroup_root: &'a Path,
}

/// A container whose init is blocked before exec. Dropping it without [`Created::start`]
/// makes init exit with status 1 without running the program.
pub struct Created {
    pub pid: Pid,
    /// The terminal's master, for [`Stdio::Console`].
    pub console: Option<OwnedFd>,
    /// Closing or writing to this releases the init process to exec the user program.
    start: OwnedFd,
}

impl Created {
    pub fn new(pid: Pid, start: OwnedFd, console: Option<OwnedFd>) -> Self {
        Created {
            pid,
            console,
            start,
        }
    }

    /// Lets init exec the user program. Returns once init has been signalled; a failure
    /// of the exec itself shows as init exiting with code 127/126.
    pub fn start(self) -> Result<(), RuntimeError> {
        start_impl(self.start)
    }
}

/// A process started in a running container by [`exec`].
pub struct Spawned {
    /// A child of the caller, whose exit status is the exec'd program's.
    pub pid: Pid,
    /// The terminal's master, for [`Stdio::Console`].
    pub console: Option<OwnedFd>,
}

/// A process to run inside an existing container (ExecSync, streaming exec).
pub struct ExecOptions<'a> {
    /// The running container, prepared once by [`ExecTarget::prepare`].
    pub target: &'a ExecTarget,
    pub args: &'a [String],
    pub stdio: Stdio,
}

pub use capabilities::{NAMES as CAPABILITY_NAMES, bounding_names};
pub use idmap::{check_idmap, mount_idmapped};
pub use lsm::{apparmor_enabled, selinux_enabled};
pub use mounts::supports_recursive_readonly;
pub use paths::resolve_in_root;
pub use process::ExecTarget;

mod bundle;
mod capabilities;
mod cgroupfs;
mod child;
mod console;
#[cfg(test)]
mod console_tests;
mod devices;
mod executable;
mod idmap;
mod init;
mod lsm;
mod mounts;
mod namespaces;
mod paths;
mod process;
mod rlimits;
mod rootfs;
mod seccomp;
mod signals;
mod stdio;
mod sync;
#[cfg(test)]
mod tests;
mod user;
#[cfg(test)]
mod userns_tests;

/// Creates the container; see the module docs.
pub fn create(opts: CreateOptions<'_>) -> Result<Created, RuntimeError> {
    process::create(opts)
}

/// Starts `args` inside the running container.
pub fn exec(opts: ExecOptions<'_>) -> Result<Spawned, RuntimeError> {
    process::exec(opts)
}

/// Whether `linux.seccomp` compiles to a filter (the daemon checks it at CreateContainer,
/// before the container's init compiles it again).
pub fn check_seccomp(profile: &oci_spec::runtime::LinuxSeccomp) -> Result<(), RuntimeError> {
    seccomp::check(profile)
}

/// Removes what [`create`] made outside the container's own namespaces (its cgroup),
/// killing anything still in the cgroup. Idempotent.
pub fn destroy(bundle: &Path, cgroup_root: &Path) -> Result<(), RuntimeError> {
    process::destroy(bundle, cgroup_root)
}

/// Whether the OOM killer has killed a process in the container's cgroup (read before
/// [`destroy`], which removes the cgroup and its counters).
pub fn oom_killed(bundle: &Path, cgroup_root: &Path) -> Result<bool, RuntimeError> {
    process::oom_killed(bundle, cgroup_root)
}

/// Ends the processes a container without a PID namespace of its own leaves behind when
/// its init exits; nothing for one that has its own (the kernel ended them).
pub fn kill_leftovers(bundle: &Path, cgroup_root: &Path) -> Result<usize, RuntimeError> {
    process::kill_leftovers(bundle, cgroup_root)
}

fn start_impl(fd: OwnedFd) -> Result<(), RuntimeError> {
    process::release(fd)
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn sys_err(op: &'static str) -> impl FnOnce(nix::Error) -> RuntimeError {
    move |source| RuntimeError::Sys { op, source }
}
