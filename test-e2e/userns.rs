//! Pods in a user namespace of their own (POD mode, one mapping 0 → 1000): the container
//! sees the mapping, is root inside, writes its id-mapped rootfs, and keeps working
//! across a daemon restart; Status announces the support. Refusals are in security.rs.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;

/// kubelet's options for a POD user namespace, on the pod and repeated on the container.
fn userns_options() -> NamespaceOption {
    let map = IdMapping {
        host_id: 1000,
        container_id: 0,
        length: 100000,
    };
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![map],
            gids: vec![map],
        }),
        ..Default::default()
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[tokio::test]
async fn a_pod_user_namespace_maps_root_and_survives_a_restart() {
    if !preflight(
        "a_pod_user_namespace_maps_root_and_survives_a_restart",
        true,
    ) {
        return;
    }
    let mut d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let status = rt.status(StatusRequest { verbose: false }).await.unwrap();
    let handlers = status.into_inner().runtime_handlers;
    let features = handlers[0].features.unwrap_or_default();
    assert!(
        features.user_namespaces,
        "Status does not announce user namespaces"
    );

    let mut pod = pod_config(&d, "userns");
    let sc = pod
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options = Some(userns_options());
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut c = container_config("c", &busybox, &["sleep", "1000"]);
    let linux = c.linux.get_or_insert_with(Default::default);
    let csc = linux.security_context.get_or_insert_with(Default::default);
    csc.namespace_options = Some(userns_options());
    let c_id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let script = "cat /proc/self/uid_map; id -u; echo hi > /probe && cat /probe; stat -c %u /bin";
    let (code, out) = sh(&mut rt, &c_id, script).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        words(&out),
        ["0", "1000", "100000", "0", "hi", "0"],
        "{out}"
    );
    let hostname = sh(&mut rt, &c_id, "hostname").await.1;
    assert_eq!(hostname.trim(), "userns");

    d.kill9();
    d.restart().await;
    let mut rt = d.runtime().await;
    let script = "cat /proc/self/uid_map; cat /probe; echo again > /probe2 && cat /probe2";
    let (code, out) = sh(&mut rt, &c_id, script).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(words(&out), ["0", "1000", "100000", "hi", "again"], "{out}");
    let c2 = container_config("c2", &busybox, &["sleep", "1000"]);
    let mut c2 = c2;
    c2.linux = c.linux.clone();
    let c2_id = create_and_start(&mut rt, &pod_id, &pod, &c2).await;
    assert_eq!(sh(&mut rt, &c2_id, "id -u").await.1.trim(), "0");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await
    .unwrap();
    d.teardown().await;
}
