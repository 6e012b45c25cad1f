//! Failure injection: RunPodSandbox and CreateContainer that fail half way roll back
//! everything they acquired (the leak check sees nothing), and the same request then
//! succeeds. Failures come from a CNI plugin that fails its first ADD, from the daemon's
//! fault points (src/fault.rs, debug builds), and from a container whose executable does
//! not exist (the runtime's create fails in the monitor).

use crate::fixtures::*;
use crate::harness::{Daemon, Options, Runtime, preflight};
use crate::leaks;
use k8s_cri::v1::*;
use tonic::Code;

async fn try_run_pod(rt: &mut Runtime, config: &PodSandboxConfig) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

/// What the daemon holds beyond `except` (an object's id): must be nothing.
fn held_beyond(d: &Daemon, except: &str) -> Vec<String> {
    leaks::find(&d.scope())
        .into_iter()
        .filter(|l| except.is_empty() || !l.contains(except))
        .collect()
}

/// A failed RunPodSandbox leaves nothing, and the same request then succeeds.
async fn pod_fails_then_succeeds(d: &Daemon, rt: &mut Runtime, pod: &PodSandboxConfig) {
    let err = try_run_pod(rt, pod)
        .await
        .expect_err("the injected failure");
    assert_ne!(err.code(), Code::Ok);
    let left = held_beyond(d, "");
    assert!(left.is_empty(), "after {err}, left: {left:?}");
    assert!(
        list_pods(rt, None).await.is_empty(),
        "a failed pod is not listed"
    );
}

#[tokio::test]
async fn failed_cni_add_rolls_back_the_bridge_and_a_retry_succeeds() {
    if !preflight("rollback_cni", false) {
        return;
    }
    let d = Daemon::start_with(Options {
        network: true,
        failing_cni: true,
        ..Options::default()
    })
    .await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "cni-fails");
    pod_fails_then_succeeds(&d, &mut rt, &pod).await;
    let id = run_pod(&mut rt, &pod).await;
    let ip = pod_status(&mut rt, &id)
        .await
        .network
        .unwrap_or_default()
        .ip;
    assert!(ip.starts_with(crate::harness::SUBNET_PREFIX), "ip {ip:?}");
    d.teardown().await;
}

#[tokio::test]
async fn failed_pod_setup_steps_roll_back_and_a_retry_succeeds() {
    if !preflight("rollback_pod", false) {
        return;
    }
    let d = Daemon::start_with(Options {
        network: true,
        faults: "pod-cgroup:1,monitor-spawn:1",
        ..Options::default()
    })
    .await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "setup-fails");
    // First the pod cgroup step fails (namespaces already pinned), then the monitor
    // spawn (after CNI ADD attached a veth): both are undone.
    pod_fails_then_succeeds(&d, &mut rt, &pod).await;
    pod_fails_then_succeeds(&d, &mut rt, &pod).await;
    let id = run_pod(&mut rt, &pod).await;
    assert_eq!(
        pod_status(&mut rt, &id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    d.teardown().await;
}

#[tokio::test]
async fn failed_container_creation_rolls_back_and_a_retry_succeeds() {
    if !preflight("rollback_container", true) {
        return;
    }
    let d = Daemon::start_with(Options {
        network: false,
        faults: "overlay-mount:1",
        ..Options::default()
    })
    .await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pod = pod_config(&d, "ctr-fails");
    host_network(&mut pod);
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("main", BUSYBOX, &["sleep", "60"]);

    // The overlay mount fails; then the runtime's create fails in the monitor for a
    // container whose executable does not exist.
    let err = create(&mut rt, &pod_id, &pod, &c)
        .await
        .expect_err("injected");
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(
        held_beyond(&d, &pod_id).is_empty(),
        "{:?}",
        held_beyond(&d, &pod_id)
    );
    let missing = container_config("missing", BUSYBOX, &["/no/such/binary"]);
    let err = create(&mut rt, &pod_id, &pod, &missing)
        .await
        .expect_err("no binary");
    assert!(err.message().contains("/no/such/binary"), "{err}");
    assert!(
        held_beyond(&d, &pod_id).is_empty(),
        "{:?}",
        held_beyond(&d, &pod_id)
    );
    assert!(list_containers(&mut rt).await.is_empty());

    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let st = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    d.teardown().await;
}
