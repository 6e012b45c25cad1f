//! Version, Status, and the pod sandbox lifecycle with list filters.

use crate::fixtures::*;
use crate::harness::{Daemon, Options, Runtime, STOP_TIMEOUT, SUBNET_PREFIX, preflight};
use k8s_cri::v1::*;
use tonic::Code;

fn condition<'a>(status: &'a StatusResponse, kind: &str) -> &'a RuntimeCondition {
    status
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status:?}"))
}

async fn runtime_status(rt: &mut Runtime) -> StatusResponse {
    rt.status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
}

#[tokio::test]
async fn version_and_status() {
    if !preflight("version_and_status", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let v = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "crius");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());

    let st = runtime_status(&mut rt).await;
    assert!(condition(&st, "RuntimeReady").status, "{st:?}");
    assert!(condition(&st, "NetworkReady").status, "{st:?}");

    // A second daemon, at the same time, with an empty CNI conf dir.
    let bare = Daemon::start_with(Options::default()).await;
    let st = runtime_status(&mut bare.runtime().await).await;
    assert!(condition(&st, "RuntimeReady").status, "{st:?}");
    let net = condition(&st, "NetworkReady");
    assert!(!net.status, "{st:?}");
    assert!(
        !net.reason.is_empty(),
        "NetworkReady=false needs a reason: {st:?}"
    );
    bare.teardown().await;
    d.teardown().await;
}

fn by_id(id: &str) -> Option<PodSandboxFilter> {
    Some(PodSandboxFilter {
        id: id.to_string(),
        ..Default::default()
    })
}

fn by_state(state: PodSandboxState) -> Option<PodSandboxFilter> {
    Some(PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: state as i32,
        }),
        ..Default::default()
    })
}

fn by_labels(pairs: &[(&str, &str)]) -> Option<PodSandboxFilter> {
    Some(PodSandboxFilter {
        label_selector: labels(pairs),
        ..Default::default()
    })
}

fn ids(pods: &[PodSandbox]) -> Vec<&str> {
    pods.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test]
async fn pod_lifecycle() {
    if !preflight("pod_lifecycle", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let cfg_a = pod_config(&d, "pod-a");
    let a = run_pod(&mut rt, &cfg_a).await;
    let st = pod_status(&mut rt, &a).await;
    assert_eq!(st.id, a);
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.metadata, cfg_a.metadata);
    assert_eq!(st.labels, cfg_a.labels);
    assert!(st.created_at > 0);
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    assert!(
        ip.starts_with(SUBNET_PREFIX),
        "pod IP {ip:?} not in 10.89.0.0/24"
    );

    let b = run_pod(&mut rt, &pod_config(&d, "pod-b")).await;
    let ip_b = pod_status(&mut rt, &b).await.network.map(|n| n.ip);
    assert_ne!(ip_b, Some(ip.clone()), "two pods, two IPs");
    assert_eq!(list_pods(&mut rt, None).await.len(), 2);
    assert_eq!(ids(&list_pods(&mut rt, by_id(&a)).await), [a.as_str()]);
    // kubelet filters by id prefix too.
    assert_eq!(
        ids(&list_pods(&mut rt, by_id(&a[..12])).await),
        [a.as_str()]
    );
    assert_eq!(
        ids(&list_pods(&mut rt, by_labels(&[("app", "pod-b")])).await),
        [b.as_str()]
    );
    assert_eq!(
        list_pods(&mut rt, by_labels(&[("suite", "e2e")]))
            .await
            .len(),
        2
    );
    assert!(
        list_pods(&mut rt, by_labels(&[("app", "nope")]))
            .await
            .is_empty()
    );
    assert_eq!(
        list_pods(&mut rt, by_state(PodSandboxState::SandboxReady))
            .await
            .len(),
        2
    );

    let stop = StopPodSandboxRequest {
        pod_sandbox_id: a.clone(),
    };
    rt.stop_pod_sandbox(stop.clone())
        .await
        .expect("StopPodSandbox");
    assert_eq!(
        pod_status(&mut rt, &a).await.state,
        PodSandboxState::SandboxNotready as i32
    );
    rt.stop_pod_sandbox(stop)
        .await
        .expect("StopPodSandbox is idempotent");
    let ready = list_pods(&mut rt, by_state(PodSandboxState::SandboxReady)).await;
    assert_eq!(ids(&ready), [b.as_str()]);
    let not_ready = list_pods(&mut rt, by_state(PodSandboxState::SandboxNotready)).await;
    assert_eq!(ids(&not_ready), [a.as_str()]);

    let remove = RemovePodSandboxRequest {
        pod_sandbox_id: a.clone(),
    };
    rt.remove_pod_sandbox(remove.clone())
        .await
        .expect("RemovePodSandbox");
    let gone = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: a.clone(),
            verbose: false,
        })
        .await;
    assert_eq!(code(&gone), Code::NotFound, "{gone:?}");
    rt.remove_pod_sandbox(remove)
        .await
        .expect("RemovePodSandbox is idempotent");
    assert_eq!(ids(&list_pods(&mut rt, None).await), [b.as_str()]);

    // RemovePodSandbox on a ready pod stops it first.
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: b.clone(),
    })
    .await
    .expect("RemovePodSandbox of a ready pod");
    assert!(list_pods(&mut rt, None).await.is_empty());
    d.teardown().await;
}

/// kubelet keeps its connection open: SIGTERM must stop the daemon anyway, promptly,
/// and remove its socket.
#[tokio::test]
async fn sigterm_with_a_client_connected() {
    if !preflight("sigterm_with_a_client_connected", false) {
        return;
    }
    let mut d = Daemon::start_with(Options::default()).await;
    let mut rt = d.runtime().await;
    rt.version(VersionRequest::default())
        .await
        .expect("Version");
    let started = std::time::Instant::now();
    let stopped = d.stop_within(STOP_TIMEOUT);
    assert!(
        stopped,
        "crius still running {STOP_TIMEOUT:?} after SIGTERM"
    );
    eprintln!("stopped in {:?}", started.elapsed());
    assert!(!d.paths.socket.exists(), "socket left behind");
    drop(rt);
    d.teardown().await;
}

/// A client that gives up mid-RunPodSandbox (kubelet's deadline, crictl's --timeout) must
/// not cut setup or rollback short: the pod finishes, shows up, and tears down cleanly.
#[tokio::test]
async fn run_pod_sandbox_outlives_its_client_deadline() {
    if !preflight("run_pod_sandbox_outlives_its_client_deadline", true) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let config = pod_config(&d, "impatient");
    let mut req = tonic::Request::new(RunPodSandboxRequest {
        config: Some(config.clone()),
        ..Default::default()
    });
    req.set_timeout(std::time::Duration::from_millis(5));
    let err = rt
        .run_pod_sandbox(req)
        .await
        .expect_err("5 ms is too short for a pod");
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    let mut ready = Vec::new();
    for _ in 0..100 {
        let items = rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items;
        ready = items
            .into_iter()
            .filter(|p| p.state == PodSandboxState::SandboxReady as i32)
            .collect();
        if !ready.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready.len(), 1, "the abandoned RunPodSandbox completed");
    // Its name stays taken by that pod, as with containerd, until it is removed.
    let again = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            ..Default::default()
        })
        .await
        .expect_err("same name");
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    d.teardown().await;
}
