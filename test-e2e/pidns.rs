//! Namespace modes: a PID namespace shared by the pod (held by the pod init, across a
//! daemon restart), one joined from a target container, the host's PID, IPC and network
//! namespaces, and the combinations that are refused without leaving anything behind.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use std::fs;
use std::time::Duration;
use tonic::Code;

/// The pod init's name in `ps` (`monitor/podinit.rs`).
const POD_INIT: &str = "crius-pod-init";

/// What a helper needs of a running pod.
struct Pod<'a> {
    id: &'a str,
    config: &'a PodSandboxConfig,
    image: &'a str,
}

fn set_pod_modes(pod: &mut PodSandboxConfig, network: NamespaceMode, pid: NamespaceMode) {
    let linux = pod.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: network as i32,
        ..Default::default()
    });
}

/// A daemon with busybox pulled, a pod (with `modes` for its network/ipc and pid, if
/// given) and its first container "a" (`sleep 1001`, with its own pid mode if given).
struct Setup {
    d: Daemon,
    rt: Runtime,
    busybox: String,
    pod: PodSandboxConfig,
    pod_id: String,
    a_id: String,
}

async fn setup(
    name: &str,
    modes: Option<(NamespaceMode, NamespaceMode)>,
    a_pid: Option<NamespaceMode>,
) -> Setup {
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pod = pod_config(&d, name);
    if let Some((network, pid)) = modes {
        set_pod_modes(&mut pod, network, pid);
    }
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut a = container_config("a", &busybox, &["sleep", "1001"]);
    if let Some(pid) = a_pid {
        a = with_modes(a, &pod, pid);
    }
    let a_id = create_and_start(&mut rt, &pod_id, &pod, &a).await;
    Setup {
        d,
        rt,
        busybox,
        pod,
        pod_id,
        a_id,
    }
}

/// A container with explicit namespace options, as kubelet sends them.
fn with_modes(
    mut c: ContainerConfig,
    pod: &PodSandboxConfig,
    pid: NamespaceMode,
) -> ContainerConfig {
    let pod_opts = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let linux = c.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(NamespaceOption {
        pid: pid as i32,
        ..pod_opts
    });
    c
}

fn with_target(c: ContainerConfig, pod: &PodSandboxConfig, target: &str) -> ContainerConfig {
    let mut c = with_modes(c, pod, NamespaceMode::Target);
    let sc = c.linux.as_mut().and_then(|l| l.security_context.as_mut());
    if let Some(o) = sc.and_then(|s| s.namespace_options.as_mut()) {
        o.target_id = target.into();
    }
    c
}

/// What `cmd` prints in the container; it must succeed.
async fn output(rt: &mut Runtime, id: &str, cmd: &[&str]) -> String {
    let r = exec(rt, id, cmd, 10)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"));
    assert_eq!(r.exit_code, 0, "{cmd:?}: {r:?}");
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// `/proc/self/ns/<name>` in the container, e.g. `pid:[4026531836]`.
async fn ns_of(rt: &mut Runtime, id: &str, name: &str) -> String {
    let link = format!("/proc/self/ns/{name}");
    output(rt, id, &["readlink", &link])
        .await
        .trim()
        .to_string()
}

fn host_ns(name: &str) -> String {
    let link = fs::read_link(format!("/proc/self/ns/{name}")).expect("host namespace");
    link.to_string_lossy().into_owned()
}

/// The host pid of the pod init whose PID namespace is `pid_ns`.
fn pod_init_pid(pid_ns: &str) -> Option<u32> {
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        (comm.trim() == POD_INIT && ns.to_string_lossy() == pid_ns).then_some(pid)
    })
}

fn is_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie is dead too; its parent (the monitor) reaps it.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, s)| s.trim_start().starts_with('Z')),
    }
}

/// `a` (sleep 1001) and `b` (sleep 1002) see each other and the pod init as PID 1, which
/// sits in the pod's network namespace; returns the pod init's host pid.
async fn share_one_namespace(rt: &mut Runtime, a_id: &str, b_id: &str) -> u32 {
    let ps = output(rt, b_id, &["ps"]).await;
    assert!(
        ps.contains("sleep 1001") && ps.contains("sleep 1002"),
        "{ps}"
    );
    let ps = output(rt, a_id, &["ps"]).await;
    assert!(ps.contains("sleep 1002"), "{ps}");
    let init = output(rt, a_id, &["cat", "/proc/1/comm"]).await;
    assert_eq!(init.trim(), POD_INIT);
    let pid_ns = ns_of(rt, a_id, "pid").await;
    assert_eq!(pid_ns, ns_of(rt, b_id, "pid").await);
    assert_ne!(pid_ns, host_ns("pid"));
    let init_pid = pod_init_pid(&pid_ns).expect("the pod init on the host");
    let init_net = fs::read_link(format!("/proc/{init_pid}/ns/net")).unwrap();
    assert_eq!(init_net.to_string_lossy(), ns_of(rt, a_id, "net").await);
    init_pid
}

/// pid POD: both containers see each other's processes, PID 1 is the pod init (which
/// sits in the pod's network namespace), a container created after a daemon restart
/// joins the same namespace, and stopping the pod ends the pod init.
#[tokio::test]
async fn pidns_pod_shared() {
    if !preflight("pidns_pod_shared", true) {
        return;
    }
    let pod_modes = Some((NamespaceMode::Pod, NamespaceMode::Pod));
    let Setup {
        mut d,
        mut rt,
        busybox,
        pod,
        pod_id,
        a_id,
    } = setup("pidpod", pod_modes, Some(NamespaceMode::Pod)).await;
    // No options of its own: it follows the pod's pid mode.
    let mut b = container_config("b", &busybox, &["sleep", "1002"]);
    b.linux = Some(LinuxContainerConfig::default());
    let b_id = create_and_start(&mut rt, &pod_id, &pod, &b).await;

    let init_pid = share_one_namespace(&mut rt, &a_id, &b_id).await;
    let shared = Pod {
        id: &pod_id,
        config: &pod,
        image: &busybox,
    };
    leftovers_end_with_init(&mut rt, &shared, &a_id).await;
    drop(rt);

    // The pod init belongs to the monitor, not the daemon.
    d.kill9();
    d.restart().await;
    let mut rt = d.runtime().await;
    assert!(!is_gone(init_pid), "the pod init died with the daemon");
    let c = container_config("c", &busybox, &["sleep", "1003"]);
    let c_id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let ps = output(&mut rt, &c_id, &["ps"]).await;
    assert!(ps.contains("sleep 1001") && ps.contains(POD_INIT), "{ps}");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    assert!(is_gone(init_pid), "the pod init outlived StopPodSandbox");
    let st = wait_state(
        &mut rt,
        &b_id,
        ContainerState::ContainerExited,
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(st.exit_code, 0, "{st:?}");
    d.teardown().await;
}

/// In a shared namespace the kernel does not end a container's other processes with its
/// init; the monitor does, so a stopped container leaves nothing running.
async fn leftovers_end_with_init(rt: &mut Runtime, pod: &Pod<'_>, peer: &str) {
    let cmd = ["sh", "-c", "sleep 1004 & sleep 1005"];
    let d = container_config("d", pod.image, &cmd);
    let d_id = create_and_start(rt, pod.id, pod.config, &d).await;
    let ps = output(rt, peer, &["ps"]).await;
    assert!(ps.contains("sleep 1004"), "{ps}");
    rt.stop_container(StopContainerRequest {
        container_id: d_id,
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let ps = output(rt, peer, &["ps"]).await;
    assert!(
        !ps.contains("sleep 1004"),
        "left running after its init: {ps}"
    );
}

/// A pod init killed from outside takes the namespace and its containers along; the
/// monitor then shuts the pod down, which becomes NotReady with its container exited.
#[tokio::test]
async fn pidns_pod_init_killed() {
    if !preflight("pidns_pod_init_killed", true) {
        return;
    }
    // "a" has no options of its own: it follows the pod's pid mode.
    let pod_modes = Some((NamespaceMode::Node, NamespaceMode::Pod));
    let Setup {
        d,
        mut rt,
        pod_id,
        a_id,
        ..
    } = setup("pidkilled", pod_modes, None).await;
    let pid_ns = ns_of(&mut rt, &a_id, "pid").await;
    let init_pid = pod_init_pid(&pid_ns).expect("the pod init on the host");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pod_status(&mut rt, &pod_id).await.state != PodSandboxState::SandboxNotready as i32 {
        assert!(std::time::Instant::now() < deadline, "pod still Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = container_status(&mut rt, &a_id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    d.teardown().await;
}

/// pid TARGET: the container joins a running container's namespace, whose init is its
/// PID 1; an absent, a stopped or a missing target is refused and leaves nothing.
#[tokio::test]
async fn pidns_target() {
    if !preflight("pidns_target", true) {
        return;
    }
    let Setup {
        d,
        mut rt,
        busybox,
        pod,
        pod_id,
        a_id,
    } = setup("pidtarget", None, Some(NamespaceMode::Container)).await;
    let b = container_config("b", &busybox, &["sleep", "1002"]);
    let b_id = create_and_start(&mut rt, &pod_id, &pod, &with_target(b, &pod, &a_id)).await;

    let ps = output(&mut rt, &b_id, &["ps"]).await;
    assert!(
        ps.contains("sleep 1001") && ps.contains("sleep 1002"),
        "{ps}"
    );
    let init = output(&mut rt, &b_id, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(init, "sleep\u{0}1001\u{0}");
    assert_eq!(
        ns_of(&mut rt, &a_id, "pid").await,
        ns_of(&mut rt, &b_id, "pid").await
    );
    // The target's own namespace stays private to it and its joiners.
    let ps = output(&mut rt, &a_id, &["ps"]).await;
    assert!(!ps.contains(POD_INIT), "{ps}");

    let target = Pod {
        id: &pod_id,
        config: &pod,
        image: &busybox,
    };
    refused_targets(&mut rt, &target, &a_id, &b_id).await;
    d.teardown().await;
}

/// A target that is absent (NotFound), not named (InvalidArgument) or no longer running
/// (FailedPrecondition) is refused and leaves no container; `a` is stopped on the way,
/// which ends `b`, its joiner.
async fn refused_targets(rt: &mut Runtime, pod: &Pod<'_>, a_id: &str, b_id: &str) {
    let refused = |name: &str, target: &str| {
        let c = container_config(name, pod.image, &["sleep", "1"]);
        with_target(c, pod.config, target)
    };
    let cases = [
        (refused("absent", &"f".repeat(64)), Code::NotFound),
        (refused("untargeted", ""), Code::InvalidArgument),
    ];
    for (cfg, want) in cases {
        let r = create(rt, pod.id, pod.config, &cfg).await;
        assert_eq!(code(&r), want, "{r:?}");
    }
    rt.stop_container(StopContainerRequest {
        container_id: a_id.to_string(),
        timeout: 1,
    })
    .await
    .expect("StopContainer");
    let r = create(rt, pod.id, pod.config, &refused("late", a_id)).await;
    assert_eq!(code(&r), Code::FailedPrecondition, "{r:?}");
    // The target's namespace ended with its init, and the joiner with it.
    wait_state(
        rt,
        b_id,
        ContainerState::ContainerExited,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        list_containers(rt).await.len(),
        2,
        "a refusal left a container"
    );
}

/// pid, ipc and network NODE: the container sees the host's processes and has the
/// node's namespaces and hostname, with no CNI at all.
#[tokio::test]
async fn pidns_node() {
    if !preflight("pidns_node", true) {
        return;
    }
    let pod_modes = Some((NamespaceMode::Node, NamespaceMode::Node));
    let Setup {
        d, mut rt, a_id, ..
    } = setup("pidnode", pod_modes, Some(NamespaceMode::Node)).await;
    for name in ["pid", "ipc", "net", "uts"] {
        assert_eq!(ns_of(&mut rt, &a_id, name).await, host_ns(name), "{name}");
    }
    let daemon = d.pid().expect("daemon pid");
    let comm_path = format!("/proc/{daemon}/comm");
    let comm = output(&mut rt, &a_id, &["cat", &comm_path]).await;
    assert_eq!(
        comm,
        fs::read_to_string(&comm_path).unwrap(),
        "the daemon, seen inside"
    );
    let host = nix::unistd::gethostname().unwrap();
    let hostname = output(&mut rt, &a_id, &["hostname"]).await;
    assert_eq!(hostname.trim(), host.to_string_lossy());
    d.teardown().await;
}

/// Combinations no pod or container can have are InvalidArgument, and neither the pod
/// nor the container is left behind.
#[tokio::test]
async fn pidns_invalid() {
    if !preflight("pidns_invalid", true) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let bad_pods: [fn(&mut NamespaceOption); 3] = [
        |o| o.pid = NamespaceMode::Target as i32,
        |o| o.ipc = 7,
        |o| o.target_id = "f".repeat(64),
    ];
    for (n, mutate) in bad_pods.iter().enumerate() {
        let mut pod = pod_config(&d, &format!("bad{n}"));
        let sc = pod.linux.as_mut().and_then(|l| l.security_context.as_mut());
        mutate(sc.and_then(|s| s.namespace_options.as_mut()).unwrap());
        let r = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod),
                runtime_handler: String::new(),
            })
            .await;
        assert_eq!(code(&r), Code::InvalidArgument, "pod {n}: {r:?}");
    }
    assert!(list_pods(&mut rt, None).await.is_empty());

    // A pod without a shared PID namespace.
    let pod = pod_config(&d, "pidbad");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = || container_config("c", &busybox, &["sleep", "1"]);
    let mut unknown = with_modes(c(), &pod, NamespaceMode::Container);
    let sc = unknown
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut());
    sc.and_then(|s| s.namespace_options.as_mut()).unwrap().pid = 9;
    let mut target_net = with_target(c(), &pod, "");
    let sc = target_net
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut());
    let o = sc.and_then(|s| s.namespace_options.as_mut()).unwrap();
    (o.pid, o.network) = (
        NamespaceMode::Container as i32,
        NamespaceMode::Target as i32,
    );
    for cfg in [
        with_modes(c(), &pod, NamespaceMode::Pod),
        unknown,
        target_net,
    ] {
        let r = create(&mut rt, &pod_id, &pod, &cfg).await;
        assert_eq!(code(&r), Code::InvalidArgument, "{cfg:?}: {r:?}");
    }
    assert!(list_containers(&mut rt).await.is_empty());
    // The refused name is free again.
    create(&mut rt, &pod_id, &pod, &c())
        .await
        .expect("CreateContainer after refusals");
    d.teardown().await;
}
