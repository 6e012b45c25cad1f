//! Table tests for spec generation: each case changes one part of a baseline request.

use std::path::Path;

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, Mount as CriMount, MountPropagation, PodSandboxConfig,
    PodSandboxMetadata,
};
use oci_spec::image::{Config as ImageConfig, ImageConfiguration};
use oci_spec::runtime::{Mount, Spec};

use super::*;
use crate::container::volumes::ResolvedDevice;
use crate::error::{Classify, Kind};

const ROOTFS: &str = "/run/crius/c1/rootfs";
pub(super) const NS_NET: &str = "/run/crius/ns/net-p1";
pub(super) const NS_IPC: &str = "/run/crius/ns/ipc-p1";
pub(super) const NS_UTS: &str = "/run/crius/ns/uts-p1";
pub(super) const NS_PID: &str = "/run/crius/ns/pid-p1";
pub(super) const NS_USER: &str = "/run/crius/ns/user-p1";
const HOSTS: &str = "/run/crius/p1/hosts";
const RESOLV: &str = "/run/crius/p1/resolv.conf";
const HOSTNAME: &str = "/run/crius/p1/hostname";

pub(super) struct Fixture {
    pub(super) config: ContainerConfig,
    pub(super) sandbox: PodSandboxConfig,
    pub(super) image: ImageConfig,
    pub(super) user: ResolvedUser,
    pub(super) mount_sources: Vec<std::path::PathBuf>,
    pub(super) devices: Vec<ResolvedDevice>,
    /// Like this test host: every capability but SYS_RESOURCE, no AppArmor or SELinux.
    pub(super) host: super::Host,
    /// The resolved PID namespace of a TARGET container.
    pub(super) target_pid: Option<&'static str>,
    pub(super) seccomp: seccomp::Loaded,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let mut image = ImageConfig::default();
        image.set_cmd(Some(vec!["/bin/sh".into()]));
        Fixture {
            config: ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            sandbox: PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "pod".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                hostname: "pod-host".into(),
                ..Default::default()
            },
            image,
            user: ResolvedUser {
                uid: 1000,
                gid: 100,
                additional_gids: vec![100, 44],
            },
            mount_sources: Vec::new(),
            devices: Vec::new(),
            host: super::Host {
                capabilities: super::capabilities::from_names(
                    crate::runtime::CAPABILITY_NAMES
                        .iter()
                        .copied()
                        .filter(|n| *n != "SYS_RESOURCE"),
                ),
                ..Default::default()
            },
            target_pid: None,
            seccomp: seccomp::Loaded::unconfined(),
        }
    }

    pub(super) fn generate(&self) -> Result<Spec, SpecError> {
        let mut image = ImageConfiguration::default();
        image.set_config(Some(self.image.clone()));
        generate(&SpecInput {
            sandbox_id: "p1",
            config: &self.config,
            sandbox: &self.sandbox,
            image: &image,
            image_ref: "docker.io/library/busybox:latest",
            rootfs: Path::new(ROOTFS),
            namespaces: NamespacePaths {
                net: Path::new(NS_NET),
                ipc: Path::new(NS_IPC),
                uts: Path::new(NS_UTS),
                pid: Path::new(NS_PID),
                user: Path::new(NS_USER),
                target_pid: self.target_pid.map(Path::new),
            },
            cgroups_path: "crius/pod-p1/c1",
            pod_files: PodFiles {
                resolv_conf: Path::new(RESOLV),
                hosts: Path::new(HOSTS),
                hostname: Path::new(HOSTNAME),
            },
            user: &self.user,
            mount_sources: &self.mount_sources,
            devices: &self.devices,
            host: &self.host,
            seccomp: &self.seccomp,
        })
    }

    pub(super) fn security(&mut self) -> &mut LinuxContainerSecurityContext {
        self.linux()
            .security_context
            .get_or_insert_with(Default::default)
    }

    pub(super) fn resources(&mut self) -> &mut LinuxContainerResources {
        self.linux().resources.get_or_insert_with(Default::default)
    }

    fn linux(&mut self) -> &mut LinuxContainerConfig {
        self.config.linux.get_or_insert_with(Default::default)
    }
}

pub(super) fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub(super) fn process(spec: &Spec) -> &oci_spec::runtime::Process {
    spec.process().as_ref().expect("process")
}

pub(super) fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
    spec.linux().as_ref().expect("linux")
}

pub(super) fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
    let mounts = spec.mounts().as_ref().expect("mounts");
    mounts.iter().find(|m| m.destination() == Path::new(dest))
}

pub(super) fn options(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

#[test]
fn command_follows_kubelet_rules() {
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        Option<&'static [&'static str]>,
        Option<&'static [&'static str]>,
        Option<&'static [&'static str]>,
    );
    // (cri command, cri args, image entrypoint, image cmd, expected args or None = error)
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (
            &["a"],
            &["b"],
            Some(&["ep"]),
            Some(&["cmd"]),
            Some(&["a", "b"]),
        ),
        (&["a"], &[], Some(&["ep"]), Some(&["cmd"]), Some(&["a"])),
        (
            &[],
            &["b"],
            Some(&["ep"]),
            Some(&["cmd"]),
            Some(&["ep", "b"]),
        ),
        (
            &[],
            &[],
            Some(&["ep", "-x"]),
            Some(&["cmd"]),
            Some(&["ep", "-x", "cmd"]),
        ),
        (&[], &[], None, Some(&["cmd", "1"]), Some(&["cmd", "1"])),
        (&[], &["b"], None, Some(&["cmd"]), Some(&["b"])),
        (&[], &[], Some(&["ep"]), None, Some(&["ep"])),
        (&[], &[], None, None, None),
        (&[], &[], Some(&[]), Some(&[]), None),
    ];
    for (command, args, entrypoint, cmd, want) in cases {
        let mut f = Fixture::new();
        f.config.command = strings(command);
        f.config.args = strings(args);
        f.image.set_entrypoint(entrypoint.map(strings));
        f.image.set_cmd(cmd.map(strings));
        let got = f.generate();
        match want {
            Some(want) => {
                let spec = got.expect("spec");
                assert_eq!(process(&spec).args().as_deref(), Some(&strings(want)[..]));
            }
            None => {
                let err = got.expect_err("no command");
                assert!(matches!(err, SpecError::NoCommand));
                assert_eq!(err.kind(), Kind::InvalidArgument);
            }
        }
    }
}

#[test]
fn env_cri_overrides_image_and_path_defaults() {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: v.into(),
    };
    let cases: &[(&[&str], Vec<KeyValue>, &[&str])] = &[
        (
            &["PATH=/x", "A=1", "B=2"],
            vec![kv("A", "3"), kv("C", "4")],
            &["HOSTNAME=pod-host", "PATH=/x", "A=3", "B=2", "C=4"],
        ),
        (&[], vec![], &[DEFAULT_PATH_ENV, "HOSTNAME=pod-host"]),
        (
            &["A=1"],
            vec![kv("PATH", "/bin"), kv("A", "")],
            &["HOSTNAME=pod-host", "A=", "PATH=/bin"],
        ),
        (
            &["HOSTNAME=img"],
            vec![],
            &[DEFAULT_PATH_ENV, "HOSTNAME=img"],
        ),
    ];
    for (image_env, envs, want) in cases {
        let mut f = Fixture::new();
        f.image.set_env(Some(strings(image_env)));
        f.config.envs = envs.clone();
        let spec = f.generate().expect("spec");
        assert_eq!(process(&spec).env().as_deref(), Some(&strings(want)[..]));
    }
}

#[test]
fn working_dir_falls_back_to_image_then_root() {
    let cases = [
        ("/cri", Some("/img"), "/cri"),
        ("", Some("/img"), "/img"),
        ("", Some(""), "/"),
        ("", None, "/"),
    ];
    for (cri, image, want) in cases {
        let mut f = Fixture::new();
        f.config.working_dir = cri.into();
        f.image.set_working_dir(image.map(str::to_string));
        let spec = f.generate().expect("spec");
        assert_eq!(process(&spec).cwd(), Path::new(want));
    }
}

#[test]
fn process_user_root_and_basics() {
    let mut f = Fixture::new();
    f.security().readonly_rootfs = true;
    f.security().no_new_privs = true;
    f.resources().oom_score_adj = 500;
    let spec = f.generate().expect("spec");
    let p = process(&spec);
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[100, 44][..]));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.oom_score_adj(), Some(500));
    assert_eq!(p.rlimits(), &None);
    let root = spec.root().as_ref().expect("root");
    assert_eq!(
        (root.path().as_path(), root.readonly()),
        (Path::new(ROOTFS), Some(true))
    );
    assert_eq!(spec.hostname().as_deref(), Some("pod-host"));
    assert_eq!(
        linux(&spec).cgroups_path().as_deref(),
        Some(Path::new("crius/pod-p1/c1"))
    );
    // A read-only rootfs makes the pod files read-only too.
    assert!(options(mount(&spec, "/etc/hosts").expect("hosts")).contains(&"ro".to_string()));
}

#[test]
fn default_mounts_and_pod_files() {
    let spec = Fixture::new().generate().expect("spec");
    let dests: Vec<_> = spec
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    let want = [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ];
    assert_eq!(dests, want);
    let hosts = mount(&spec, "/etc/hosts").expect("hosts");
    assert_eq!(hosts.source().as_deref(), Some(Path::new(HOSTS)));
    assert_eq!(options(hosts), strings(&["rbind", "rprivate", "rw"]));
    assert!(options(mount(&spec, "/sys").expect("sys")).contains(&"ro".to_string()));
}

fn cri_mount(container: &str, host: &str, readonly: bool, prop: MountPropagation) -> CriMount {
    CriMount {
        container_path: container.into(),
        host_path: host.into(),
        readonly,
        propagation: prop as i32,
        ..Default::default()
    }
}

#[test]
fn cri_mount_options_and_rootfs_propagation() {
    use MountPropagation::*;
    let cases = [
        (false, PropagationPrivate, ["rbind", "rprivate", "rw"], None),
        (true, PropagationPrivate, ["rbind", "rprivate", "ro"], None),
        (
            false,
            PropagationHostToContainer,
            ["rbind", "rslave", "rw"],
            Some("rslave"),
        ),
        (
            true,
            PropagationBidirectional,
            ["rbind", "rshared", "ro"],
            Some("rshared"),
        ),
    ];
    for (readonly, prop, want, rootfs_prop) in cases {
        let mut f = Fixture::new();
        f.config.mounts = vec![cri_mount("/data", "/host/data", readonly, prop)];
        let spec = f.generate().expect("spec");
        let m = mount(&spec, "/data").expect("data mount");
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.source().as_deref(), Some(Path::new("/host/data")));
        assert_eq!(options(m), strings(&want));
        assert_eq!(linux(&spec).rootfs_propagation().as_deref(), rootfs_prop);
    }

    let mut f = Fixture::new();
    f.config.mounts = vec![cri_mount("/x", "/h", false, PropagationPrivate)];
    f.config.mounts[0].propagation = 7;
    assert!(matches!(
        f.generate(),
        Err(SpecError::Input(
            crate::validation::InputError::Invalid { .. }
        ))
    ));
}

#[test]
fn cri_mounts_override_defaults_and_are_ordered_by_depth() {
    let mut f = Fixture::new();
    let private = MountPropagation::PropagationPrivate;
    f.config.mounts = vec![
        cri_mount("/a/b/c", "/h/abc", false, private),
        cri_mount("/etc/hosts", "/h/hosts", true, private),
        cri_mount("/a", "/h/a", false, private),
        cri_mount("/dev/", "/h/dev", false, private),
    ];
    let spec = f.generate().expect("spec");
    let hosts: Vec<_> = spec
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .filter(|m| m.destination() == Path::new("/etc/hosts"))
        .collect();
    assert_eq!(hosts.len(), 1, "the CRI mount replaces the pod file");
    assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/h/hosts")));
    assert!(
        mount(&spec, "/dev/pts").is_none(),
        "a CRI /dev drops /dev/*"
    );
    assert!(mount(&spec, "/dev/shm").is_none());
    assert!(mount(&spec, "/etc/resolv.conf").is_some());
    let order: Vec<_> = spec
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .filter(|m| m.source().as_ref().is_some_and(|s| s.starts_with("/h")))
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    assert_eq!(order, ["/a", "/dev/", "/etc/hosts", "/a/b/c"]);
}

#[test]
fn recursive_read_only_is_rro() {
    let mut f = Fixture::new();
    let mut m = cri_mount("/data", "/h", true, MountPropagation::PropagationPrivate);
    m.recursive_read_only = true;
    f.config.mounts = vec![m];
    let spec = f.generate().expect("spec");
    let m = mount(&spec, "/data").expect("data");
    assert_eq!(options(m), strings(&["rbind", "rprivate", "rro"]));
}

#[test]
fn resolved_sources_replace_host_paths_whatever_the_order() {
    let mut f = Fixture::new();
    let private = MountPropagation::PropagationPrivate;
    f.config.mounts = vec![
        cri_mount("/a/b", "/link/ab", false, private),
        cri_mount("/img", "", true, private),
        cri_mount("/a", "/link/a", false, private),
    ];
    f.mount_sources = ["/real/ab", "/bundle/volumes/1", "/real/a"]
        .map(std::path::PathBuf::from)
        .to_vec();
    let spec = f.generate().expect("spec");
    let source = |dest| mount(&spec, dest).and_then(|m| m.source().clone());
    assert_eq!(source("/a/b").as_deref(), Some(Path::new("/real/ab")));
    assert_eq!(
        source("/img").as_deref(),
        Some(Path::new("/bundle/volumes/1"))
    );
    assert_eq!(source("/a").as_deref(), Some(Path::new("/real/a")));
    let img = mount(&spec, "/img").expect("img");
    assert_eq!(options(img), strings(&["rbind", "rprivate", "ro"]));
}

#[test]
fn devices_and_their_cgroup_rules() {
    let mut f = Fixture::new();
    f.devices = vec![ResolvedDevice {
        container_path: "/dev/fuse0".into(),
        typ: 'c',
        major: 10,
        minor: 229,
        file_mode: 0o666,
        uid: 0,
        gid: 0,
        permissions: "rw".into(),
    }];
    let spec = f.generate().expect("spec");
    let devices = linux(&spec).devices().clone().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].path(), Path::new("/dev/fuse0"));
    assert_eq!((devices[0].major(), devices[0].minor()), (10, 229));
    let rules = linux(&spec)
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    let last = rules.last().expect("a rule");
    assert!(last.allow());
    assert_eq!((last.major(), last.minor()), (Some(10), Some(229)));
    assert_eq!(last.access().as_deref(), Some("rw"));
    assert!(!rules[0].allow(), "deny all comes first");
    let none = Fixture::new().generate().expect("spec");
    assert!(linux(&none).devices().is_none());
}

#[test]
fn annotations_ours_win() {
    let mut f = Fixture::new();
    f.config.annotations.insert("user/key".into(), "v".into());
    f.config
        .annotations
        .insert(ANNOTATION_SANDBOX_ID.into(), "spoofed".into());
    let spec = f.generate().expect("spec");
    let a = spec.annotations().clone().unwrap_or_default();
    let get = |k: &str| a.get(k).map(String::as_str);
    assert_eq!(get("user/key"), Some("v"));
    assert_eq!(get(ANNOTATION_SANDBOX_ID), Some("p1"));
    assert_eq!(get(ANNOTATION_CONTAINER_TYPE), Some("container"));
    assert_eq!(get(ANNOTATION_CONTAINER_NAME), Some("web"));
    assert_eq!(
        get(ANNOTATION_IMAGE_NAME),
        Some("docker.io/library/busybox:latest")
    );
    assert_eq!(get(ANNOTATION_SANDBOX_NAMESPACE), Some("default"));
}
