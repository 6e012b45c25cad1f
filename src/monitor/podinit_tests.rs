//! The pod init through a real monitor: its PID namespace pinned for containers to join,
//! what a container leaves in it ended with the container's init, and the pod init
//! ended at Shutdown. Needs root, as CI runs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::container_tests::{Fixture, wait_exited};
use super::tests::{gone, start_monitor_with};
use super::*;

fn ns_inode(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Host pids of the processes named `comm` in the PID namespace `inode`.
fn in_namespace(inode: u64, comm: &str) -> Vec<i32> {
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !gone(*pid))
        .filter(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let ns = std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino());
            name.trim() == comm && ns.ok() == Some(inode)
        })
        .collect()
}

/// Points the bundle's PID namespace at `pin` (as spec generation does for pid POD).
fn join_pid_namespace(create: &proto::CreateContainer, pin: &Path) {
    let config = PathBuf::from(&create.bundle).join("config.json");
    let mut spec = Spec::load(&config).unwrap();
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    for ns in namespaces.iter_mut() {
        if ns.typ() == LinuxNamespaceType::Pid {
            ns.set_path(Some(pin.to_path_buf()));
        }
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    spec.save(&config).unwrap();
}

async fn wait_for(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not within 5s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Unmounts the pin and removes the pod init's cgroups, also when the test fails; made
/// before the monitor so it runs after the monitor's own Drop has shut it down.
struct Cleanup {
    pin: PathBuf,
    parent: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = umount2(&self.pin, MntFlags::MNT_DETACH);
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.parent).join("pod-init"));
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.parent));
        }
    }
}

#[tokio::test]
async fn pod_init_holds_the_namespace_containers_join() {
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pod").join("ns").join("pid");
    let parent = format!("crius-monitor-test-podinit-{}", std::process::id());
    let opts = PodInitOptions {
        pin: pin.clone(),
        join: Vec::new(),
        cgroup: format!("{parent}/pod-init"),
        user: None,
    };
    let _cleanup = Cleanup {
        pin: pin.clone(),
        parent,
    };
    let r = start_monitor_with(dir, "/sys/fs/cgroup".into(), Some(opts)).await;
    let fx = Fixture::new(&r);
    let inode = ns_inode(&pin);
    let init = in_namespace(inode, "crius-pod-init");
    assert_eq!(init.len(), 1, "one pod init in the pinned namespace");

    let create = fx.bundle("c1", &["sh", "-c", "sleep 1000 & exec sleep 1001"]);
    join_pid_namespace(&create, &pin);
    r.client.create(create).await.unwrap();
    r.client.start("c1").await.unwrap();
    let pid = r.client.state("c1").await.unwrap().pid;
    assert_eq!(ns_inode(format!("/proc/{pid}/ns/pid")), inode);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_ne!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    // Not PID 1, so its background sleep survives it unless the monitor ends it.
    wait_for(|| in_namespace(inode, "sleep").len() == 2).await;
    r.client.kill("c1", 9).await.unwrap();
    wait_exited(&r, "c1").await;
    // SIGKILL is delivered asynchronously: the leftover is gone soon, not at once.
    wait_for(|| in_namespace(inode, "sleep").is_empty()).await;

    r.client.shutdown().await.unwrap();
    wait_for(|| gone(init[0])).await;
    // Before the tempdir goes: a mounted pin cannot be deleted.
    umount2(&pin, MntFlags::MNT_DETACH).unwrap();
    fx.cleanup();
}

/// A pod init that cannot be set up fails the spawn at once, with the monitor's reason,
/// instead of after the ready timeout.
#[tokio::test]
async fn a_pod_init_that_cannot_start_fails_the_spawn_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpawnOptions {
        pod_id: "test-pod".into(),
        dir: dir.path().join("pod"),
        cgroup_root: dir.path().join("cgroup"),
        exe: super::tests::crius_bin(),
        pod_init: Some(PodInitOptions {
            pin: dir.path().join("pod/ns/pid"),
            join: vec![dir.path().join("no-such-namespace")],
            cgroup: "pod/pod-init".into(),
            user: None,
        }),
    };
    // StartFailed with the monitor's reason: the ready timeout would say "did not answer".
    let err = spawn(&opts).await.unwrap_err();
    assert!(
        matches!(&err, MonitorError::StartFailed { message, .. } if message.contains("no-such-namespace")),
        "{err}"
    );
    assert!(!opts.dir.join(SOCKET_NAME).exists());
}

/// The inode of the user namespace owning the namespace at `path` (NS_GET_USERNS).
#[allow(unsafe_code)]
fn owner(path: &Path) -> u64 {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: an open namespace fd; the ioctl returns a new fd or -1.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS as _) };
    assert!(
        fd >= 0,
        "NS_GET_USERNS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel just returned this fd.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    owner.metadata().unwrap().ino()
}

/// With a user namespace (here `unshare -U`, mapped 0 → 1000), the pod init runs in it
/// and its PID namespace is owned by it, so the containers' root may mount /proc.
#[tokio::test]
async fn a_pod_init_with_a_user_namespace_creates_its_pid_namespace_there() {
    let mut holder = std::process::Command::new("unshare")
        .args(["-U", "sleep", "60"])
        .spawn()
        .unwrap();
    let userns = PathBuf::from(format!("/proc/{}/ns/user", holder.id()));
    while ns_inode(&userns) == ns_inode("/proc/self/ns/user") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{}/{file}", holder.id());
        std::fs::write(path, "0 1000 100000\n").unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pod").join("ns").join("pid");
    let parent = format!("crius-monitor-test-podinit-userns-{}", std::process::id());
    let opts = PodInitOptions {
        pin: pin.clone(),
        join: Vec::new(),
        cgroup: format!("{parent}/pod-init"),
        user: Some(userns.clone()),
    };
    let _cleanup = Cleanup {
        pin: pin.clone(),
        parent,
    };
    let r = start_monitor_with(dir, "/sys/fs/cgroup".into(), Some(opts)).await;
    let (owned_by, userns_inode) = (owner(&pin), ns_inode(&userns));
    let init = in_namespace(ns_inode(&pin), "crius-pod-init");
    let uid_map = std::fs::read_to_string(format!("/proc/{}/uid_map", init[0])).unwrap();
    let parent_pid = std::fs::read_to_string(format!("/proc/{}/stat", init[0])).unwrap();
    let parent_pid = parent_pid
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1);
    let monitor_pid = r.pid.to_string();
    r.client.shutdown().await.unwrap();
    wait_for(|| gone(init[0])).await;
    let _ = (holder.kill(), holder.wait());
    umount2(&pin, MntFlags::MNT_DETACH).unwrap();
    assert_eq!(owned_by, userns_inode);
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "1000", "100000"]
    );
    assert_eq!(
        parent_pid,
        Some(monitor_pid.as_str()),
        "the monitor's child"
    );
}
