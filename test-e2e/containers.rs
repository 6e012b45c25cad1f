//! The container lifecycle: create, start, logs, exec, stop, remove; containers that exit
//! by themselves; image layers; rollback of a failed start.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use std::time::{Duration, Instant};
use tonic::Code;

const SECONDS_10: Duration = Duration::from_secs(10);

/// A daemon with busybox pulled and one ready pod.
struct PodFixture {
    d: Daemon,
    rt: Runtime,
    pod: PodSandboxConfig,
    pod_id: String,
    busybox_ref: String,
}

async fn pod_fixture(name: &str) -> PodFixture {
    let d = Daemon::start().await;
    let busybox_ref = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, name);
    let pod_id = run_pod(&mut rt, &pod).await;
    PodFixture {
        d,
        rt,
        pod,
        pod_id,
        busybox_ref,
    }
}

#[tokio::test]
async fn container_lifecycle() {
    if !preflight("container_lifecycle", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        busybox_ref,
    } = pod_fixture("lifecycle").await;
    // kubelet creates containers by the image id PullImage returned.
    let mut cfg = container_config(
        "main",
        &busybox_ref,
        &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"],
    );
    cfg.envs = vec![KeyValue {
        key: "GREETING".into(),
        value: "hi there".into(),
    }];
    cfg.working_dir = "/tmp".into();
    let id = create(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("CreateContainer");
    let st = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerCreated as i32, "{st:?}");
    assert_eq!(st.metadata, cfg.metadata);
    assert!(st.created_at > 0);
    let listed = list_containers(&mut rt).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].pod_sandbox_id, pod_id);

    start(&mut rt, &id).await.expect("StartContainer");
    list_filters(&mut rt, &id, &pod_id).await;
    let st = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    assert!(st.started_at >= st.created_at);
    let log = log_path(&pod, &cfg);
    assert_eq!(st.log_path, log.to_string_lossy());
    wait_log_line(&log, "stdout", "hello", SECONDS_10).await;
    wait_log_line(&log, "stderr", "oops", SECONDS_10).await;

    exec_checks(&mut rt, &id, &pod_id).await;

    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let st = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert!([137, 143].contains(&st.exit_code), "{st:?}");
    assert!(st.finished_at >= st.started_at);

    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    let gone = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await;
    assert_eq!(code(&gone), Code::NotFound);
    assert!(list_containers(&mut rt).await.is_empty());
    d.teardown().await;
}

async fn count(rt: &mut Runtime, filter: ContainerFilter) -> usize {
    rt.list_containers(ListContainersRequest {
        filter: Some(filter),
    })
    .await
    .expect("ListContainers")
    .into_inner()
    .containers
    .len()
}

async fn list_filters(rt: &mut Runtime, id: &str, pod_id: &str) {
    let state = |s: ContainerState| Some(ContainerStateValue { state: s as i32 });
    let pod = ContainerFilter {
        pod_sandbox_id: pod_id.into(),
        ..Default::default()
    };
    let cases = [
        (
            ContainerFilter {
                id: id.into(),
                ..Default::default()
            },
            1,
        ),
        // kubelet and crictl filter by unique id prefix too.
        (
            ContainerFilter {
                id: id[..12].into(),
                ..Default::default()
            },
            1,
        ),
        (pod.clone(), 1),
        (
            ContainerFilter {
                pod_sandbox_id: "0".repeat(64),
                ..Default::default()
            },
            0,
        ),
        (
            ContainerFilter {
                state: state(ContainerState::ContainerRunning),
                ..pod.clone()
            },
            1,
        ),
        (
            ContainerFilter {
                state: state(ContainerState::ContainerExited),
                ..pod.clone()
            },
            0,
        ),
        (
            ContainerFilter {
                label_selector: labels(&[("container", "main")]),
                ..pod.clone()
            },
            1,
        ),
        (
            ContainerFilter {
                label_selector: labels(&[("container", "x")]),
                ..pod
            },
            0,
        ),
    ];
    for (filter, want) in cases {
        let got = count(rt, filter.clone()).await;
        assert_eq!(got, want, "ListContainers {filter:?}");
    }
}

async fn exec_checks(rt: &mut Runtime, id: &str, pod_id: &str) {
    let r = exec(rt, id, &["echo", "hi"], 0)
        .await
        .expect("ExecSync echo");
    assert_eq!((r.stdout.as_slice(), r.exit_code), (&b"hi\n"[..], 0));
    let r = exec(rt, id, &["sh", "-c", "echo err >&2; exit 3"], 0)
        .await
        .expect("ExecSync exit 3");
    assert_eq!((r.stderr.as_slice(), r.exit_code), (&b"err\n"[..], 3));
    let r = exec(rt, id, &["sh", "-c", "echo \"$GREETING\"; pwd"], 0)
        .await
        .expect("ExecSync env");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "hi there\n/tmp\n");

    // The container is in the pod's network namespace.
    let ip = pod_status(rt, pod_id)
        .await
        .network
        .map(|n| n.ip)
        .unwrap_or_default();
    let r = exec(rt, id, &["ip", "-4", "addr", "show", "eth0"], 0)
        .await
        .expect("ExecSync ip addr");
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains(&format!("inet {ip}/")),
        "pod IP {ip} not on eth0: {out}"
    );

    let started = Instant::now();
    let r = exec(rt, id, &["sleep", "10"], 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ExecSync with timeout 1 s took {:?}",
        started.elapsed()
    );
    if let Ok(resp) = &r {
        assert_ne!(
            resp.exit_code, 0,
            "a timed-out exec cannot succeed: {resp:?}"
        );
    }
    let r = exec(rt, id, &["/no/such/binary"], 0).await;
    assert!(
        r.as_ref().map_or(true, |resp| resp.exit_code != 0),
        "exec of a missing binary: {r:?}"
    );
}

#[tokio::test]
async fn container_exits_by_itself() {
    if !preflight("container_exits_by_itself", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        ..
    } = pod_fixture("exits").await;
    let failing = container_config("failing", BUSYBOX, &["sh", "-c", "echo done; exit 7"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &failing).await;
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    assert_eq!(st.exit_code, 7, "{st:?}");
    assert_eq!(st.reason, "Error", "{st:?}");
    assert!(st.finished_at > 0);
    wait_log_line(&log_path(&pod, &failing), "stdout", "done", SECONDS_10).await;

    let ok = container_config("ok", BUSYBOX, &["true"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &ok).await;
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (0, "Completed"),
        "{st:?}"
    );

    // A stop right after the start reaches the program's SIGTERM handler (exit 0), even
    // though it comes before the handler is installed (here, 0.3 s after the start): PID
    // 1 would drop it, and SIGKILL (137) would follow the grace period.
    let trap = "sleep 0.3; trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let trapping = container_config("trapping", BUSYBOX, &["sh", "-c", trap]);
    let trapping = create_and_start(&mut rt, &pod_id, &pod, &trapping).await;
    rt.stop_container(StopContainerRequest {
        container_id: trapping.clone(),
        timeout: 30,
    })
    .await
    .expect("StopContainer right after StartContainer");
    let st = container_status(&mut rt, &trapping).await;
    assert_eq!(st.exit_code, 0, "the handler ran, not SIGKILL: {st:?}");

    // Exec into an exited container fails; StopContainer on it is a no-op.
    let r = exec(&mut rt, &id, &["true"], 0).await;
    assert!(r.is_err(), "exec into an exited container: {r:?}");
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("StopContainer of an exited container");
    d.teardown().await;
}

#[tokio::test]
async fn image_layers_and_whiteouts() {
    if !preflight("image_layers_and_whiteouts", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        ..
    } = pod_fixture("layers").await;
    let mut images = d.images().await;
    pull(&mut images, LAYERS).await;
    pull(&mut images, E2E_BUSYBOX).await;
    let check = "test ! -e /etc/layer1-only && test ! -e /layer1-dir && cat /data/kept /data/added";
    let layered = container_config("layered", LAYERS, &["sh", "-c", check]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &layered).await;
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    assert_eq!(st.exit_code, 0, "whiteouts not applied: {st:?}");
    let log = log_path(&pod, &layered);
    wait_log_line(&log, "stdout", "kept", SECONDS_10).await;
    wait_log_line(&log, "stdout", "from layer 2", SECONDS_10).await;

    // Writes go to the container's own layer, not to the image.
    let writer = container_config(
        "writer",
        E2E_BUSYBOX,
        &["sh", "-c", "rm /bin/ls; echo x > /data-new"],
    );
    let id = create_and_start(&mut rt, &pod_id, &pod, &writer).await;
    wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    let reader = container_config(
        "reader",
        E2E_BUSYBOX,
        &["sh", "-c", "test -e /bin/ls && test ! -e /data-new"],
    );
    let id = create_and_start(&mut rt, &pod_id, &pod, &reader).await;
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    assert_eq!(
        st.exit_code, 0,
        "one container's writes are visible to another: {st:?}"
    );
    d.teardown().await;
}

/// A command missing from the image fails at Create or Start, and leaves nothing behind
/// once the container is removed.
#[tokio::test]
async fn failed_start_rolls_back() {
    if !preflight("failed_start_rolls_back", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        ..
    } = pod_fixture("rollback").await;
    let cfg = container_config("missing-cmd", BUSYBOX, &["/no/such/binary"]);
    match create(&mut rt, &pod_id, &pod, &cfg).await {
        Err(status) => assert_ne!(status.code(), Code::Ok),
        Ok(id) => {
            let r = start(&mut rt, &id).await;
            assert!(r.is_err(), "StartContainer of a missing command succeeded");
            let st = container_status(&mut rt, &id).await;
            assert_ne!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
            rt.remove_container(RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("RemoveContainer after a failed start");
        }
    }
    assert!(list_containers(&mut rt).await.is_empty());
    // The pod is still usable.
    let ok = container_config("after", BUSYBOX, &["true"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &ok).await;
    wait_state(&mut rt, &id, ContainerState::ContainerExited, SECONDS_10).await;
    d.teardown().await;
}

/// Containers of one pod share its network and hostname; stopping the pod stops them,
/// removing it removes them (CRI: running containers are forcibly terminated).
#[tokio::test]
async fn pod_stop_and_remove_take_containers_along() {
    if !preflight("pod_stop_and_remove_take_containers_along", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        ..
    } = pod_fixture("shared").await;
    let a = container_config("a", BUSYBOX, &["sleep", "1000"]);
    let b = container_config("b", BUSYBOX, &["sleep", "1000"]);
    let a = create_and_start(&mut rt, &pod_id, &pod, &a).await;
    let b = create_and_start(&mut rt, &pod_id, &pod, &b).await;
    let show = [
        "sh",
        "-c",
        "hostname; ip -4 -o addr show eth0 | awk '{print $4}'",
    ];
    let seen_a = exec(&mut rt, &a, &show, 0).await.expect("ExecSync in a");
    let seen_b = exec(&mut rt, &b, &show, 0).await.expect("ExecSync in b");
    let seen = String::from_utf8_lossy(&seen_a.stdout).into_owned();
    assert!(
        seen.starts_with("shared\n10.89.0."),
        "hostname and IP: {seen:?}"
    );
    assert_eq!(
        seen_a.stdout, seen_b.stdout,
        "containers of one pod see one network"
    );

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("StopPodSandbox with running containers");
    for id in [&a, &b] {
        let st = container_status(&mut rt, id).await;
        assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("RemovePodSandbox with containers");
    assert!(list_containers(&mut rt).await.is_empty());
    assert!(list_pods(&mut rt, None).await.is_empty());
    d.teardown().await;
}

/// RemovePodSandbox of a pod whose container is still running, without a stop first.
#[tokio::test]
async fn remove_running_pod() {
    if !preflight("remove_running_pod", true) {
        return;
    }
    let PodFixture {
        d,
        mut rt,
        pod,
        pod_id,
        ..
    } = pod_fixture("remove-running").await;
    let c = container_config("c", BUSYBOX, &["sleep", "1000"]);
    create_and_start(&mut rt, &pod_id, &pod, &c).await;
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("RemovePodSandbox of a running pod");
    assert!(list_containers(&mut rt).await.is_empty());
    assert!(list_pods(&mut rt, None).await.is_empty());
    d.teardown().await;
}
