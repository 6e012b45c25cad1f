//! The leak detector itself: make one leak of every kind by hand, check that `find`
//! reports each and that `force_cleanup` removes them. Needs root, not the daemon.

use crate::harness::preflight;
use crate::leaks::{Scope, find, force_cleanup};
use nix::mount::{MsFlags, mount};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const BRIDGE: &str = "criusselftest0";

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?} failed");
}

#[test]
fn leak_detector_finds_and_cleans() {
    if !preflight("leak_detector_finds_and_cleans", false) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("crius-e2e-")
        .tempdir()
        .expect("tempdir");
    let name = format!("crius-e2e-selftest-{}", std::process::id());
    let scope = Scope {
        dirs: vec![dir.path().to_path_buf()],
        root: dir.path().join("root"),
        run_root: dir.path().join("run"),
        cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        cgroup_parent: name.clone(),
        bridge: Some(BRIDGE.to_string()),
        binary: fs::canonicalize("/bin/busybox").expect("busybox installed"),
    };
    assert!(find(&scope).is_empty(), "{:?}", find(&scope));

    // A mount, pod state, a cgroup with a process in it, a "monitor", a bridge port.
    let mnt = dir.path().join("run/pods/p1/mnt");
    fs::create_dir_all(&mnt).expect("mkdir mnt");
    fs::create_dir_all(dir.path().join("root/containers/c1")).expect("mkdir state");
    mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount");
    let cgroup = PathBuf::from("/sys/fs/cgroup/pids")
        .join(&name)
        .join("pod1");
    fs::create_dir_all(&cgroup).expect("mkdir cgroup");
    let sleeper = Command::new("sleep").arg("100").spawn().expect("sleep");
    fs::write(cgroup.join("cgroup.procs"), sleeper.id().to_string()).expect("join cgroup");
    let run_dir = scope.run_root.to_string_lossy().into_owned();
    let monitor = Command::new("/bin/busybox")
        .args(["sh", "-c", "sleep 100; true", "monitor", "--dir", &run_dir])
        .stdin(Stdio::null())
        .spawn()
        .expect("fake monitor");
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    ip(&["link", "add", BRIDGE, "type", "bridge"]);
    ip(&[
        "link",
        "add",
        "criusself0",
        "type",
        "veth",
        "peer",
        "name",
        "criusself1",
    ]);
    ip(&["link", "set", "criusself0", "master", BRIDGE]);
    std::thread::sleep(Duration::from_millis(200));

    // Clean up before asserting anything, so a failure leaves nothing behind either.
    let leaks = find(&scope).join("\n");
    let unmounted = force_cleanup(&scope);
    let remaining: Vec<String> = find(&scope)
        .into_iter()
        .filter(|l| !l.starts_with("state: "))
        .collect();
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    for mut child in [sleeper, monitor] {
        let _ = child.kill();
        let _ = child.wait();
    }
    for want in [
        "mount: ",
        "cgroup: ",
        "interface on criusselftest0: criusself0",
        "monitor: ",
        "state: ",
    ] {
        assert!(leaks.contains(want), "{want:?} missing from:\n{leaks}");
    }
    assert!(unmounted, "mounts remain");
    assert!(
        remaining.is_empty(),
        "left after force_cleanup: {remaining:?}"
    );
    assert!(!PathBuf::from("/sys/fs/cgroup/pids").join(&name).exists());
}
