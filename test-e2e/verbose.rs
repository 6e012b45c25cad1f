//! `verbose` Status, PodSandboxStatus and ContainerStatus: the info `crictl inspect`,
//! `inspectp` and `info` show, as JSON.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;
use serde_json::Value;

fn json(info: &std::collections::HashMap<String, String>, key: &str) -> Value {
    let text = info
        .get(key)
        .unwrap_or_else(|| panic!("no {key:?} in {info:?}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}: {e}: {text}"))
}

#[tokio::test]
async fn verbose_status_calls_return_json_info() {
    if !preflight("verbose_status_calls_return_json_info", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "verbose");
    let pod_id = run_pod(&mut rt, &pod).await;
    let sleeper = container_config("sleeper", BUSYBOX, &["sleep", "1000"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &sleeper).await;

    let status = |verbose| ContainerStatusRequest {
        container_id: id.clone(),
        verbose,
    };
    let quiet = rt.container_status(status(false)).await.expect("status");
    assert!(quiet.into_inner().info.is_empty(), "info only when verbose");
    let loud = rt.container_status(status(true)).await.expect("verbose");
    let info = json(&loud.into_inner().info, "info");
    assert_eq!(info["sandboxID"], pod_id.as_str());
    assert!(info["pid"].as_i64().unwrap() > 0, "{info}");
    assert_eq!(info["runtimeSpec"]["process"]["args"][0], "sleep");
    let root = info["runtimeSpec"]["root"]["path"].as_str().unwrap();
    assert!(root.ends_with("/rootfs"), "{root}");
    assert_eq!(info["config"]["metadata"]["name"], "sleeper");

    let req = |verbose| PodSandboxStatusRequest {
        pod_sandbox_id: pod_id.clone(),
        verbose,
    };
    let quiet = rt.pod_sandbox_status(req(false)).await.expect("pod status");
    assert!(quiet.into_inner().info.is_empty());
    let loud = rt.pod_sandbox_status(req(true)).await.expect("verbose");
    let info = json(&loud.into_inner().info, "info");
    assert!(info["pid"].as_i64().unwrap() > 0, "the monitor: {info}");
    assert_eq!(info["netNamespaceClosed"], false);
    let netns = info["netNamespacePath"].as_str().unwrap();
    assert!(std::path::Path::new(netns).exists(), "{netns}");
    assert_eq!(info["config"]["metadata"]["uid"], "uid-verbose");
    let ip = pod_status(&mut rt, &pod_id).await.network.unwrap().ip;
    assert!(info["cniResult"].to_string().contains(&ip), "{info}");

    let rs = rt
        .status(StatusRequest { verbose: true })
        .await
        .expect("Status")
        .into_inner();
    let config = json(&rs.info, "config");
    assert_eq!(config["root"], d.paths.root.to_str().unwrap());
    assert_eq!(json(&rs.info, "cniconfig")["name"], "crius-e2e");
    assert_eq!(rs.info["lastCNILoadStatus"], "OK");
    let quiet = rt.status(StatusRequest { verbose: false }).await.unwrap();
    assert!(quiet.into_inner().info.is_empty());
    d.teardown().await;
}
