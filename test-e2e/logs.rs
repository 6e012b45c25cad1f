//! CRI log files: ReopenContainerLog after kubelet rotates a container's log; long lines
//! split at the configured size.

use crate::fixtures::*;
use crate::harness::{Daemon, Options, preflight};
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

/// A line longer than `max_container_log_line_size` is written as full-size `P` pieces
/// and an `F` remainder, which kubelet joins back.
#[tokio::test]
async fn long_lines_split_at_the_configured_size() {
    if !preflight("long_log_lines", true) {
        return;
    }
    let d = Daemon::start_with(Options {
        network: true,
        max_log_line: Some(100),
        ..Options::default()
    })
    .await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "longlines");
    let pod_id = run_pod(&mut rt, &pod).await;
    let script = "printf '%0250d\\nshort\\n' 0; exec sleep 1000";
    let c = container_config("long", BUSYBOX, &["sh", "-c", script]);
    create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let log = log_path(&pod, &c);
    wait_log_line(&log, "stdout", "short", WITHIN).await;
    let lines = parse_log(&std::fs::read_to_string(&log).expect("log"));
    let pieces: Vec<(bool, usize)> = lines.iter().map(|l| (l.full, l.content.len())).collect();
    assert_eq!(pieces, [(false, 100), (false, 100), (true, 50), (true, 5)]);
    d.teardown().await;
}
