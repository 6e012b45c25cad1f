//! The process stages of `create` and `exec`. For `create` the caller forks an
//! intermediate process, which enters the namespaces and forks init so it lands in the
//! new pid namespace; the caller, a child subreaper, inherits it when the intermediate
//! exits. For `exec` the caller forks the process directly into the container's pid
//! namespace. The message sequence is drawn in `sync.rs`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, pipe2};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::bundle::Bundle;
use super::cgroupfs::CgroupView;
use super::cgroups::{self, CgroupManager};
use super::child::{exit_now, fork_child};
use super::console::{self, Console};
use super::idmap;
use super::init::{self, InitArgs};
use super::namespaces::{self, Join};
use super::seccomp::Filter;
use super::signals;
use super::stdio::{self, above_stdio};
use super::sync::{self, Channel, Message};
use super::{CreateOptions, Created, ExecOptions, RuntimeError, Spawned, Stdio, sys_err};

pub(super) fn create(opts: CreateOptions<'_>) -> Result<Created, RuntimeError> {
    let bundle = Bundle::load(opts.bundle)?;
    let spec_ns = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref());
    let ns = namespaces::plan(spec_ns.unwrap_or_default(), &bundle.dir)?;
    bundle.warn_unsupported(opts.id);
    let terminal = bundle.process().terminal() == Some(true);
    if terminal != opts.stdio.is_console() {
        return Err(RuntimeError::InvalidSpec {
            bundle: bundle.dir.clone(),
            message: "process.terminal must match whether the caller takes a console".into(),
        });
    }
    let cgroup = bundle.cgroup(opts.cgroup_root)?;
    let cgroup_path = bundle.cgroup_path();
    let trees = idmap::open_mount_trees(&bundle.spec, ns.user(), &bundle.dir)?;
    let (mut sync, child_sync) = sync::channel()?;
    let (start_rx, start_tx) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let start_rx = above_stdio(start_rx)?;
    let intermediate = match fork_child()? {
        ForkResult::Child => {
            drop(sync);
            drop(start_tx);
            let args = InitArgs {
                spec: &bundle.spec,
                rootfs: &bundle.rootfs,
                cgroup: cgroup_path.as_deref().map(|path| CgroupView {
                    root: opts.cgroup_root,
                    path,
                }),
                namespaces: &ns,
                mount_trees: &trees,
                sync: child_sync,
                start: start_rx,
                stdio: opts.stdio,
            };
            create_intermediate(&ns.join, ns.new, args)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_sync);
    drop(start_rx);
    drop(opts.stdio);
    let init_pid = sync.expect_pid("create");
    reap(intermediate);
    let init_pid = Pid::from_raw(init_pid?);
    match configure_init(init_pid, cgroup.as_deref(), &bundle, &mut sync) {
        Ok(console) => {
            tracing::debug!(id = opts.id, pid = %init_pid, "container created");
            Ok(Created::new(init_pid, start_tx, console))
        }
        Err(e) => {
            rollback(init_pid, cgroup.as_deref());
            Err(e)
        }
    }
}

/// The intermediate process of `create`: enter namespaces, fork init, report its pid.
fn create_intermediate(joins: &[Join], new: CloneFlags, args: InitArgs<'_>) -> ! {
    let mut report = match args.sync.try_clone_channel() {
        Ok(c) => c,
        Err(_) => exit_now(1),
    };
    if let Err(e) = signals::reset() {
        let _ = report.send(&Message::Error(e.to_string()));
        exit_now(1);
    }
    if let Err(e) = namespaces::enter(joins, new) {
        let _ = report.send(&Message::Error(e.to_string()));
        exit_now(1);
    }
    match fork_child() {
        Ok(ForkResult::Child) => {
            drop(report);
            init::run(args)
        }
        Ok(ForkResult::Parent { child }) => {
            let sent = report.send(&Message::Pid(child.as_raw()));
            exit_now(if sent.is_ok() { 0 } else { 1 })
        }
        Err(e) => {
            let _ = report.send(&Message::Error(e.to_string()));
            exit_now(1)
        }
    }
}

/// Caller side, once init exists: cgroup, then let init set itself up and wait for it
/// (and for its terminal's master, when it has one).
fn configure_init(
    init_pid: Pid,
    cgroup: Option<&dyn CgroupManager>,
    bundle: &Bundle,
    sync: &mut Channel,
) -> Result<Option<OwnedFd>, RuntimeError> {
    if let Some(cg) = cgroup {
        cg.create()?;
        let resources = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        if let Some(resources) = resources {
            cg.apply(resources)?;
        }
        cg.add_process(init_pid)?;
    }
    sync.send(&Message::Continue)?;
    if bundle.process().terminal() == Some(true) {
        sync.expect(Message::Console, "init")?;
    }
    sync.expect(Message::Ready, "init")?;
    Ok(sync.take_console())
}

/// Undoes a half-made container; keeps going on errors, which are only logged since the
/// original failure is what the caller needs to see.
fn rollback(init_pid: Pid, cgroup: Option<&dyn CgroupManager>) {
    let _ = kill(init_pid, Signal::SIGKILL);
    reap(init_pid);
    if let Some(Err(e)) = cgroup.map(|cg| cg.destroy()) {
        tracing::warn!(error = %e, "rollback: removing the container cgroup failed");
    }
}

/// Waits for `pid`, ignoring ECHILD (when the caller is not a subreaper, init is not ours).
fn reap(pid: Pid) {
    loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            _ => return,
        }
    }
}

pub(super) fn release(fd: OwnedFd) -> Result<(), RuntimeError> {
    nix::unistd::write(&fd, b"s").map_err(sys_err("write start pipe"))?;
    Ok(())
}

pub(super) fn destroy(bundle: &Path, cgroup_root: &Path) -> Result<(), RuntimeError> {
    if !bundle.join("config.json").exists() {
        return Ok(());
    }
    let bundle = Bundle::load(bundle)?;
    if let Some(cg) = bundle.cgroup(cgroup_root)? {
        cg.destroy()?;
    }
    Ok(())
}

/// Whether the kernel's OOM killer killed a process in the bundle's cgroup.
pub(super) fn oom_killed(bundle: &Path, cgroup_root: &Path) -> Result<bool, RuntimeError> {
    let bundle = Bundle::load(bundle)?;
    match bundle.cgroup(cgroup_root)? {
        Some(cg) => Ok(cg.oom_kills()? > 0),
        None => Ok(false),
    }
}

/// SIGKILLs what is left in the container's cgroup after its init exited, when the
/// container has no PID namespace of its own (the pod's, a target's, the host's): there
/// the kernel does not end the others with init, and, as containerd does, a container
/// whose init is gone must not keep running. Returns how many were signalled.
pub(super) fn kill_leftovers(bundle: &Path, cgroup_root: &Path) -> Result<usize, RuntimeError> {
    let bundle = Bundle::load(bundle)?;
    let namespaces = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref());
    let own_pid_ns = namespaces.is_some_and(|list| {
        list.iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
    });
    let Some(cg) = bundle.cgroup(cgroup_root)?.filter(|_| !own_pid_ns) else {
        return Ok(0);
    };
    let leftovers = cg.processes()?;
    for pid in &leftovers {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    Ok(leftovers.len())
}

/// What every exec into one running container needs, read once: the spec's process
/// (env, cwd, user), init's namespaces, and the cgroup files the exec'd process writes
/// itself into. Held by the monitor while the container runs; dropping it releases the
/// namespace and cgroup file descriptors.
pub struct ExecTarget {
    process: Process,
    /// `linux.seccomp` compiled once (a few KiB of BPF, smaller than the profile it
    /// replaces), installed by each exec'd process.
    seccomp: Option<Filter>,
    joins: Vec<Join>,
    cgroup: Vec<File>,
}

impl ExecTarget {
    /// `bundle`'s config.json, and the namespaces of `container_pid` (its init).
    pub fn prepare(
        bundle: &Path,
        container_pid: Pid,
        cgroup_root: &Path,
    ) -> Result<ExecTarget, RuntimeError> {
        let bundle = Bundle::load(bundle)?;
        let cgroup = match bundle.cgroup(cgroup_root)? {
            Some(cg) => cg.open_self_join()?,
            None => Vec::new(),
        };
        let seccomp = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref());
        let seccomp = seccomp.map(Filter::compile_apart).transpose()?;
        Ok(ExecTarget {
            process: bundle.process().clone(),
            seccomp,
            joins: namespaces::of_process(container_pid)?,
            cgroup,
        })
    }
}

pub(super) fn exec(opts: ExecOptions<'_>) -> Result<Spawned, RuntimeError> {
    let target = opts.target;
    let mut process = target.process.clone();
    process.set_args(Some(opts.args.to_vec()));
    process.set_terminal(Some(opts.stdio.is_console()));
    if opts.stdio.is_console() {
        // As containerd for an exec with a tty: programs need a terminal type.
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("TERM="));
        env.push("TERM=xterm".into());
        process.set_env(Some(env));
    }
    let (mut sync, child_sync) = sync::channel()?;
    // One fork, born in the container's pid namespace, instead of an intermediate that
    // joins it and forks again: the guard points this thread's next child there and
    // points it back once dropped (also in the child, where it no longer matters).
    let forked = {
        let _into = namespaces::PidNsForChildren::enter(&target.joins)?;
        fork_child()?
    };
    let child = match forked {
        ForkResult::Child => {
            drop(sync);
            exec_child(target, &process, child_sync, opts.stdio)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_sync);
    drop(opts.stdio);
    match exec_setup_result(&mut sync, process.terminal() == Some(true)) {
        Ok(console) => Ok(Spawned {
            pid: child,
            console,
        }),
        Err(e) => {
            let _ = kill(child, Signal::SIGKILL);
            reap(child);
            Err(e)
        }
    }
}

/// The child's end closes once it is set up (it keeps only stdio into the command),
/// after sending its terminal's master if it has one.
fn exec_setup_result(sync: &mut Channel, console: bool) -> Result<Option<OwnedFd>, RuntimeError> {
    if console {
        sync.expect(Message::Console, "exec")?;
    }
    match sync.recv()? {
        None => Ok(sync.take_console()),
        Some(Message::Error(text)) => Err(RuntimeError::Init(text)),
        Some(other) => Err(RuntimeError::Init(format!("exec: unexpected {other:?}"))),
    }
}

/// The exec'd process before it runs the command: it takes its stdio while still on the
/// host's filesystem (/dev/null for what is not given), moves itself into the
/// container's cgroup (cheaper than being moved: see `CgroupManager::open_self_join`),
/// joins the container's namespaces and at once closes every fd of the monitor's: from
/// then on paths are the container's to control, and none may lead to one of them
/// (other containers' logs, cgroup files). Its terminal, if any, comes from the
/// container's devpts.
fn exec_child(target: &ExecTarget, process: &Process, mut sync: Channel, stdio: Stdio) -> ! {
    let wants_console = stdio.is_console();
    let setup = move |sync: &mut Channel| -> Result<Option<Console>, RuntimeError> {
        signals::reset()?;
        stdio::install(stdio)?;
        cgroups::join_self(&target.cgroup)?;
        namespaces::enter(&target.joins, CloneFlags::empty())?;
        stdio::close_all_except(&[sync.as_raw_fd()])?;
        if namespaces::joins_user(&target.joins) {
            // Before the terminal: a pty made by an unmapped host root is EOVERFLOW.
            namespaces::become_root_in_userns()?;
        }
        if !wants_console {
            return Ok(None);
        }
        let pty = console::open_pty()?;
        sync.send_console(&pty.master)?;
        Ok(Some(pty))
    };
    let console = match setup(&mut sync) {
        Ok(c) => c,
        Err(e) => {
            let _ = sync.send(&Message::Error(e.to_string()));
            exit_now(1);
        }
    };
    drop(sync);
    exec_process(process, target.seccomp.as_ref(), console)
}

/// The exec'd process inside the container. Its failures go to its own stderr with exit
/// code 127, as a shell reports a command it cannot run.
fn exec_process(process: &Process, seccomp: Option<&Filter>, console: Option<Console>) -> ! {
    let installed = match console {
        Some(c) => c.install(process.user().uid()),
        None => Ok(()),
    };
    if installed
        .and_then(|()| stdio::close_all_except(&[]))
        .is_err()
    {
        exit_now(127);
    }
    match init::prepare_process(process, seccomp.cloned()) {
        Ok(ready) => ready.exec("crius exec:"),
        Err(e) => {
            stdio::write_stderr(&format!("crius exec: {e}\n"));
            exit_now(127)
        }
    }
}
