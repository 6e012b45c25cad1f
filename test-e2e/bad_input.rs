//! Bad requests get the right gRPC code and change nothing.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use tonic::Code;

/// What the daemon holds; compared before and after each bad request.
async fn snapshot(rt: &mut Runtime) -> (Vec<String>, Vec<String>) {
    let mut pods: Vec<String> = list_pods(rt, None)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut containers: Vec<String> = list_containers(rt)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    pods.sort();
    containers.sort();
    (pods, containers)
}

fn assert_code<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>, want: Code) {
    assert_eq!(code(&r), want, "{what}: {r:?}");
}

#[tokio::test]
async fn bad_pod_requests() {
    if !preflight("bad_pod_requests", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let good = pod_config(&d, "good");
    let id = run_pod(&mut rt, &good).await;
    let before = snapshot(&mut rt).await;

    let run = |config: Option<PodSandboxConfig>| RunPodSandboxRequest {
        config,
        runtime_handler: String::new(),
    };
    let r = rt.run_pod_sandbox(run(None)).await;
    assert_code("RunPodSandbox without config", r, Code::InvalidArgument);
    let mut cfg = pod_config(&d, "no-metadata");
    cfg.metadata = None;
    let r = rt.run_pod_sandbox(run(Some(cfg))).await;
    assert_code("RunPodSandbox without metadata", r, Code::InvalidArgument);
    for name in ["a/b", "..", ""] {
        let mut cfg = pod_config(&d, "bad-name");
        if let Some(m) = cfg.metadata.as_mut() {
            m.name = name.to_string();
        }
        let r = rt.run_pod_sandbox(run(Some(cfg))).await;
        assert_code(
            &format!("RunPodSandbox name {name:?}"),
            r,
            Code::InvalidArgument,
        );
    }
    let r = rt.run_pod_sandbox(run(Some(good.clone()))).await;
    assert_code("RunPodSandbox duplicate name", r, Code::AlreadyExists);
    assert_eq!(snapshot(&mut rt).await, before);
    assert_eq!(
        pod_status(&mut rt, &id).await.state,
        PodSandboxState::SandboxReady as i32
    );
    d.teardown().await;
}

/// kubelet relies on an error for a RuntimeClass handler the runtime does not have.
#[tokio::test]
async fn unknown_runtime_handler() {
    if !preflight("unknown_runtime_handler", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let r = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(&d, "handler")),
            runtime_handler: "no-such-handler".into(),
        })
        .await;
    assert_ne!(code(&r), Code::Ok, "unknown runtime handler: {r:?}");
    assert!(list_pods(&mut rt, None).await.is_empty());
    d.teardown().await;
}

#[tokio::test]
async fn bad_container_requests() {
    if !preflight("bad_container_requests", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "bad-containers");
    let pod_id = run_pod(&mut rt, &pod).await;
    let first = container_config("first", BUSYBOX, &["sleep", "1000"]);
    create(&mut rt, &pod_id, &pod, &first)
        .await
        .expect("CreateContainer first");
    let before = snapshot(&mut rt).await;

    let mut cases: Vec<(&str, ContainerConfig, Code)> = Vec::new();
    let mut c = container_config("log", BUSYBOX, &["true"]);
    c.log_path = "../../etc/x".into();
    cases.push((
        "log_path escaping the pod log dir",
        c,
        Code::InvalidArgument,
    ));
    let mut c = container_config("abs-log", BUSYBOX, &["true"]);
    c.log_path = "/etc/x".into();
    cases.push(("absolute log_path", c, Code::InvalidArgument));
    let mut c = container_config("mount", BUSYBOX, &["true"]);
    c.mounts = vec![Mount {
        container_path: "relative/path".into(),
        host_path: d.paths.dir.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    cases.push(("relative mount container_path", c, Code::InvalidArgument));
    let mut c = container_config("no-meta", BUSYBOX, &["true"]);
    c.metadata = None;
    cases.push(("container without metadata", c, Code::InvalidArgument));
    let mut c = container_config("no-image", BUSYBOX, &["true"]);
    c.image = None;
    cases.push(("container without image", c, Code::InvalidArgument));
    let mut c = container_config("slash", BUSYBOX, &["true"]);
    if let Some(m) = c.metadata.as_mut() {
        m.name = "a/b".into();
    }
    cases.push(("container name with '/'", c, Code::InvalidArgument));
    cases.push((
        "image never pulled",
        container_config("unpulled", E2E_BUSYBOX, &["true"]),
        Code::NotFound,
    ));
    cases.push((
        "duplicate container name",
        first.clone(),
        Code::AlreadyExists,
    ));
    for (what, cfg, want) in cases {
        assert_code(what, create(&mut rt, &pod_id, &pod, &cfg).await, want);
        assert_eq!(snapshot(&mut rt).await, before, "after {what}");
    }
    let r = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: None,
            sandbox_config: Some(pod.clone()),
        })
        .await;
    assert_code("CreateContainer without config", r, Code::InvalidArgument);
    assert_eq!(snapshot(&mut rt).await, before);
    d.teardown().await;
}

/// Every RPC that names a pod or a container says NotFound for an unknown id, except
/// the removals, which CRI requires to be idempotent.
#[tokio::test]
async fn unknown_ids() {
    if !preflight("unknown_ids", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "known");
    run_pod(&mut rt, &pod).await;
    let before = snapshot(&mut rt).await;
    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string();
    let pod_id = || unknown.clone();

    let r = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod_id(),
            verbose: false,
        })
        .await;
    assert_code("PodSandboxStatus", r, Code::NotFound);
    let r = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id(),
        })
        .await;
    // Stop and Remove are idempotent: absent is success (idempotence.rs has the table).
    assert_code("StopPodSandbox", r, Code::Ok);
    let r = create(
        &mut rt,
        &unknown,
        &pod,
        &container_config("c", BUSYBOX, &["true"]),
    )
    .await;
    assert_code("CreateContainer in an unknown pod", r, Code::NotFound);
    let r = rt
        .container_status(ContainerStatusRequest {
            container_id: pod_id(),
            verbose: false,
        })
        .await;
    assert_code("ContainerStatus", r, Code::NotFound);
    assert_code(
        "StartContainer",
        start(&mut rt, &unknown).await,
        Code::NotFound,
    );
    let r = rt
        .stop_container(StopContainerRequest {
            container_id: pod_id(),
            timeout: 1,
        })
        .await;
    assert_code("StopContainer", r, Code::Ok);
    assert_code(
        "ExecSync",
        exec(&mut rt, &unknown, &["true"], 1).await,
        Code::NotFound,
    );

    let r = rt
        .remove_container(RemoveContainerRequest {
            container_id: pod_id(),
        })
        .await;
    assert_code("RemoveContainer", r, Code::Ok);
    let r = rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id(),
        })
        .await;
    assert_code("RemovePodSandbox", r, Code::Ok);
    assert_eq!(snapshot(&mut rt).await, before);
    d.teardown().await;
}
