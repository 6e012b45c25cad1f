//! How a container's end is reported: the OOM killer's victims; the signal that stops it.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;
use std::time::Duration;

/// A container over its memory limit is reported as critest and kubelet expect:
/// `OOMKilled`, exit code 137. One that exits 137 by itself is not.
#[tokio::test]
async fn oom_killed_container() {
    if !preflight("oom_killed_container", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "oom");
    let pod_id = run_pod(&mut rt, &pod).await;

    // critest's container: a 20 MiB buffer under a 15 MiB limit (swap included).
    let mut hog = container_config(
        "hog",
        BUSYBOX,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=20M"],
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 15 << 20,
            memory_swap_limit_in_bytes: 15 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create_and_start(&mut rt, &pod_id, &pod, &hog).await;
    let within = Duration::from_secs(30);
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, within).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );

    let killed = container_config("killed", BUSYBOX, &["sh", "-c", "exit 137"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &killed).await;
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, within).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "Error"), "{st:?}");
    d.teardown().await;
}

/// CRI `stop_signal` wins over the image's: the container's trap sees SIGUSR1, and its
/// status reports the signal. An unknown signal is refused at create.
#[tokio::test]
async fn stop_signal_from_cri() {
    if !preflight("stop_signal_from_cri", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "stopsignal");
    let pod_id = run_pod(&mut rt, &pod).await;
    let script = "trap 'exit 42' USR1; echo ready; while true; do sleep 0.1; done";
    let mut c = container_config("trap", BUSYBOX, &["sh", "-c", script]);
    c.stop_signal = Signal::Sigusr1 as i32;
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    assert_eq!(
        container_status(&mut rt, &id).await.stop_signal,
        Signal::Sigusr1 as i32
    );
    wait_log_line(
        &log_path(&pod, &c),
        "stdout",
        "ready",
        Duration::from_secs(10),
    )
    .await;
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 10,
    })
    .await
    .expect("StopContainer");
    let st = container_status(&mut rt, &id).await;
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 42)
    );

    let mut bad = container_config("bad", BUSYBOX, &["true"]);
    bad.stop_signal = 999;
    let err = create(&mut rt, &pod_id, &pod, &bad)
        .await
        .expect_err("bad signal");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(list_containers(&mut rt).await.len(), 1);
    d.teardown().await;
}
