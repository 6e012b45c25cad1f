//! CRI mounts as kubelet sends them: host paths (symlinked, missing, read-only,
//! recursive read-only), propagation, devices; and their refusals, which leave nothing.

use crate::fixtures::*;
use crate::harness::{Daemon, Options, Runtime, preflight};
use crate::leaks;
use k8s_cri::v1::*;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::fs;
use std::path::{Path, PathBuf};
use tonic::Code;

struct Pod {
    d: Daemon,
    rt: Runtime,
    pod: PodSandboxConfig,
    id: String,
    busybox: String,
}

/// A daemon without a network (host-network pod) and busybox pulled.
async fn pod(name: &str) -> Pod {
    let d = Daemon::start_with(Options::default()).await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, name);
    let id = run_pod(&mut rt, &pod).await;
    Pod {
        d,
        rt,
        pod,
        id,
        busybox,
    }
}

fn host_mount(container: &str, host: &Path, readonly: bool, prop: MountPropagation) -> Mount {
    Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        propagation: prop as i32,
        ..Default::default()
    }
}

/// Mounts made under the daemon's run_root for containers (rootfs, image volumes).
pub fn container_mounts(d: &Daemon) -> Vec<String> {
    leaks::find(&d.scope())
        .into_iter()
        .filter(|l| l.starts_with("mount:") && l.contains("/containers/"))
        .collect()
}

/// A create that must fail with `want`, listing nothing and mounting nothing after.
async fn refused(p: &mut Pod, c: &ContainerConfig, want: Code, says: &str) {
    let err = create(&mut p.rt, &p.id, &p.pod, c)
        .await
        .expect_err("CreateContainer should fail");
    assert_eq!(err.code(), want, "{err}");
    assert!(err.message().contains(says), "{err}");
    assert!(list_containers(&mut p.rt).await.is_empty(), "after {err}");
    assert!(
        container_mounts(&p.d).is_empty(),
        "{:?}",
        container_mounts(&p.d)
    );
}

#[tokio::test]
async fn host_path_mounts() {
    if !preflight("host_path_mounts", true) {
        return;
    }
    let mut p = pod("hostpaths").await;
    let dir = p.d.paths.dir.join("vols");
    let data = dir.join("data");
    fs::create_dir_all(&data).expect("data dir");
    fs::write(data.join("flag"), "x").expect("flag");
    std::os::unix::fs::symlink(&data, dir.join("link")).expect("symlink");
    let missing = dir.join("new/sub");
    // A tmpfs below the rro source: `ro` leaves it writable, `rro` does not.
    let sub = data.join("tmpfs");
    fs::create_dir_all(&sub).expect("tmpfs dir");
    mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("tmpfs");
    let private = MountPropagation::PropagationPrivate;
    let mut rro = host_mount("/rro", &data, true, private);
    rro.recursive_read_only = true;
    let mut c = container_config("main", &p.busybox, &["sleep", "1000"]);
    c.mounts = vec![
        host_mount("/rw", &data, false, private),
        host_mount("/link", &dir.join("link"), true, private),
        host_mount("/new", &missing, false, private),
        host_mount("/ro", &data, true, private),
        rro,
    ];
    let id = create_and_start(&mut p.rt, &p.id, &p.pod, &c).await;
    assert_eq!(container_status(&mut p.rt, &id).await.mounts, c.mounts);
    let checks = [
        ("echo hi > /rw/written && cat /link/flag", 0, "x"),
        ("touch /link/nope", 1, "Read-only file system"),
        ("test -d /new && touch /new/made", 0, ""),
        ("touch /ro/nope", 1, "Read-only file system"),
        ("touch /ro/tmpfs/ok", 0, ""),
        ("touch /rro/tmpfs/nope", 1, "Read-only file system"),
    ];
    for (script, code, says) in checks {
        let (got, out) = sh(&mut p.rt, &id, script).await;
        assert_eq!(got, code, "{script}: {out}");
        assert!(out.contains(says), "{script}: {out}");
    }
    assert!(data.join("written").exists() && missing.join("made").exists());

    host_path_refusals(&mut p, &data).await;

    remove_container(&mut p.rt, &id).await;
    umount2(&sub, MntFlags::MNT_DETACH).expect("umount tmpfs");
    p.d.teardown().await;
}

/// A host path below a regular file can be neither found nor created; rro needs ro.
async fn host_path_refusals(p: &mut Pod, data: &Path) {
    let private = MountPropagation::PropagationPrivate;
    let mut bad = container_config("bad", &p.busybox, &["true"]);
    bad.mounts = vec![host_mount("/x", &data.join("flag/x"), false, private)];
    let err = create(&mut p.rt, &p.id, &p.pod, &bad)
        .await
        .expect_err("ENOTDIR");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_eq!(list_containers(&mut p.rt).await.len(), 1, "only the first");
    let mut rw_rro = host_mount("/x", data, false, private);
    rw_rro.recursive_read_only = true;
    bad.mounts = vec![rw_rro];
    let err = create(&mut p.rt, &p.id, &p.pod, &bad)
        .await
        .expect_err("rro rw");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

async fn remove_container(rt: &mut Runtime, id: &str) {
    rt.remove_container(RemoveContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .expect("RemoveContainer");
}

/// `dir` bound on itself with the given propagation, as critest prepares host paths.
fn bind_self(dir: &Path, propagation: MsFlags) {
    fs::create_dir_all(dir).expect("dir");
    let rec = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(dir), dir, None::<&str>, rec, None::<&str>).expect("bind");
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        propagation | MsFlags::MS_REC,
        None::<&str>,
    )
    .expect("propagation");
}

#[tokio::test]
async fn mount_propagation() {
    if !preflight("mount_propagation", true) {
        return;
    }
    let mut p = pod("propagation").await;
    let base = p.d.paths.dir.join("prop");
    let (shared, private_dir, source) =
        (base.join("shared"), base.join("private"), base.join("src"));
    bind_self(&shared, MsFlags::MS_SHARED);
    bind_self(&private_dir, MsFlags::MS_PRIVATE);
    fs::create_dir_all(&source).expect("src");
    fs::write(source.join("flag"), "x").expect("flag");
    let mut unmount_later: Vec<PathBuf> = Vec::new();

    // Neither rshared nor rslave can work from a private mount.
    use MountPropagation::*;
    for prop in [PropagationBidirectional, PropagationHostToContainer] {
        let mut c = container_config("refused", &p.busybox, &["true"]);
        c.mounts = vec![host_mount("/m", &private_dir, false, prop)];
        refused(&mut p, &c, Code::FailedPrecondition, "not").await;
    }

    let mut ids = Vec::new();
    for (name, prop) in [
        ("private", PropagationPrivate),
        ("slave", PropagationHostToContainer),
        ("shared", PropagationBidirectional),
    ] {
        let dir = shared.join(name);
        fs::create_dir_all(dir.join("from-host")).expect("mount point");
        fs::create_dir_all(dir.join("from-container")).expect("mount point");
        let mut c = container_config(name, &p.busybox, &["sleep", "1000"]);
        c.mounts = vec![host_mount("/m", &dir, false, prop)];
        // Mounting inside the container needs CAP_SYS_ADMIN, not a privileged container.
        let sc = c.linux.get_or_insert_with(Default::default);
        sc.security_context = Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["SYS_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = create_and_start(&mut p.rt, &p.id, &p.pod, &c).await;
        let status = container_status(&mut p.rt, &id).await;
        assert_eq!(status.mounts[0].propagation, prop as i32);
        ids.push((id, dir, prop));
    }
    for (id, dir, prop) in &ids {
        unmount_later.extend(check_propagation(&mut p.rt, id, dir, &source, *prop).await);
    }
    for (id, ..) in &ids {
        remove_container(&mut p.rt, id).await;
    }
    for m in unmount_later.iter().rev().chain([&shared, &private_dir]) {
        umount2(m, MntFlags::MNT_DETACH).unwrap_or_else(|e| panic!("umount {m:?}: {e}"));
    }
    p.d.teardown().await;
}

/// A host mount below `dir` reaches the container unless private; a container mount
/// reaches the host only when bidirectional. Returns the host mounts to undo.
async fn check_propagation(
    rt: &mut Runtime,
    id: &str,
    dir: &Path,
    source: &Path,
    prop: MountPropagation,
) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let host_side = dir.join("from-host");
    mount(
        Some(source),
        &host_side,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("host bind");
    made.push(host_side);
    let (_, out) = sh(rt, id, "ls /m/from-host").await;
    let sees_host = out.contains("flag");
    assert_eq!(
        sees_host,
        prop != MountPropagation::PropagationPrivate,
        "{prop:?}: {out}"
    );
    let (code, out) = sh(rt, id, "mount -t tmpfs tmpfs /m/from-container").await;
    assert_eq!(code, 0, "{out}");
    let back = dir.join("from-container");
    let host_sees = is_mount_point(&back);
    if host_sees {
        made.push(back);
    }
    assert_eq!(
        host_sees,
        prop == MountPropagation::PropagationBidirectional,
        "{prop:?}"
    );
    made
}

fn is_mount_point(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let path = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
}

#[tokio::test]
async fn devices() {
    if !preflight("devices", true) {
        return;
    }
    let mut p = pod("devices").await;
    let device = |container: &str, permissions: &str| Device {
        host_path: "/dev/fuse".into(),
        container_path: container.into(),
        permissions: permissions.into(),
    };
    let mut c = container_config("rwm", &p.busybox, &["sleep", "1000"]);
    c.devices = vec![device("/dev/e2e-fuse", "rwm")];
    let full = create_and_start(&mut p.rt, &p.id, &p.pod, &c).await;
    let (code, out) = sh(
        &mut p.rt,
        &full,
        "test -c /dev/e2e-fuse && exec 3<>/dev/e2e-fuse",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut c = container_config("read", &p.busybox, &["sleep", "1000"]);
    c.devices = vec![device("/dev/fuse", "r")];
    let read = create_and_start(&mut p.rt, &p.id, &p.pod, &c).await;
    let (code, out) = sh(&mut p.rt, &read, "exec 3</dev/fuse").await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = sh(&mut p.rt, &read, "exec 3<>/dev/fuse").await;
    assert_ne!(code, 0, "the cgroup allows reading only: {out}");

    let mut c = container_config("unknown", &p.busybox, &["true"]);
    c.devices = vec![Device {
        host_path: "/dev/crius-e2e-none".into(),
        ..device("/dev/x", "rw")
    }];
    let err = create(&mut p.rt, &p.id, &p.pod, &c)
        .await
        .expect_err("unknown device");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("/dev/crius-e2e-none"), "{err}");
    assert_eq!(list_containers(&mut p.rt).await.len(), 2);
    p.d.teardown().await;
}
