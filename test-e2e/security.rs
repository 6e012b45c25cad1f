//! The security context as seen from inside the container: capability sets for root and
//! non-root users, privileged containers (the daemon's whole bounding set, host devices,
//! nothing masked), and refusals that leave nothing behind.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use tonic::Code;

/// docker's and containerd's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: u64 = 0xa804_25fb;
const NET_BIND_SERVICE: u64 = 1 << 10;

/// The hex mask of `field` (CapEff, CapBnd, ...) in a /proc status text.
fn cap_field(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line.trim(), 16).expect("hex mask")
}

fn security(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    let linux = c.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default)
}

fn caps(add: &[&str], drop: &[&str], ambient: &[&str]) -> Option<Capability> {
    let own = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Some(Capability {
        add_capabilities: own(add),
        drop_capabilities: own(drop),
        add_ambient_capabilities: own(ambient),
    })
}

/// Starts `c` and returns its init's /proc status (the container has its own PID
/// namespace, so its init is pid 1).
async fn init_status(
    rt: &mut Runtime,
    pod_id: &str,
    pod: &PodSandboxConfig,
    c: &ContainerConfig,
) -> (String, String) {
    let id = create_and_start(rt, pod_id, pod, c).await;
    let (code, out) = sh(rt, &id, "cat /proc/1/status").await;
    assert_eq!(code, 0, "{out}");
    (id, out)
}

#[tokio::test]
async fn capability_sets_inside_the_container() {
    if !preflight("capability_sets_inside_the_container", true) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "caps");
    let pod_id = run_pod(&mut rt, &pod).await;
    let host_bounding = cap_field(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd",
    );

    let mut cases: Vec<(&str, ContainerConfig, [u64; 4])> = Vec::new();
    let base = |name| container_config(name, &busybox, &["sleep", "1000"]);
    cases.push((
        "default",
        base("default"),
        [DEFAULT_CAPS, DEFAULT_CAPS, 0, 0],
    ));
    let mut c = base("restricted");
    security(&mut c).capabilities = caps(&["NET_BIND_SERVICE"], &["ALL"], &[]);
    cases.push((
        "drop ALL, add one",
        c,
        [NET_BIND_SERVICE, NET_BIND_SERVICE, 0, 0],
    ));
    let mut c = base("all");
    security(&mut c).capabilities = caps(&["ALL"], &[], &[]);
    cases.push(("add ALL", c, [host_bounding, host_bounding, 0, 0]));
    let mut c = base("nonroot");
    security(&mut c).run_as_user = Some(Int64Value { value: 1000 });
    cases.push(("non-root", c, [0, DEFAULT_CAPS, 0, 0]));
    let mut c = base("ambient");
    security(&mut c).run_as_user = Some(Int64Value { value: 1000 });
    security(&mut c).capabilities = caps(&[], &[], &["NET_BIND_SERVICE"]);
    let amb = NET_BIND_SERVICE;
    cases.push(("non-root ambient", c, [amb, DEFAULT_CAPS, amb, amb]));

    for (what, c, [eff, bnd, inh, amb]) in cases {
        let (_, status) = init_status(&mut rt, &pod_id, &pod, &c).await;
        let got = ["CapEff", "CapBnd", "CapInh", "CapAmb"].map(|f| cap_field(&status, f));
        assert_eq!(got, [eff, bnd, inh, amb], "{what}: {status}");
    }
    d.teardown().await;
}

#[tokio::test]
async fn privileged_container_gets_the_daemons_capabilities_and_host_devices() {
    if !preflight(
        "privileged_container_gets_the_daemons_capabilities_and_host_devices",
        true,
    ) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "privileged");
    let pod_id = run_pod(&mut rt, &pod).await;
    let host_bounding = cap_field(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd",
    );

    let mut c = container_config("priv", &busybox, &["sleep", "1000"]);
    security(&mut c).privileged = true;
    // kubelet sends the default masked paths; privileged ignores them.
    security(&mut c).masked_paths = vec!["/proc/timer_list".into()];
    // Privileged ignores the seccomp profile, as kubelet documents.
    security(&mut c).seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let (id, status) = init_status(&mut rt, &pod_id, &pod, &c).await;
    assert!(status.contains("Seccomp:\t0\n"), "{status}");
    assert_eq!(cap_field(&status, "CapEff"), host_bounding, "{status}");
    assert_eq!(cap_field(&status, "CapBnd"), host_bounding, "{status}");
    let checks = [
        // A host device outside the default allow list: present and usable.
        ("test -c /dev/kmsg && head -c0 /dev/kmsg", 0, ""),
        ("grep ' /sys ' /proc/mounts", 0, " rw,"),
        ("head -c1 /proc/timer_list | wc -c", 0, "1"),
    ];
    for (script, code, says) in checks {
        let (got, out) = sh(&mut rt, &id, script).await;
        assert_eq!(got, code, "{script}: {out}");
        assert!(out.contains(says), "{script}: {out}");
    }

    let mut c = container_config("plain", &busybox, &["sleep", "1000"]);
    security(&mut c).masked_paths = vec!["/proc/timer_list".into()];
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let (got, out) = sh(
        &mut rt,
        &id,
        "test -e /dev/kmsg || echo absent; head -c1 /proc/timer_list | wc -c",
    )
    .await;
    assert_eq!(
        (got, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["absent", "0"])
    );
    d.teardown().await;
}

#[tokio::test]
async fn bad_security_contexts_are_refused() {
    if !preflight("bad_security_contexts_are_refused", true) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "refused");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut group_only = container_config("group", &busybox, &["true"]);
    security(&mut group_only).run_as_group = Some(Int64Value { value: 5 });
    let mut unknown = container_config("unknown", &busybox, &["true"]);
    security(&mut unknown).capabilities = caps(&["CAP_NOPE"], &[], &[]);
    // This host has no AppArmor: a profile cannot be honoured, so it is refused.
    let mut apparmor = container_config("apparmor", &busybox, &["true"]);
    security(&mut apparmor).apparmor = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::Localhost as i32,
        localhost_ref: "crius-test".into(),
    });
    // RuntimeDefault too: kubelet only sends it where AppArmor is enabled.
    let mut runtime_default = container_config("apparmor-default", &busybox, &["true"]);
    security(&mut runtime_default).apparmor = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let no_apparmor = !std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    let mut cases = vec![(group_only, "run_as_group"), (unknown, "CAP_NOPE")];
    if no_apparmor {
        cases.push((apparmor, "AppArmor is not enabled"));
        cases.push((runtime_default, "AppArmor is not enabled"));
    }
    for (c, says) in cases {
        let err = create(&mut rt, &pod_id, &pod, &c)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(says), "{err}");
        assert!(list_containers(&mut rt).await.is_empty());
        assert!(crate::mounts::container_mounts(&d).is_empty());
    }
    // Bad user namespace mappings and modes are named as such; every refusal leaves
    // nothing behind (the teardown checks mounts, pins, processes and cgroups).
    let map = |container_id, host_id, length| IdMapping {
        host_id,
        container_id,
        length,
    };
    let one = || vec![map(0, 1000, 100000)];
    let pod = NamespaceMode::Pod;
    let cases = [
        (pod, vec![], one(), "needs one mapping"),
        (
            pod,
            vec![map(0, 1000, 10), map(10, 5000, 10)],
            one(),
            "only one mapping",
        ),
        (pod, one(), vec![map(1, 1000, 100000)], "container id 0"),
        (pod, one(), vec![map(0, 1000, 0)], "must not be 0"),
        (NamespaceMode::Container, one(), one(), "POD or NODE"),
        (NamespaceMode::Target, one(), one(), "POD or NODE"),
        // As kubelet: not with the node's network (the Node mode below).
        (pod, one(), one(), "cannot share the node's network"),
    ];
    for (mode, uids, gids, says) in cases {
        let mut userns_pod = pod_config(&d, "userns");
        let linux = userns_pod.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        let host_network = says.contains("node's network");
        let network = if host_network {
            NamespaceMode::Node
        } else {
            pod
        };
        sc.namespace_options = Some(NamespaceOption {
            network: network as i32,
            userns_options: Some(UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }),
            ..Default::default()
        });
        let err = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(userns_pod),
                runtime_handler: String::new(),
            })
            .await
            .expect_err("userns refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(says), "{says}: {err}");
        assert_eq!(list_pods(&mut rt, None).await.len(), 1);
    }
    assert_eq!(list_pods(&mut rt, None).await.len(), 1);
    d.teardown().await;
}

#[tokio::test]
async fn the_effective_user_is_reported_and_held() {
    if !preflight("the_effective_user_is_reported_and_held", true) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "user");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut c = container_config("user", &busybox, &["sleep", "1000"]);
    let sc = security(&mut c);
    sc.run_as_user = Some(Int64Value { value: 1000 });
    sc.run_as_group = Some(Int64Value { value: 5 });
    sc.supplemental_groups = vec![1234];
    sc.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let (code, out) = sh(&mut rt, &id, "id -u; id -g; id -G").await;
    assert_eq!((code, out.as_str()), (0, "1000\n5\n5 1234\n"));
    let user = container_status(&mut rt, &id)
        .await
        .user
        .and_then(|u| u.linux);
    assert_eq!(
        user,
        Some(LinuxContainerUser {
            uid: 1000,
            gid: 5,
            supplemental_groups: vec![5, 1234],
        })
    );
    d.teardown().await;
}

/// The host pid of a running container, from its verbose status.
async fn host_pid(rt: &mut Runtime, id: &str) -> i64 {
    let r = rt
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .expect("verbose ContainerStatus")
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&r.info["info"]).expect("info JSON");
    info["pid"].as_i64().expect("pid")
}

#[tokio::test]
async fn a_container_cannot_reach_the_daemon_or_another_pod() {
    if !preflight("a_container_cannot_reach_the_daemon_or_another_pod", true) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let victim_pod = host_network_pod(&d, "victim");
    let victim_pod_id = run_pod(&mut rt, &victim_pod).await;
    let victim = container_config(
        "victim",
        &busybox,
        &["sh", "-c", "echo s > /tmp/secret; sleep 1000"],
    );
    let victim = create_and_start(&mut rt, &victim_pod_id, &victim_pod, &victim).await;
    let victim_pid = host_pid(&mut rt, &victim).await;

    // With the host's PID namespace (baseline pod security forbids it) a container sees
    // every process, but the daemon holds capabilities it lacks, so ptrace access checks
    // keep it out of the daemon's root and fds. It could read a container's root running
    // with the same uid and capabilities, as under containerd: hostPID is privileged.
    let pod = host_network_pod(&d, "prober");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut c = container_config("hostpid", &busybox, &["sleep", "1000"]);
    security(&mut c).namespace_options = Some(NamespaceOption {
        pid: NamespaceMode::Node as i32,
        ..Default::default()
    });
    let host_pid_prober = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let c = container_config("plain", &busybox, &["sleep", "1000"]);
    let prober = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let daemon = d.pid().expect("daemon pid");
    let (state, socket) = (d.paths.root.display(), d.paths.socket.display());
    let probes = [
        (&host_pid_prober, format!("ls /proc/{daemon}/root/")),
        (&host_pid_prober, format!("cat /proc/{daemon}/environ")),
        (&host_pid_prober, format!("readlink /proc/{daemon}/fd/0")),
        (&host_pid_prober, format!("ls {state}")),
        (&host_pid_prober, format!("nc -U {socket} </dev/null")),
        (&prober, format!("cat /proc/{victim_pid}/root/tmp/secret")),
        (&prober, "ls /run/crius /var/lib/crius".to_string()),
    ];
    for (id, probe) in probes {
        let (code, out) = sh(&mut rt, id, &probe).await;
        assert_ne!(code, 0, "{probe} worked: {out}");
    }
    // The least permissions that work: roots traversable only, state root's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let (root, run) = (&d.paths.root, &d.paths.run_root);
    assert_eq!(mode(&d.paths.socket), 0o660);
    for (dir, want) in [
        (root.clone(), 0o711),
        (run.clone(), 0o711),
        (root.join("pods"), 0o700),
        (root.join("containers"), 0o700),
        (run.join("cni-results"), 0o700),
    ] {
        assert_eq!(mode(&dir), want, "{}", dir.display());
    }
    d.teardown().await;
}
