//! Root integration test: real containers from a busybox rootfs. One test function drives
//! every scenario serially, since they fork and share the subreaper setting.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder,
    Spec,
};

use super::*;

pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub(super) const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "id", "hostname", "ls", "grep", "wc", "tty", "test",
];

pub(super) fn write_bundle(dir: &Path, args: &[&str], cgroup: &str) -> PathBuf {
    let bundle = dir.join(cgroup.rsplit('/').next().unwrap());
    std::fs::create_dir_all(&bundle).unwrap();
    let mut spec = Spec::default();
    let mut root = spec.root().clone().unwrap();
    root.set_path(dir.join("rootfs"));
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some("crius-test".into()));
    let mut mounts = spec.mounts().clone().unwrap();
    let cgroupfs = MountBuilder::default()
        .destination("/sys/fs/cgroup")
        .typ("cgroup")
        .source("cgroup")
        .options(vec![
            "nosuid".into(),
            "noexec".into(),
            "nodev".into(),
            "ro".into(),
        ])
        .build()
        .unwrap();
    mounts.push(cgroupfs);
    spec.set_mounts(Some(mounts));
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    process.set_env(Some(vec!["PATH=/bin".into()]));
    process.set_cwd("/work/dir".into());
    let mut user = process.user().clone();
    user.set_uid(1000);
    user.set_gid(1000);
    user.set_additional_gids(Some(vec![2000]));
    process.set_user(user);
    process.set_oom_score_adj(Some(-500));
    spec.set_process(Some(process));
    let mut linux = spec.linux().clone().unwrap();
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{cgroup}"))));
    let namespaces = linux.namespaces().clone().unwrap();
    // Without a cgroup namespace /proc/self/cgroup shows the full path we check for.
    let namespaces = namespaces
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Cgroup);
    linux.set_namespaces(Some(namespaces.collect()));
    let resources = LinuxResourcesBuilder::default()
        .devices(device_rules())
        .cpu(LinuxCpuBuilder::default().shares(512u64).build().unwrap())
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(100i64).build().unwrap())
        .build()
        .unwrap();
    linux.set_resources(Some(resources));
    let sysctl = [("net.ipv4.ip_forward".to_string(), "1".to_string())];
    linux.set_sysctl(Some(sysctl.into_iter().collect()));
    spec.set_linux(Some(linux));
    spec.save(bundle.join("config.json")).unwrap();
    bundle
}

/// Deny everything but the default devices and ptys, as containerd's specs do.
fn device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule =
        |allow: bool, typ: Option<LinuxDeviceType>, major: Option<i64>, minor: Option<i64>| {
            let mut r = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .access("rwm");
            if let Some(t) = typ {
                r = r.typ(t);
            }
            if let Some(m) = major {
                r = r.major(m);
            }
            if let Some(m) = minor {
                r = r.minor(m);
            }
            r.build().unwrap()
        };
    let mut rules = vec![rule(false, None, None, None)];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
        rules.push(rule(
            true,
            Some(LinuxDeviceType::C),
            Some(major),
            Some(minor),
        ));
    }
    rules.push(rule(true, Some(LinuxDeviceType::C), Some(136), None));
    rules
}

/// A pipe whose write end becomes the process's stdout and stderr.
pub(super) fn piped_stdio() -> (std::io::PipeReader, Stdio) {
    let (reader, writer) = std::io::pipe().unwrap();
    let stdout: OwnedFd = writer.into();
    let stderr = stdout.try_clone().unwrap();
    (
        reader,
        Stdio::Fds {
            stdin: None,
            stdout,
            stderr,
        },
    )
}

pub(super) fn read_all(mut reader: std::io::PipeReader) -> String {
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    out
}

pub(super) fn wait_exit(pid: Pid) -> i32 {
    match waitpid(pid, None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        other => panic!("unexpected wait status {other:?}"),
    }
}

pub(super) fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    ["cpu", "memory", "pids", "cpuset", "systemd"]
        .iter()
        .map(|c| Path::new(CGROUP_ROOT).join(c).join(parent))
        .filter(|p| p.exists())
        .collect()
}

/// What a root test of containers needs: a busybox rootfs under a temporary dir and a
/// cgroup parent of its own; `None` (saying why) where the test cannot run.
pub(super) fn root_fixture(name: &str) -> Option<(tempfile::TempDir, String)> {
    if !nix::unistd::Uid::effective().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping {name}: needs root and /bin/busybox");
        return None;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    crate::testutil::busybox_rootfs(&dir.path().join("rootfs"), APPLETS);
    Some((dir, format!("{name}-{}", std::process::id())))
}

#[test]
fn containers_run_exec_and_clean_up() {
    let Some((dir, parent)) = root_fixture("crius-test") else {
        return;
    };
    let root = Path::new(CGROUP_ROOT);

    run_to_completion(dir.path(), &parent);
    missing_executable_fails(dir.path(), &parent);
    exec_in_running_container(dir.path(), &parent);
    dropped_container_never_runs(dir.path(), &parent);

    v2_kills_and_removes(&parent);
    cgroups::manager(root, &parent).unwrap().destroy().unwrap();
    assert!(cgroup_dirs(&parent).is_empty(), "cgroup dirs left");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let rootfs = dir.path().to_string_lossy().into_owned();
    assert!(!mountinfo.contains(&rootfs), "mounts left: {mountinfo}");
}

fn run_to_completion(dir: &Path, parent: &str) {
    let cg = format!("{parent}/a");
    let script = "echo hi; id -u; id -G; hostname; cat /proc/self/cgroup; ls /dev; \
        grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; \
        echo x > /probe && echo writable || echo read-only; \
        echo kcore=$(cat /proc/kcore | wc -c); echo > /dev/null && echo devnull-ok; \
        echo ip_forward=$(cat /proc/sys/net/ipv4/ip_forward); \
        grep -q ' /proc/sys ro,' /proc/self/mountinfo && echo proc-sys-ro; \
        echo pids.max=$(cat /sys/fs/cgroup/pids/pids.max); ls /sys/fs/cgroup/cpuacct/";
    let bundle = write_bundle(dir, &["sh", "-c", script], &cg);
    let (reader, stdio) = piped_stdio();
    let root = Path::new(CGROUP_ROOT);
    let created = create(CreateOptions {
        id: "a",
        bundle: &bundle,
        stdio,
        cgroup_root: root,
    })
    .unwrap_or_else(|e| panic!("create: {e}"));
    let pids_max = root.join("pids").join(&cg).join("pids.max");
    assert_eq!(std::fs::read_to_string(pids_max).unwrap().trim(), "100");
    let devices = root.join("devices").join(&cg).join("devices.list");
    let devices = std::fs::read_to_string(devices).unwrap();
    assert!(
        devices.contains("c 1:3 rwm") && !devices.contains("a *:*"),
        "{devices}"
    );
    let pid = created.pid;
    created.start().unwrap();
    let out = read_all(reader);
    assert_eq!(wait_exit(pid), 0, "output: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..4],
        ["hi", "1000", "1000 2000", "crius-test"],
        "output: {out}"
    );
    assert!(out.contains(&format!("pids:/{cg}")), "output: {out}");
    assert!(
        out.contains("null") && out.contains("ptmx"),
        "output: {out}"
    );
    destroy(&bundle, root).unwrap();
    destroy(&bundle, root).unwrap();
    assert!(cgroup_dirs(&cg).is_empty());
}

fn missing_executable_fails(dir: &Path, parent: &str) {
    let cg = format!("{parent}/b");
    let bundle = write_bundle(dir, &["foo"], &cg);
    let (_reader, stdio) = piped_stdio();
    let root = Path::new(CGROUP_ROOT);
    match create(CreateOptions {
        id: "b",
        bundle: &bundle,
        stdio,
        cgroup_root: root,
    }) {
        Err(RuntimeError::Init(msg)) => {
            assert!(
                msg.contains("executable file `foo` not found in $PATH"),
                "{msg}"
            )
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(c) => panic!("create succeeded with pid {}", c.pid),
    }
    assert!(cgroup_dirs(&cg).is_empty(), "rollback left the cgroup");
}

/// A started container `id` under `parent` whose init sleeps (stdio on a pipe nobody
/// reads): its bundle and init pid.
pub(super) fn running_sleeper(dir: &Path, parent: &str, id: &str) -> (PathBuf, Pid) {
    let bundle = write_bundle(dir, &["sleep", "30"], &format!("{parent}/{id}"));
    let (_reader, stdio) = piped_stdio();
    let created = create(CreateOptions {
        id,
        bundle: &bundle,
        stdio,
        cgroup_root: Path::new(CGROUP_ROOT),
    })
    .unwrap_or_else(|e| panic!("create: {e}"));
    let init = created.pid;
    created.start().unwrap();
    (bundle, init)
}

fn exec_in_running_container(dir: &Path, parent: &str) {
    let cg = format!("{parent}/c");
    let root = Path::new(CGROUP_ROOT);
    let (bundle, init) = running_sleeper(dir, parent, "c");

    let target = ExecTarget::prepare(&bundle, init, root).unwrap();
    let run = |args: &[&str]| {
        let (reader, stdio) = piped_stdio();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let opts = ExecOptions {
            target: &target,
            args: &args,
            stdio,
        };
        let spawned = exec(opts).unwrap_or_else(|e| panic!("exec: {e}"));
        let out = read_all(reader);
        (wait_exit(spawned.pid), out)
    };
    let (code, out) = run(&[
        "sh",
        "-c",
        "echo exec-ok; hostname; pwd; cat /proc/self/cgroup; exit 3",
    ]);
    assert_eq!(code, 3, "output: {out}");
    assert!(
        out.starts_with("exec-ok\ncrius-test\n/work/dir\n"),
        "output: {out}"
    );
    // In the container's cgroup in every hierarchy, not only the one checked first.
    let managed = [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer",
    ];
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.matches(':').count() == 2)
        .collect();
    for line in &lines {
        let mut f = line.splitn(3, ':').skip(1);
        let (controllers, path) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        if controllers.split(',').any(|c| managed.contains(&c)) {
            assert_eq!(path, format!("/{cg}"), "{line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains(":memory:")), "{out}");
    // The test process ignores SIGPIPE (Rust does); that must not leak in. Run grep
    // directly: busybox sh would reset it and hide a leak.
    let (code, out) = run(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    assert_eq!(code, 0, "output: {out}");
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    // Only stdio crosses into the container (3 is ls's own directory fd).
    let (code, out) = run(&["ls", "/proc/self/fd"]);
    assert_eq!((code, out.as_str()), (0, "0\n1\n2\n3\n"));
    // Born in the container's pid namespace, and the caller's next children are not.
    let (code, out) = run(&["ls", "-l", "/proc/self/ns/pid"]);
    let init_ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(init_ns.to_str().unwrap()),
        "{out} vs {init_ns:?}"
    );
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/pid_for_children").unwrap(),
        std::fs::read_link("/proc/self/ns/pid").unwrap(),
        "pid namespace for children restored"
    );
    let (code, out) = run(&["nonexistent-tool"]);
    assert_eq!(code, 127, "output: {out}");
    assert!(out.contains("not found in $PATH"), "output: {out}");

    // destroy kills what is still running in the cgroup.
    destroy(&bundle, root).unwrap();
    assert_eq!(wait_exit(init), 128 + Signal::SIGKILL as i32);
    assert!(cgroup_dirs(&cg).is_empty());
}

/// The hybrid host's v2 hierarchy has no controllers, but it still exercises creating,
/// joining and destroying (with cgroup.kill) a real cgroup2 directory.
fn v2_kills_and_removes(parent: &str) {
    let unified = Path::new(CGROUP_ROOT).join("unified");
    if cgroups::detect(&unified) != cgroups::Version::V2 {
        return;
    }
    let path = format!("{parent}/v2");
    let cg = cgroups::manager(&unified, &path).unwrap();
    cg.create().unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    cg.add_process(pid).unwrap();
    assert_eq!(cg.processes().unwrap(), vec![pid]);
    // A process that moves itself in (as exec's intermediate does).
    let moved = match super::child::fork_child().unwrap() {
        ForkResult::Child => {
            let ok = cg
                .open_self_join()
                .and_then(|files| cgroups::join_self(&files))
                .is_ok()
                && std::fs::read_to_string("/proc/self/cgroup")
                    .is_ok_and(|c| c.contains(&format!("0::/{path}\n")));
            super::child::exit_now(if ok { 0 } else { 1 })
        }
        ForkResult::Parent { child } => child,
    };
    assert_eq!(wait_exit(moved), 0, "join_self on v2");
    cg.destroy().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    assert!(!unified.join(&path).exists());
    cgroups::manager(&unified, parent)
        .unwrap()
        .destroy()
        .unwrap();
    assert!(!unified.join(parent).exists());
}

fn dropped_container_never_runs(dir: &Path, parent: &str) {
    let cg = format!("{parent}/d");
    let bundle = write_bundle(dir, &["sh", "-c", "echo ran"], &cg);
    let (reader, stdio) = piped_stdio();
    let root = Path::new(CGROUP_ROOT);
    let created = create(CreateOptions {
        id: "d",
        bundle: &bundle,
        stdio,
        cgroup_root: root,
    })
    .unwrap_or_else(|e| panic!("create: {e}"));
    let pid = created.pid;
    drop(created);
    assert_eq!(wait_exit(pid), 1);
    assert_eq!(read_all(reader), "");
    destroy(&bundle, root).unwrap();
}
