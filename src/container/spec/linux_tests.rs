//! Table tests for the Linux section: namespaces, resources, sysctls, capabilities.

use k8s_cri::v1::{LinuxContainerResources, LinuxPodSandboxConfig, NamespaceMode, NamespaceOption};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::tests::{Fixture, NS_IPC, NS_NET, NS_PID, NS_USER, NS_UTS, linux, strings};
use super::*;
use crate::error::{Classify, Kind};

/// Sets namespace options on both the pod and the container config, as kubelet does.
fn set_namespace_options(f: &mut Fixture, opts: Option<NamespaceOption>) {
    f.security().namespace_options = opts.clone();
    let linux = f.sandbox.linux.get_or_insert_with(Default::default);
    linux
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options = opts;
}

fn ns_options(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    }
}

#[test]
fn pod_options_decide_network_and_ipc() {
    use NamespaceMode::*;
    // A host-network, host-IPC pod whose container config carries no options: the
    // container must not be pointed at pod namespaces that were never created.
    let mut f = Fixture::new();
    set_namespace_options(&mut f, Some(ns_options(Node, Container, Node)));
    f.security().namespace_options = None;
    let spec = f.generate().expect("spec");
    let types: Vec<_> = linux(&spec)
        .namespaces()
        .as_ref()
        .expect("namespaces")
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Mount]
    );
}

#[test]
fn namespace_options() {
    use LinuxNamespaceType::*;
    use NamespaceMode::*;
    type Expected = &'static [(LinuxNamespaceType, Option<&'static str>)];
    let cases: &[(Option<NamespaceOption>, Expected)] = &[
        (
            None,
            &[
                (Pid, None),
                (Ipc, Some(NS_IPC)),
                (Uts, Some(NS_UTS)),
                (Network, Some(NS_NET)),
                (Mount, None),
            ],
        ),
        (
            Some(ns_options(Pod, Container, Pod)),
            &[
                (Pid, None),
                (Ipc, Some(NS_IPC)),
                (Uts, Some(NS_UTS)),
                (Network, Some(NS_NET)),
                (Mount, None),
            ],
        ),
        (
            Some(ns_options(Node, Container, Pod)),
            &[(Pid, None), (Ipc, Some(NS_IPC)), (Mount, None)],
        ),
        (
            Some(ns_options(Pod, Node, Node)),
            &[(Uts, Some(NS_UTS)), (Network, Some(NS_NET)), (Mount, None)],
        ),
    ];
    for (opts, want) in cases {
        let mut f = Fixture::new();
        set_namespace_options(&mut f, opts.clone());
        let spec = f.generate().expect("spec");
        let got: Vec<_> = linux(&spec)
            .namespaces()
            .as_ref()
            .expect("namespaces")
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect();
        let want: Vec<_> = want.iter().map(|(t, p)| (*t, p.map(Into::into))).collect();
        assert_eq!(got, want, "options {opts:?}");
        let host_net = opts.as_ref().is_some_and(|o| o.network == Node as i32);
        assert_eq!(spec.hostname().is_none(), host_net);
    }

    for opts in [
        // TARGET without a resolved target, TARGET for the network.
        ns_options(Pod, Target, Pod),
        ns_options(Target, Container, Pod),
        ns_options(Pod, Container, Target),
    ] {
        let mut f = Fixture::new();
        set_namespace_options(&mut f, Some(opts.clone()));
        let err = f.generate().expect_err("invalid");
        assert_eq!(err.kind(), Kind::InvalidArgument, "{opts:?}: {err}");
    }
}

#[test]
fn container_options_are_checked_even_where_the_pod_decides() {
    use NamespaceMode::*;
    let with_target_id = NamespaceOption {
        target_id: "c2".into(),
        ..ns_options(Pod, Container, Pod)
    };
    let unknown_pid = NamespaceOption {
        pid: 9,
        ..ns_options(Pod, Container, Pod)
    };
    for opts in [
        ns_options(Target, Container, Pod),
        ns_options(Pod, Container, Target),
        with_target_id,
        unknown_pid,
    ] {
        let mut f = Fixture::new();
        set_namespace_options(&mut f, Some(ns_options(Pod, Container, Pod)));
        f.security().namespace_options = Some(opts.clone());
        let err = check_namespace_options(&f.config, &f.sandbox).expect_err("invalid");
        assert_eq!(err.kind(), Kind::InvalidArgument, "{opts:?}: {err}");
    }
}

fn pid_namespace(f: &Fixture) -> Result<Option<Option<String>>, SpecError> {
    let spec = f.generate()?;
    let namespaces = linux(&spec).namespaces().clone().expect("namespaces");
    Ok(namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
        .map(|n| n.path().as_ref().map(|p| p.display().to_string())))
}

#[test]
fn pid_namespace_modes() {
    use NamespaceMode::*;
    let with = |pod: NamespaceMode, container: Option<NamespaceMode>| {
        let mut f = Fixture::new();
        set_namespace_options(&mut f, Some(ns_options(Pod, pod, Pod)));
        f.security().namespace_options = container.map(|c| ns_options(Pod, c, Pod));
        f
    };
    let pod_ns = Some(Some(NS_PID.to_string()));
    // The pod's namespace, also when the container sends no options of its own.
    assert_eq!(pid_namespace(&with(Pod, Some(Pod))).unwrap(), pod_ns);
    assert_eq!(pid_namespace(&with(Pod, None)).unwrap(), pod_ns);
    // Its own in a pod that shares one; the host's; the pod's only if the pod has one.
    assert_eq!(
        pid_namespace(&with(Pod, Some(Container))).unwrap(),
        Some(None)
    );
    assert_eq!(pid_namespace(&with(Node, None)).unwrap(), None);
    assert_eq!(pid_namespace(&with(Container, Some(Node))).unwrap(), None);
    let err = pid_namespace(&with(Container, Some(Pod))).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{err}");
    // TARGET joins the path the container manager resolved.
    let mut f = with(Container, Some(Target));
    f.target_pid = Some("/proc/42/ns/pid");
    let got = pid_namespace(&f).unwrap();
    assert_eq!(got, Some(Some("/proc/42/ns/pid".to_string())));
    f.target_pid = None;
    assert_eq!(pid_namespace(&f).unwrap_err().kind(), Kind::InvalidArgument);
    // An unknown mode is refused, not read as a default.
    let mut f = with(Container, None);
    f.security().namespace_options = Some(NamespaceOption {
        pid: 9,
        ..Default::default()
    });
    assert_eq!(pid_namespace(&f).unwrap_err().kind(), Kind::InvalidArgument);
}

#[test]
fn resources_mapping() {
    let mut f = Fixture::new();
    *f.resources() = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        ..Default::default()
    };
    let spec = f.generate().expect("spec");
    let res = linux(&spec).resources().as_ref().expect("resources");
    let cpu = res.cpu().as_ref().expect("cpu");
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(512), Some(50_000), Some(100_000))
    );
    assert_eq!(
        (cpu.cpus().as_deref(), cpu.mems().as_deref()),
        (Some("0-1"), Some("0"))
    );
    let mem = res.memory().as_ref().expect("memory");
    assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(64 << 20)));
    let devices = res.devices().as_ref().expect("device rules");
    assert!(!devices[0].allow(), "first rule denies every device");

    f.resources().memory_swap_limit_in_bytes = 128 << 20;
    let spec = f.generate().expect("spec");
    let mem = linux(&spec).resources().as_ref().and_then(|r| *r.memory());
    assert_eq!(mem.and_then(|m| m.swap()), Some(128 << 20));

    let empty = Fixture::new().generate().expect("spec");
    let res = linux(&empty).resources().as_ref().expect("resources");
    assert!(res.cpu().is_none() && res.memory().is_none());

    let mut only_oom = Fixture::new();
    only_oom.resources().oom_score_adj = -10;
    let spec = only_oom.generate().expect("spec");
    let res = linux(&spec).resources().as_ref().expect("resources");
    assert!(res.cpu().is_none() && res.memory().is_none());

    for bad in [
        |r: &mut LinuxContainerResources| r.cpu_shares = -1,
        |r: &mut LinuxContainerResources| r.memory_limit_in_bytes = -5,
        |r: &mut LinuxContainerResources| r.oom_score_adj = 1001,
    ] {
        let mut f = Fixture::new();
        bad(f.resources());
        assert!(matches!(
            f.generate(),
            Err(SpecError::Input(
                crate::validation::InputError::Invalid { .. }
            ))
        ));
    }
}

#[test]
fn sysctls_only_namespaced() {
    use NamespaceMode::*;
    let cases: &[(&str, Option<NamespaceOption>, bool)] = &[
        ("net.ipv4.ip_forward", None, true),
        ("net/ipv4/ip_forward", None, true),
        ("net/ipv4/conf/eth0.100/rp_filter", None, true),
        ("kernel.shm_rmid_forced", None, true),
        ("kernel.msgmax", None, true),
        ("kernel.sem", None, true),
        ("fs.mqueue.msg_max", None, true),
        ("kernel.hostname", None, false),
        ("vm.swappiness", None, false),
        ("kernel.semfoo", None, false),
        (
            "net.core.somaxconn",
            Some(ns_options(Node, Container, Pod)),
            false,
        ),
        (
            "kernel.shmmax",
            Some(ns_options(Pod, Container, Node)),
            false,
        ),
        (
            "kernel.shmmax",
            Some(ns_options(Node, Container, Pod)),
            true,
        ),
    ];
    for (key, opts, ok) in cases {
        let mut f = Fixture::new();
        let mut linux_cfg = LinuxPodSandboxConfig::default();
        linux_cfg.sysctls.insert(key.to_string(), "1".into());
        f.sandbox.linux = Some(linux_cfg);
        set_namespace_options(&mut f, opts.clone());
        match f.generate() {
            Ok(spec) => {
                assert!(ok, "{key} should be rejected");
                let sysctl = linux(&spec).sysctl().clone().unwrap_or_default();
                let want = super::linux::dotted(key);
                assert_eq!(sysctl.get(&want).map(String::as_str), Some("1"), "{key}");
            }
            Err(e) => {
                assert!(!ok, "{key} should be accepted: {e}");
                assert_eq!(e.kind(), Kind::InvalidArgument);
            }
        }
    }
}

#[test]
fn sysctl_names_take_dots_between_parts() {
    assert_eq!(
        super::linux::dotted("net/ipv4/ip_forward"),
        "net.ipv4.ip_forward"
    );
    assert_eq!(
        super::linux::dotted("net/ipv4/conf/eth0.100/rp_filter"),
        "net.ipv4.conf.eth0/100.rp_filter"
    );
    assert_eq!(super::linux::dotted("kernel.shmmax"), "kernel.shmmax");
}

#[test]
fn masked_and_readonly_paths_and_privileged_mounts() {
    let paths = |spec: &Spec| {
        let l = linux(spec);
        (
            l.masked_paths().clone().unwrap_or_default(),
            l.readonly_paths().clone().unwrap_or_default(),
        )
    };
    // No security context: the defaults.
    let (masked, readonly) = paths(&Fixture::new().generate().expect("spec"));
    assert!(masked.contains(&"/proc/kcore".to_string()));
    assert!(readonly.contains(&"/proc/sys".to_string()));

    // A context's lists as they are: kubelet's Unmasked procMount sends empty ones.
    let mut f = Fixture::new();
    f.security().masked_paths = strings(&["/bin/ls"]);
    let (masked, readonly) = paths(&f.generate().expect("spec"));
    assert_eq!(masked, strings(&["/bin/ls"]));
    assert!(readonly.is_empty());

    let mut f = Fixture::new();
    f.security().privileged = true;
    f.security().masked_paths = strings(&["/proc/kcore"]);
    let spec = f.generate().expect("spec");
    for dest in ["/sys", "/sys/fs/cgroup"] {
        let opts = super::tests::mount(&spec, dest)
            .and_then(|m| m.options().clone())
            .unwrap_or_default();
        assert!(opts.contains(&"rw".to_string()) && !opts.contains(&"ro".to_string()));
    }
    assert_eq!(paths(&spec), (Vec::new(), Vec::new()));
    let rules = linux(&spec)
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].allow() && rules[0].major().is_none() && rules[0].minor().is_none());
}

#[test]
fn pids_limit_from_unified() {
    let cases: &[(&str, Option<i64>, bool)] = &[
        ("100", Some(100), true),
        ("max", None, true),
        ("0", None, false),
        ("-1", None, false),
        ("lots", None, false),
    ];
    for (value, want, ok) in cases {
        let mut f = Fixture::new();
        let res = f
            .config
            .linux
            .get_or_insert_with(Default::default)
            .resources
            .get_or_insert_with(Default::default);
        res.unified.insert("pids.max".into(), value.to_string());
        match f.generate() {
            Ok(spec) => {
                assert!(ok, "{value} should be rejected");
                let got = linux(&spec)
                    .resources()
                    .as_ref()
                    .and_then(|r| r.pids().as_ref().map(|p| p.limit()));
                assert_eq!(got, *want, "{value}");
            }
            Err(e) => {
                assert!(!ok, "{value} should be accepted: {e}");
                assert_eq!(e.kind(), Kind::InvalidArgument);
            }
        }
    }
}

/// A pod with its own user namespace: containers join it first, and the spec carries the
/// mappings (informational for a joined namespace, as runc reads them).
#[test]
fn pod_user_namespace_is_joined_first_with_its_mappings() {
    let map = k8s_cri::v1::IdMapping {
        host_id: 1000,
        container_id: 0,
        length: 100000,
    };
    let mut opts = ns_options(
        NamespaceMode::Pod,
        NamespaceMode::Container,
        NamespaceMode::Pod,
    );
    opts.userns_options = Some(k8s_cri::v1::UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![map],
        gids: vec![map],
    });
    let mut f = Fixture::new();
    set_namespace_options(&mut f, Some(opts));
    f.config.mounts = vec![k8s_cri::v1::Mount {
        container_path: "/data".into(),
        host_path: "/host/data".into(),
        ..Default::default()
    }];
    let spec = f.generate().expect("spec");
    // Volumes are id-mapped through the pod's user namespace; the pod files are not.
    let volume = super::tests::mount(&spec, "/data").expect("volume");
    assert!(super::tests::options(volume).contains(&"ridmap".to_string()));
    let hosts = super::tests::mount(&spec, "/etc/hosts").expect("hosts");
    assert!(!super::tests::options(hosts).contains(&"ridmap".to_string()));
    let first = &linux(&spec).namespaces().as_ref().expect("namespaces")[0];
    assert_eq!(first.typ(), LinuxNamespaceType::User);
    assert_eq!(first.path().as_deref(), Some(std::path::Path::new(NS_USER)));
    for maps in [linux(&spec).uid_mappings(), linux(&spec).gid_mappings()] {
        let m = &maps.as_ref().expect("mappings")[0];
        assert_eq!((m.container_id(), m.host_id(), m.size()), (0, 1000, 100000));
    }
    let mut f = Fixture::new();
    set_namespace_options(&mut f, None);
    f.config.mounts = vec![k8s_cri::v1::Mount {
        container_path: "/data".into(),
        host_path: "/host/data".into(),
        ..Default::default()
    }];
    let spec = f.generate().expect("spec");
    assert!(linux(&spec).uid_mappings().is_none());
    let volume = super::tests::mount(&spec, "/data").expect("volume");
    assert!(!super::tests::options(volume).contains(&"ridmap".to_string()));
}

#[test]
fn the_runtime_default_apparmor_profile_reaches_the_process() {
    let mut f = Fixture::new();
    f.host.apparmor = true;
    f.host.apparmor_default = DefaultProfile::Loaded("crius-default".into());
    f.security().apparmor = Some(k8s_cri::v1::SecurityProfile {
        profile_type: k8s_cri::v1::security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let spec = f.generate().unwrap();
    assert_eq!(
        super::tests::process(&spec).apparmor_profile().as_deref(),
        Some("crius-default")
    );
    f.host.apparmor_default = DefaultProfile::Unavailable("no parser".into());
    assert_eq!(f.generate().unwrap_err().kind(), Kind::FailedPrecondition);
}
