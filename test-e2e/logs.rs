//! CRI log files: ReopenContainerLog after kubelet rotates a container's log.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;
use std::time::Duration;
use tonic::Code;

const WITHIN: Duration = Duration::from_secs(10);

/// kubelet renames the log file, then asks for a reopen: what the container writes
/// afterwards lands in a new file at the old path, nothing of it in the rotated one.
#[tokio::test]
async fn reopened_log_continues_in_a_new_file() {
    if !preflight("reopen_container_log", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "logs");
    let pod_id = run_pod(&mut rt, &pod).await;
    // "after" only once /tmp/go exists, which the test creates after the reopen.
    let script = "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; \
                  echo after; exec sleep 1000";
    let c = container_config("rotated", BUSYBOX, &["sh", "-c", script]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let log = log_path(&pod, &c);
    wait_log_line(&log, "stdout", "before", WITHIN).await;

    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotating the log");
    let reopen = |container_id: String| ReopenContainerLogRequest { container_id };
    rt.reopen_container_log(reopen(id.clone()))
        .await
        .expect("ReopenContainerLog");
    exec(&mut rt, &id, &["touch", "/tmp/go"], 10)
        .await
        .expect("exec touch");
    wait_log_line(&log, "stdout", "after", WITHIN).await;
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    let new = std::fs::read_to_string(&log).expect("new log");
    assert!(
        old.contains("before") && !old.contains("after"),
        "rotated: {old}"
    );
    assert!(!new.contains("before"), "new: {new}");

    // Stopped: an error, and the CRI says no new file may appear then.
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("StopContainer");
    std::fs::remove_file(&log).expect("removing the log");
    let r = rt.reopen_container_log(reopen(id.clone())).await;
    assert_eq!(code(&r), Code::FailedPrecondition, "{r:?}");
    assert!(!log.exists(), "no new log file after a refused reopen");
    d.teardown().await;
}
