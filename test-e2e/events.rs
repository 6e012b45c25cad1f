//! GetContainerEvents: what kubelet's Evented PLEG reads, from a real daemon.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use std::time::Duration;
use tonic::Streaming;

/// Runs until /tmp/go exists, then exits 3 by itself.
const WAIT_THEN_EXIT: &str = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3";

/// Only guards against a hang: every event is expected well before.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn subscribe(rt: &mut Runtime) -> Streaming<ContainerEventResponse> {
    rt.get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner()
}

/// The next event, or a panic if the stream ends or fails.
async fn next(events: &mut Streaming<ContainerEventResponse>) -> ContainerEventResponse {
    tokio::time::timeout(HANG_GUARD, events.message())
        .await
        .expect("no event within the hang guard")
        .expect("the event stream failed")
        .expect("the event stream ended")
}

/// Events until (and with) `id`'s event of type `until`.
async fn until(
    events: &mut Streaming<ContainerEventResponse>,
    id: &str,
    until: ContainerEventType,
) -> Vec<ContainerEventResponse> {
    let mut got = Vec::new();
    loop {
        let e = next(events).await;
        let done = e.container_id == id && e.container_event_type == until as i32;
        got.push(e);
        if done {
            return got;
        }
    }
}

fn kinds(events: &[ContainerEventResponse]) -> Vec<(String, i32)> {
    events
        .iter()
        .map(|e| (e.container_id.clone(), e.container_event_type))
        .collect()
}

fn status_of<'a>(e: &'a ContainerEventResponse, id: &str) -> Option<&'a ContainerStatus> {
    e.containers_statuses.iter().find(|s| s.id == id)
}

#[tokio::test]
async fn events_follow_a_pod_and_a_container_that_exits_by_itself() {
    if !preflight(
        "events_follow_a_pod_and_a_container_that_exits_by_itself",
        true,
    ) {
        return;
    }
    use ContainerEventType::*;
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut first = subscribe(&mut rt).await;
    let mut second = subscribe(&mut d.runtime().await).await;

    let pod = pod_config(&d, "events");
    let pod_id = run_pod(&mut rt, &pod).await;
    let quitter = container_config("quitter", BUSYBOX, &["sh", "-c", WAIT_THEN_EXIT]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &quitter).await;
    let mut seen = until(&mut first, &id, ContainerStartedEvent).await;
    let running = status_of(seen.last().unwrap(), &id).expect("the started container");
    assert_eq!(running.state, ContainerState::ContainerRunning as i32);
    // Nothing asks for the container's state after this (ExecSync does not): only the
    // monitor's push can report the exit.
    exec(&mut rt, &id, &["touch", "/tmp/go"], 10)
        .await
        .expect("ExecSync");
    seen.extend(until(&mut first, &id, ContainerStoppedEvent).await);
    let stopped = seen.last().expect("the STOPPED event");
    let st = status_of(stopped, &id).expect("the container in its own STOPPED event");
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(st.exit_code, 3, "{st:?}");
    let pod_st = stopped.pod_sandbox_status.as_ref().expect("pod status");
    assert_eq!(
        pod_st.metadata, pod.metadata,
        "kubelet keys events by pod uid"
    );
    assert_eq!(pod_st.state, PodSandboxState::SandboxReady as i32);
    assert!(stopped.created_at > 0);

    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    rt.stop_pod_sandbox(stop).await.expect("StopPodSandbox");
    let remove = RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    rt.remove_pod_sandbox(remove)
        .await
        .expect("RemovePodSandbox");
    seen.extend(until(&mut first, &pod_id, ContainerDeletedEvent).await);

    let want: Vec<(String, i32)> = [
        (&pod_id, ContainerCreatedEvent),
        (&pod_id, ContainerStartedEvent),
        (&id, ContainerCreatedEvent),
        (&id, ContainerStartedEvent),
        (&id, ContainerStoppedEvent),
        (&id, ContainerDeletedEvent),
        (&pod_id, ContainerStoppedEvent),
        (&pod_id, ContainerDeletedEvent),
    ]
    .iter()
    .map(|(i, k)| (i.to_string(), *k as i32))
    .collect();
    assert_eq!(kinds(&seen), want);
    for e in &seen {
        let p = e
            .pod_sandbox_status
            .as_ref()
            .expect("every event has the pod");
        assert_eq!(p.id, pod_id);
    }
    assert!(status_of(&seen[2], &id).is_some(), "created: listed");
    assert!(status_of(&seen[5], &id).is_none(), "deleted: gone");
    let pod_stopped = seen[6].pod_sandbox_status.as_ref().unwrap();
    assert_eq!(pod_stopped.state, PodSandboxState::SandboxNotready as i32);

    let other = until(&mut second, &pod_id, ContainerDeletedEvent).await;
    assert_eq!(kinds(&other), want, "a second subscriber sees the same");
    d.teardown().await;
}

/// After a restart the daemon subscribes to every pod's monitor again: a container that
/// ends by itself then is still reported at once.
#[tokio::test]
async fn events_report_an_exit_after_a_daemon_restart() {
    if !preflight("events_report_an_exit_after_a_daemon_restart", true) {
        return;
    }
    let mut d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "events-restart");
    let pod_id = run_pod(&mut rt, &pod).await;
    let waiter = container_config("waiter", BUSYBOX, &["sh", "-c", WAIT_THEN_EXIT]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &waiter).await;
    drop(rt);
    d.restart().await;

    let mut rt = d.runtime().await;
    let mut events = subscribe(&mut rt).await;
    // ExecSync does not look at the container's state.
    exec(&mut rt, &id, &["touch", "/tmp/go"], 10)
        .await
        .expect("ExecSync");
    let seen = until(&mut events, &id, ContainerEventType::ContainerStoppedEvent).await;
    let st = status_of(seen.last().unwrap(), &id).expect("the container's status");
    assert_eq!(st.exit_code, 3, "{st:?}");
    assert_eq!(
        seen.iter()
            .filter(|e| e.container_event_type == ContainerEventType::ContainerStoppedEvent as i32)
            .count(),
        1,
        "{:?}",
        kinds(&seen)
    );
    d.teardown().await;
}

/// StopPodSandbox kills the pod's running containers: their STOPPED events come before
/// the pod's, in the order things happened (the pod's used to win the race).
#[tokio::test]
async fn a_stopped_pod_reports_its_containers_first() {
    if !preflight("a_stopped_pod_reports_its_containers_first", true) {
        return;
    }
    use ContainerEventType::*;
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut events = subscribe(&mut rt).await;
    // Host network: no CNI DEL in the teardown, the shortest path to the pod's report.
    let pod = host_network_pod(&d, "events-stop");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three", "four"] {
        let c = container_config(name, BUSYBOX, &["sleep", "3600"]);
        ids.push(create_and_start(&mut rt, &pod_id, &pod, &c).await);
    }
    until(&mut events, &ids[1], ContainerStartedEvent).await;
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    rt.stop_pod_sandbox(stop).await.expect("StopPodSandbox");
    let seen = kinds(&until(&mut events, &pod_id, ContainerStoppedEvent).await);
    for id in &ids {
        let stopped = (id.clone(), ContainerStoppedEvent as i32);
        assert!(
            seen.contains(&stopped),
            "{id} STOPPED before the pod: {seen:?}"
        );
    }
    d.teardown().await;
}
