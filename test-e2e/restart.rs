//! Restart survival: containers keep running while the daemon is dead, and exits that
//! happen meanwhile are recorded.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;
use std::time::Duration;

#[tokio::test]
async fn daemon_kill9_and_restart() {
    if !preflight("daemon_kill9_and_restart", true) {
        return;
    }
    let mut d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "restart");
    let pod_id = run_pod(&mut rt, &pod).await;
    let ip = pod_status(&mut rt, &pod_id).await.network.map(|n| n.ip);
    let sleeper = container_config("sleeper", BUSYBOX, &["sleep", "1000"]);
    let sleeper_id = create_and_start(&mut rt, &pod_id, &pod, &sleeper).await;
    let late = container_config("late", BUSYBOX, &["sh", "-c", "sleep 3; echo late; exit 5"]);
    let late_id = create_and_start(&mut rt, &pod_id, &pod, &late).await;
    drop(rt);

    d.kill9();
    tokio::time::sleep(Duration::from_secs(5)).await;
    d.restart().await;
    let mut rt = d.runtime().await;

    let st = pod_status(&mut rt, &pod_id).await;
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32, "{st:?}");
    assert_eq!(st.network.map(|n| n.ip), ip, "pod IP kept across restart");
    let listed = list_containers(&mut rt).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let st = container_status(&mut rt, &sleeper_id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    let st = container_status(&mut rt, &late_id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(st.exit_code, 5, "{st:?}");
    wait_log_line(
        &log_path(&pod, &late),
        "stdout",
        "late",
        Duration::from_secs(2),
    )
    .await;

    let r = exec(&mut rt, &sleeper_id, &["echo", "still here"], 0)
        .await
        .expect("ExecSync after restart");
    assert_eq!(r.stdout, b"still here\n");
    rt.stop_container(StopContainerRequest {
        container_id: sleeper_id.clone(),
        timeout: 1,
    })
    .await
    .expect("StopContainer after restart");
    let st = container_status(&mut rt, &sleeper_id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    d.teardown().await;
}

/// A pod whose monitor dies (OOM-killed, say) must stop being Ready so kubelet
/// recreates it, and must still stop and remove without leaks: the monitor's orphaned
/// container is killed through the pod cgroup.
#[tokio::test]
async fn monitor_killed() {
    if !preflight("monitor_killed", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "orphaned");
    let pod_id = run_pod(&mut rt, &pod).await;
    let sleeper = container_config("sleeper", BUSYBOX, &["sleep", "1000"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &sleeper).await;
    let monitors = crate::bench::monitors(&d);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let pid = nix::unistd::Pid::from_raw(monitors[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill monitor");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let st = pod_status(&mut rt, &pod_id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32, "{st:?}");
    let st = container_status(&mut rt, &id).await;
    assert_ne!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    d.teardown().await;
}
