//! Terminals allocated inside a container (root only): a container init's console and
//! an exec's tty, each from the container's own devpts, named there, and handed back
//! as the master.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::tests::{
    CGROUP_ROOT, cgroup_dirs, piped_stdio, root_fixture, running_sleeper, wait_exit, write_bundle,
};
use super::*;

/// Everything the process wrote to its terminal, until its last holder closed it
/// (the master then reads EIO).
fn read_master(master: OwnedFd) -> String {
    let mut master = File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn set_terminal(bundle: &Path) {
    let path = bundle.join("config.json");
    let mut spec = oci_spec::runtime::Spec::load(&path).unwrap();
    let mut process = spec.process().clone().unwrap();
    process.set_terminal(Some(true));
    spec.set_process(Some(process));
    spec.save(&path).unwrap();
}

#[test]
fn terminals_come_from_the_container_devpts() {
    let Some((dir, parent)) = root_fixture("crius-console-test") else {
        return;
    };
    let root = Path::new(CGROUP_ROOT);

    // An init with a console: its tty is the container's pts 0, bound on /dev/console.
    let script = "tty; test -t 0 && test -t 2 && echo all-terminal; ls /dev/console";
    let bundle = write_bundle(dir.path(), &["sh", "-c", script], &format!("{parent}/t"));
    set_terminal(&bundle);
    let opts = |stdio| CreateOptions {
        id: "t",
        bundle: &bundle,
        stdio,
        cgroup_root: root,
    };
    let mut created = create(opts(Stdio::Console)).unwrap_or_else(|e| panic!("create: {e}"));
    let master = created.console.take().expect("a master");
    let pid = created.pid;
    created.start().unwrap();
    let out = read_master(master);
    assert_eq!(wait_exit(pid), 0, "{out}");
    assert_eq!(out, "/dev/pts/0\r\nall-terminal\r\n/dev/console\r\n");
    destroy(&bundle, root).unwrap();

    // The spec and the caller must agree on the terminal: nothing is created otherwise.
    let (_reader, pipes) = piped_stdio();
    match create(opts(pipes)) {
        Err(RuntimeError::InvalidSpec { message, .. }) => assert!(message.contains("terminal")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(c) => panic!("created {}", c.pid),
    }

    // An exec's tty in a container whose init has pipes.
    let (bundle, init) = running_sleeper(dir.path(), &parent, "e");
    let target = ExecTarget::prepare(&bundle, init, root).unwrap();
    let script = "tty; test -t 1 && echo terminal; echo $TERM; ls /proc/self/fd";
    let args: Vec<String> = ["sh", "-c", script].map(String::from).into();
    let spawned = exec(ExecOptions {
        target: &target,
        args: &args,
        stdio: Stdio::Console,
    })
    .unwrap_or_else(|e| panic!("exec: {e}"));
    let out = read_master(spawned.console.expect("a master"));
    assert_eq!(wait_exit(spawned.pid), 0, "{out}");
    // Only the terminal crosses into the container (3 is ls's own directory fd).
    assert_eq!(out, "/dev/pts/0\r\nterminal\r\nxterm\r\n0  1  2  3\r\n");
    drop(target);
    destroy(&bundle, root).unwrap();
    assert_eq!(
        wait_exit(init),
        128 + nix::sys::signal::Signal::SIGKILL as i32
    );

    cgroups::manager(root, &parent).unwrap().destroy().unwrap();
    assert!(cgroup_dirs(&parent).is_empty(), "cgroup dirs left");
}
