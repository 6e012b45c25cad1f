//! The container's init process (pid 1 of its pid namespace) from the moment it is
//! forked to its execve: every setup step in the order the OCI runtime spec implies.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::Spec;

use super::cgroupfs::CgroupView;
use super::child::exit_now;
use super::executable::Program;
use super::namespaces::{self, NamespacePlan};
use super::seccomp::Filter;
use super::sync::{Channel, Message};
use super::{RuntimeError, Stdio, console, io_err, lsm, rlimits, rootfs, stdio, sys_err, user};

pub(super) struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub cgroup: Option<CgroupView<'a>>,
    pub namespaces: &'a NamespacePlan,
    /// The id-mapped binds, made by the caller (`idmap::open_mount_trees`).
    pub mount_trees: &'a [Option<OwnedFd>],
    pub sync: Channel,
    pub start: OwnedFd,
    pub stdio: Stdio,
}

/// Runs init to its execve; never returns. Failures before exec go to the caller over the
/// sync channel; a failing execve itself exits 127.
pub(super) fn run(args: InitArgs<'_>) -> ! {
    let InitArgs {
        spec,
        rootfs,
        cgroup,
        namespaces,
        mount_trees,
        mut sync,
        start,
        stdio,
    } = args;
    let start_fd = start.as_raw_fd();
    let ready = match prepare(PrepareArgs {
        spec,
        rootfs,
        cgroup,
        namespaces,
        mount_trees,
        sync: &mut sync,
        start_fd,
        stdio,
    }) {
        Ok(p) => p,
        Err(e) => {
            let _ = sync.send(&Message::Error(e.to_string()));
            exit_now(1);
        }
    };
    if sync.send(&Message::Ready).is_err() {
        exit_now(1);
    }
    drop(sync);
    if !wait_for_start(start) {
        // The caller went away without starting us: do not run the program.
        exit_now(1);
    }
    ready.exec("crius: exec")
}

struct PrepareArgs<'a, 'b> {
    spec: &'a Spec,
    rootfs: &'a Path,
    cgroup: Option<CgroupView<'a>>,
    namespaces: &'a NamespacePlan,
    mount_trees: &'a [Option<OwnedFd>],
    sync: &'b mut Channel,
    start_fd: RawFd,
    stdio: Stdio,
}

fn prepare(a: PrepareArgs<'_, '_>) -> Result<ReadyToExec, RuntimeError> {
    let console = a.stdio.is_console();
    stdio::install(a.stdio)?;
    // Nothing of the caller's (other containers' pipes, the monitor's sockets) stays
    // open while init waits to be started; this process never returns, so no owner of
    // those fds will close them again.
    let trees = a.mount_trees.iter().flatten().map(AsRawFd::as_raw_fd);
    let keep: Vec<RawFd> = [a.sync.as_raw_fd(), a.start_fd]
        .into_iter()
        .chain(trees)
        .collect();
    stdio::close_all_except(&keep)?;
    // The caller puts us in the cgroup first: everything below is accounted to it.
    a.sync.expect(Message::Continue, "init")?;
    if a.namespaces.new_cgroup() {
        namespaces::enter_cgroup_ns()?;
    }
    let opened = rootfs::prepare(a.spec, a.rootfs, a.mount_trees)?;
    if a.namespaces.joins_user() {
        namespaces::become_root_in_userns()?;
    }
    rootfs::setup(a.spec, &opened, a.cgroup.as_ref())?;
    drop(opened);
    if let Some(name) = a
        .spec
        .hostname()
        .as_ref()
        .filter(|_| a.namespaces.new_uts())
    {
        nix::unistd::sethostname(name).map_err(sys_err("sethostname"))?;
    }
    if let Some(sysctl) = a.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (key, value) in sysctl {
            write_sysctl(key, value)?;
        }
    }
    let Some(process) = a.spec.process() else {
        return Err(RuntimeError::Init("spec has no process".into()));
    };
    if console {
        // In the new root, before anything is made read-only: /dev/console is bound.
        let pty = console::open_pty()?;
        pty.mount_as_dev_console()?;
        a.sync.send_console(&pty.master)?;
        pty.install(process.user().uid())?;
    }
    rootfs::finalize(a.spec)?;
    let seccomp = a.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    prepare_process(process, seccomp.map(Filter::compile).transpose()?)
}

/// What is left once a process is set up: the program, and the seccomp filter when it is
/// installed at the very end.
pub(super) struct ReadyToExec {
    program: Program,
    late_seccomp: Option<Filter>,
}

impl ReadyToExec {
    /// Installs a late filter and execs the program; never returns. `what` starts the
    /// message written to the process's stderr on failure.
    pub(super) fn exec(self, what: &str) -> ! {
        if let Some(Err(e)) = self.late_seccomp.as_ref().map(Filter::install) {
            stdio::write_stderr(&format!("{what} {:?}: {e}\n", self.program.path));
            exit_now(126);
        }
        let err = self.program.exec();
        stdio::write_stderr(&format!("{what} {:?}: {err}\n", self.program.path));
        exit_now(if err == nix::Error::ENOENT { 127 } else { 126 })
    }
}

/// The last steps before exec, shared by a container's init and every exec'd process:
/// limits, oom_score_adj, seccomp, user and capabilities, cwd, the resolved program, and
/// no fd beyond stdio surviving the exec.
///
/// The seccomp filter comes compiled, so that a bad profile fails the create. As runc
/// does, it is installed before the capabilities drop when no_new_privs is off (the
/// kernel then requires CAP_SYS_ADMIN to install it), else as late as possible: by
/// [`ReadyToExec::exec`], right before execve, so the fewest syscalls run under it.
pub(super) fn prepare_process(
    process: &oci_spec::runtime::Process,
    seccomp: Option<Filter>,
) -> Result<ReadyToExec, RuntimeError> {
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(adj) = process.oom_score_adj() {
        rlimits::set_oom_score_adj(adj)?;
    }
    // Before the user change, as runc: the profile takes effect at execve either way.
    lsm::apply_apparmor(process.apparmor_profile().as_deref())?;
    let mut late_seccomp = seccomp;
    if process.no_new_privileges() != Some(true)
        && let Some(filter) = late_seccomp.take()
    {
        filter.install()?;
    }
    user::apply_identity(process)?;
    let cwd = process.cwd();
    std::env::set_current_dir(cwd).map_err(|e| io_err("chdir", cwd, e))?;
    let args = process.args().as_deref().unwrap_or_default();
    let program = Program::prepare(args, process.env().as_deref().unwrap_or_default())?;
    stdio::close_on_exec_above_stdio()?;
    Ok(ReadyToExec {
        program,
        late_seccomp,
    })
}

/// `net.ipv4.ip_forward` -> /proc/sys/net/ipv4/ip_forward; a '/' in a dotted key is a
/// dot in the name (`net.ipv4.conf.eth0/100.rp_filter`: interface `eth0.100`).
fn write_sysctl(key: &str, value: &str) -> Result<(), RuntimeError> {
    let rel: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(RuntimeError::Init(format!("invalid sysctl key {key:?}")));
    }
    let path = Path::new("/proc/sys").join(rel);
    std::fs::write(&path, value).map_err(|e| io_err("write sysctl", &path, e))
}

/// Blocks until `Created::start` writes its byte. EOF without it means the caller died.
fn wait_for_start(start: OwnedFd) -> bool {
    let mut buf = [0u8; 1];
    loop {
        match nix::unistd::read(&start, &mut buf) {
            Ok(1) => return true,
            Ok(_) => return false,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return false,
        }
    }
}
