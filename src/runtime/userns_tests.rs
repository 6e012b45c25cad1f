//! Root test: a container joining a user namespace by path, its init opening what it
//! needs from the host before it becomes that namespace's root.

use std::path::Path;
use std::process::Command;

use super::tests::{APPLETS, CGROUP_ROOT, piped_stdio, read_all, wait_exit, write_bundle};
use super::*;
use oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec};

/// A user namespace created by someone else (here `unshare -U`, mapped 0 → 1000) and
/// given by path: the intermediate process joins it first, init becomes its root; the
/// rest (mount, pid, net, ipc, uts namespaces created owned by it; proc, sysfs, devices)
/// works. The bundle sits in a 0700 root-owned dir, as the daemon's state dirs, and a
/// bind source in another: init opens them before it becomes the namespace's root, who
/// could not walk there. Mount points must exist in the rootfs: root there is not the
/// rootfs owner.
#[test]
fn a_container_joins_a_user_namespace_by_path() {
    if !nix::unistd::Uid::effective().is_root() || !Path::new("/bin/busybox").exists() {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    crate::testutil::busybox_rootfs(&rootfs, APPLETS);
    for d in ["proc", "dev", "sys/fs/cgroup", "work/dir"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::write(rootfs.join("work/probe"), "").unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("hosts"), "bound-from-a-0700-dir\n").unwrap();
    for d in [dir.path(), &private] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let mut holder = Command::new("unshare")
        .args(["-U", "sleep", "60"])
        .spawn()
        .unwrap();
    let userns = format!("/proc/{}/ns/user", holder.id());
    let ino = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    while ino(&userns) == ino("/proc/self/ns/user") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{}/{file}", holder.id());
        std::fs::write(path, "0 1000 100000\n").unwrap();
    }
    let parent = format!("crius-userns-test-{}", std::process::id());
    let script = "cat /proc/self/uid_map; id -u; id -g; ls /dev/null; cat /work/probe";
    let bundle = write_bundle(dir.path(), &["sh", "-c", script], &format!("{parent}/u"));
    let mut spec = Spec::load(bundle.join("config.json")).unwrap();
    let mut mounts = spec.mounts().clone().unwrap();
    let bind = MountBuilder::default()
        .destination("/work/probe")
        .typ("bind")
        .source(private.join("hosts"))
        .options(vec!["rbind".into(), "ro".into()])
        .build()
        .unwrap();
    mounts.push(bind);
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    let user = oci_spec::runtime::LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::User)
        .path(&userns)
        .build()
        .unwrap();
    namespaces.push(user);
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let mut process = spec.process().clone().unwrap();
    let mut user = process.user().clone();
    user.set_uid(0);
    user.set_gid(0);
    user.set_additional_gids(None);
    process.set_user(user);
    spec.set_process(Some(process));
    spec.save(bundle.join("config.json")).unwrap();
    let (reader, stdio) = piped_stdio();
    let root = Path::new(CGROUP_ROOT);
    let opts = CreateOptions {
        id: "u",
        bundle: &bundle,
        stdio,
        cgroup_root: root,
    };
    let created = create(opts);
    let out = created.map(|c| {
        let pid = c.pid;
        c.start().unwrap();
        (read_all(reader), wait_exit(pid))
    });
    let _ = destroy(&bundle, root);
    let _ = (holder.kill(), holder.wait());
    cgroups::manager(root, &parent).unwrap().destroy().unwrap();
    let (out, code) = out.unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(code, 0, "output: {out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    let want = "0 1000 100000 0 0 /dev/null bound-from-a-0700-dir";
    assert_eq!(words.join(" "), want, "{out}");
}
