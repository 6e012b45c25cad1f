//! UpdateContainerResources: new limits reach a running container's cgroup and its
//! status; bad or impossible ones change nothing.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use tonic::Code;

fn limits(memory: i64, quota: i64) -> LinuxContainerResources {
    LinuxContainerResources {
        memory_limit_in_bytes: memory,
        cpu_period: 100_000,
        cpu_quota: quota,
        ..Default::default()
    }
}

/// The container's v1 cgroup file `file` in `controller`'s hierarchy.
fn cgroup_file(d: &Daemon, pod_id: &str, id: &str, controller: &str, file: &str) -> String {
    let path = format!(
        "/sys/fs/cgroup/{controller}/{}/pod-{pod_id}/{id}/{file}",
        d.paths.cgroup_parent
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

async fn update(
    rt: &mut Runtime,
    id: &str,
    r: LinuxContainerResources,
) -> Result<(), tonic::Status> {
    let req = UpdateContainerResourcesRequest {
        container_id: id.into(),
        linux: Some(r),
        ..Default::default()
    };
    rt.update_container_resources(req).await.map(|_| ())
}

#[tokio::test]
async fn update_container_resources() {
    if !preflight("update_container_resources", true) {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        eprintln!("update_container_resources: checks v1 cgroup files; this host is v2");
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "resize");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut cfg = container_config("main", BUSYBOX, &["sleep", "1000"]);
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(limits(64 << 20, 50_000)),
        ..Default::default()
    });
    let id = create_and_start(&mut rt, &pod_id, &pod, &cfg).await;
    let read = |controller, file| cgroup_file(&d, &pod_id, &id, controller, file);
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64 << 20).to_string()
    );

    update(&mut rt, &id, limits(128 << 20, 200_000))
        .await
        .unwrap();
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (128 << 20).to_string()
    );
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "200000");
    let st = container_status(&mut rt, &id).await;
    let reported = st.resources.and_then(|r| r.linux).unwrap();
    assert_eq!(reported.memory_limit_in_bytes, 128 << 20);

    // Invalid: refused before anything is written.
    let r = update(&mut rt, &id, limits(-1, 0)).await;
    assert_eq!(code(&r), Code::InvalidArgument, "{r:?}");
    // Impossible: a limit below what the container uses; the old limits stay.
    let r = update(&mut rt, &id, limits(4096, 300_000)).await;
    assert!(r.is_err(), "a memory limit of one page: {r:?}");
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (128 << 20).to_string()
    );
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "200000");
    let r = update(&mut rt, "0123456789ab", limits(128 << 20, 0)).await;
    assert_eq!(code(&r), Code::NotFound, "{r:?}");

    stop_container(&mut rt, &id).await;
    let r = update(&mut rt, &id, limits(128 << 20, 0)).await;
    assert_eq!(code(&r), Code::FailedPrecondition, "{r:?}");
    d.teardown().await;
}

async fn stop_container(rt: &mut Runtime, id: &str) {
    let req = StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    };
    rt.stop_container(req).await.expect("StopContainer");
}

/// kubelet's 0 hugepage limit for each size the host has runs even without a hugetlb
/// controller; a cgroup v2 key on a v1 host is refused at create and leaves no container.
#[tokio::test]
async fn limits_the_host_cannot_apply() {
    if !preflight("limits_the_host_cannot_apply", true) {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        eprintln!("limits_the_host_cannot_apply: a v1 case; this host is v2");
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "hostlimits");
    let pod_id = run_pod(&mut rt, &pod).await;
    let with = |name: &str, r: LinuxContainerResources| {
        let mut cfg = container_config(name, BUSYBOX, &["sleep", "1000"]);
        cfg.linux = Some(LinuxContainerConfig {
            resources: Some(r),
            ..Default::default()
        });
        cfg
    };
    let zero_pages = LinuxContainerResources {
        hugepage_limits: vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        }],
        ..Default::default()
    };
    create_and_start(&mut rt, &pod_id, &pod, &with("pages", zero_pages)).await;

    let mut v2_only = LinuxContainerResources::default();
    v2_only
        .unified
        .insert("memory.high".into(), "100000000".into());
    let r = create(&mut rt, &pod_id, &pod, &with("v2", v2_only)).await;
    assert_eq!(code(&r), Code::InvalidArgument, "{r:?}");
    assert_eq!(list_containers(&mut rt).await.len(), 1, "only the first");
    d.teardown().await;
}
