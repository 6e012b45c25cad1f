//! Container and pod stats and the CRI metrics, read from a real container's cgroups,
//! writable layer and network namespace.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use std::time::{Duration, Instant};
use tonic::Code;

/// How long a busy container may take to show what the test waits for; generous, as
/// the machine is shared. Nothing is asserted about speed.
const WITHIN: Duration = Duration::from_secs(60);
/// The bridge's address in the test network (fixtures::test_conflist).
const GATEWAY: &str = "10.89.0.1";

async fn container_stats(rt: &mut Runtime, id: &str) -> ContainerStats {
    let req = ContainerStatsRequest {
        container_id: id.to_string(),
    };
    let r = rt.container_stats(req).await;
    let r = r.unwrap_or_else(|e| panic!("ContainerStats {id}: {e}"));
    r.into_inner().stats.expect("ContainerStats without stats")
}

async fn pod_stats(rt: &mut Runtime, id: &str) -> PodSandboxStats {
    let req = PodSandboxStatsRequest {
        pod_sandbox_id: id.to_string(),
    };
    let r = rt.pod_sandbox_stats(req).await;
    let r = r.unwrap_or_else(|e| panic!("PodSandboxStats {id}: {e}"));
    r.into_inner().stats.expect("PodSandboxStats without stats")
}

async fn list_container_stats(rt: &mut Runtime, f: ContainerStatsFilter) -> Vec<String> {
    let req = ListContainerStatsRequest { filter: Some(f) };
    let r = rt
        .list_container_stats(req)
        .await
        .expect("ListContainerStats");
    let ids = r.into_inner().stats.into_iter();
    ids.map(|s| s.attributes.unwrap_or_default().id).collect()
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().map_or(0, |v| v.value)
}

/// Polls ContainerStats until `ok` holds for it.
async fn wait_stats(
    rt: &mut Runtime,
    id: &str,
    ok: impl Fn(&ContainerStats) -> bool,
) -> ContainerStats {
    let deadline = Instant::now() + WITHIN;
    loop {
        let s = container_stats(rt, id).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never got there: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A container burning a CPU and holding 16 MiB in /dev/shm (anonymous memory, never
/// reclaimable as file cache) shows CPU time, a CPU rate, a working set and, under its
/// limit, the bytes still available; the 4 MiB file it wrote shows in its writable
/// layer; ListPodSandboxMetrics carries the same reads under cadvisor's names.
#[tokio::test]
async fn a_busy_container_shows_cpu_memory_and_its_writable_layer() {
    if !preflight("stats_busy_container", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "stats-busy");
    let pod_id = run_pod(&mut rt, &pod).await;
    let script = "dd if=/dev/zero of=/dev/shm/hold bs=1M count=16 && \
                  dd if=/dev/zero of=/written bs=1M count=4 && sync && \
                  touch /ready && while :; do :; done";
    let mut c = container_config("burner", BUSYBOX, &["sh", "-c", script]);
    let limit = 256u64 << 20;
    c.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit as i64,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;

    let s = wait_stats(&mut rt, &id, |s| {
        s.memory
            .as_ref()
            .is_some_and(|m| value(&m.working_set_bytes) >= 16 << 20)
            && value(&s.writable_layer.as_ref().unwrap().used_bytes) >= 4 << 20
    })
    .await;
    let attrs = s.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, id);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "burner");
    let m = s.memory.as_ref().unwrap();
    assert!(m.timestamp > 0 && value(&m.usage_bytes) >= value(&m.working_set_bytes));
    assert_eq!(
        value(&m.available_bytes),
        limit - value(&m.working_set_bytes)
    );
    let w = s.writable_layer.as_ref().unwrap();
    let images_root = d.paths.root.join("images");
    assert_eq!(
        w.fs_id.as_ref().unwrap().mountpoint,
        images_root.display().to_string()
    );
    assert!(
        value(&w.inodes_used) >= 3,
        "the upper dir, /written, /ready: {w:?}"
    );

    // The rate needs two samples; the loop keeps a core busy between them.
    let s = wait_stats(&mut rt, &id, |s| {
        s.cpu.as_ref().is_some_and(|c| {
            value(&c.usage_core_nano_seconds) >= 500_000_000 && value(&c.usage_nano_cores) > 0
        })
    })
    .await;
    assert!(s.cpu.unwrap().timestamp > 0);

    check_metrics(&mut rt, &pod_id, &id, limit).await;
    d.teardown().await;
}

/// ListPodSandboxMetrics carries the busy container's reads under cadvisor's names.
async fn check_metrics(rt: &mut Runtime, pod_id: &str, id: &str, limit: u64) {
    let metrics = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    let ours = metrics
        .iter()
        .find(|p| p.pod_sandbox_id == pod_id)
        .expect("our pod");
    let cm = ours
        .container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .unwrap();
    let metric = |name: &str| {
        let m = cm.metrics.iter().find(|m| m.name == name);
        value(&m.unwrap_or_else(|| panic!("no {name}")).value)
    };
    assert!(metric("container_memory_working_set_bytes") >= 16 << 20);
    assert!(metric("container_fs_usage_bytes") >= 4 << 20);
    assert_eq!(metric("container_spec_memory_limit_bytes"), limit);
    assert!(metric("container_processes") >= 1);
    assert!(
        ours.metrics
            .iter()
            .any(|m| m.name == "container_network_receive_bytes_total")
    );
}

/// Pod stats: the pod's eth0 counts the traffic of a ping to the bridge, its process
/// count and its containers' stats come with it.
#[tokio::test]
async fn pod_stats_count_network_traffic_and_processes() {
    if !preflight("stats_pod_network", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "stats-net");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("pinger", BUSYBOX, &["sleep", "1000"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;

    let eth0 = |s: &PodSandboxStats| {
        let net = s
            .linux
            .as_ref()
            .unwrap()
            .network
            .as_ref()
            .expect("network stats");
        let i = net.default_interface.clone().expect("a default interface");
        assert_eq!(i.name, "eth0");
        (value(&i.rx_bytes), value(&i.tx_bytes))
    };
    let before = eth0(&pod_stats(&mut rt, &pod_id).await);
    let ping = ["ping", "-c", "3", "-s", "1000", GATEWAY];
    let out = exec(&mut rt, &id, &ping, 30).await.expect("exec ping");
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = pod_stats(&mut rt, &pod_id).await;
    let after = eth0(&s);
    assert!(
        after.0 >= before.0 + 3000,
        "received: {before:?} -> {after:?}"
    );
    assert!(after.1 >= before.1 + 3000, "sent: {before:?} -> {after:?}");

    let linux = s.linux.as_ref().unwrap();
    assert_eq!(s.attributes.as_ref().unwrap().id, pod_id);
    assert!(value(&linux.process.as_ref().unwrap().process_count) >= 1);
    assert!(value(&linux.memory.as_ref().unwrap().working_set_bytes) > 0);
    assert!(value(&linux.cpu.as_ref().unwrap().usage_core_nano_seconds) > 0);
    let ids: Vec<_> = linux
        .containers
        .iter()
        .map(|c| c.attributes.clone().unwrap().id)
        .collect();
    assert_eq!(ids, [id.as_str()]);

    let req = ListPodSandboxStatsRequest { filter: None };
    let all = rt
        .list_pod_sandbox_stats(req)
        .await
        .expect("ListPodSandboxStats");
    assert!(
        all.into_inner()
            .stats
            .iter()
            .any(|p| p.attributes.as_ref().unwrap().id == pod_id)
    );
    d.teardown().await;
}

/// NotFound for ids that name nothing, InvalidArgument for no id; a List filter that
/// names nothing selects nothing.
#[tokio::test]
async fn absent_ids_are_not_found() {
    if !preflight("stats_absent", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let absent = "0123456789abcdef".repeat(4);
    let r = rt
        .container_stats(ContainerStatsRequest {
            container_id: absent.clone(),
        })
        .await;
    assert_eq!(code(&r), Code::NotFound, "{r:?}");
    let r = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: absent.clone(),
        })
        .await;
    assert_eq!(code(&r), Code::NotFound, "{r:?}");
    let r = rt.container_stats(ContainerStatsRequest::default()).await;
    assert_eq!(code(&r), Code::InvalidArgument, "{r:?}");
    let f = ContainerStatsFilter {
        id: absent.clone(),
        ..Default::default()
    };
    assert!(list_container_stats(&mut rt, f).await.is_empty());
    d.teardown().await;
}

/// The filters of ListContainerStats (id and prefix, pod id, labels) and of
/// ListPodSandboxStats (labels); an exited container keeps only its writable layer; a
/// stopped pod is not listed and has no stats.
#[tokio::test]
async fn filters_exited_containers_and_stopped_pods() {
    if !preflight("stats_filters", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pa, pb) = (pod_config(&d, "stats-a"), pod_config(&d, "stats-b"));
    let (pa_id, pb_id) = (run_pod(&mut rt, &pa).await, run_pod(&mut rt, &pb).await);
    let a = create_and_start(
        &mut rt,
        &pa_id,
        &pa,
        &container_config("a", BUSYBOX, &["sleep", "1000"]),
    )
    .await;
    let b = create_and_start(
        &mut rt,
        &pb_id,
        &pb,
        &container_config("b", BUSYBOX, &["sleep", "1000"]),
    )
    .await;

    let f = |id: &str, pod: &str, sel: &[(&str, &str)]| ContainerStatsFilter {
        id: id.to_string(),
        pod_sandbox_id: pod.to_string(),
        label_selector: labels(sel),
    };
    assert_eq!(
        list_container_stats(&mut rt, f(&a, "", &[])).await,
        [a.as_str()]
    );
    assert_eq!(
        list_container_stats(&mut rt, f(&b[..12], "", &[])).await,
        [b.as_str()],
        "prefix"
    );
    assert_eq!(
        list_container_stats(&mut rt, f("", &pb_id, &[])).await,
        [b.as_str()]
    );
    let by_label = list_container_stats(&mut rt, f("", "", &[("container", "a")])).await;
    assert_eq!(by_label, [a.as_str()]);
    assert!(
        list_container_stats(&mut rt, f("", "", &[("container", "c")]))
            .await
            .is_empty()
    );
    assert!(
        list_container_stats(&mut rt, f(&a, &pb_id, &[]))
            .await
            .is_empty()
    );
    let mut both = list_container_stats(&mut rt, f("", "", &[])).await;
    both.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(both, want);

    let pf = |sel: &[(&str, &str)]| PodSandboxStatsFilter {
        id: String::new(),
        label_selector: labels(sel),
    };
    let ids = listed_pod_ids(&mut rt, Some(pf(&[("app", "stats-b")]))).await;
    assert_eq!(ids, [pb_id.as_str()]);

    exec(&mut rt, &a, &["sh", "-c", "echo data > /kept"], 10)
        .await
        .expect("exec");
    rt.stop_container(StopContainerRequest {
        container_id: a.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    let s = container_stats(&mut rt, &a).await;
    assert!(s.cpu.is_none() && s.memory.is_none(), "exited: {s:?}");
    assert!(
        value(&s.writable_layer.unwrap().inodes_used) >= 2,
        "the upper dir and /kept"
    );

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pb_id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let ids = listed_pod_ids(&mut rt, None).await;
    assert_eq!(ids, [pa_id.as_str()], "the stopped pod is not listed");
    let r = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pb_id,
        })
        .await;
    assert_eq!(code(&r), Code::FailedPrecondition, "{r:?}");
    d.teardown().await;
}

/// The pod ids ListPodSandboxStats returns for `filter`.
async fn listed_pod_ids(rt: &mut Runtime, filter: Option<PodSandboxStatsFilter>) -> Vec<String> {
    let req = ListPodSandboxStatsRequest { filter };
    let pods = rt
        .list_pod_sandbox_stats(req)
        .await
        .unwrap()
        .into_inner()
        .stats;
    pods.iter()
        .map(|p| p.attributes.clone().unwrap().id)
        .collect()
}
