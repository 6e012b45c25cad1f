use std::collections::HashMap;

use super::*;
use crate::runtime::cgroups::{CgroupStats, CpuStats, MemoryStats, PidsStats};
use crate::stats::netdev::Interface;

/// What critest (pkg/validate/pod.go) expects, less what it lists as not yet implemented
/// by any runtime.
const EXPECTED: &[&str] = &[
    "container_blkio_device_usage_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_file_descriptors",
    "container_fs_inodes_free",
    "container_fs_inodes_total",
    "container_fs_limit_bytes",
    "container_fs_reads_bytes_total",
    "container_fs_reads_total",
    "container_fs_usage_bytes",
    "container_fs_writes_bytes_total",
    "container_fs_writes_total",
    "container_last_seen",
    "container_memory_cache",
    "container_memory_failcnt",
    "container_memory_failures_total",
    "container_memory_kernel_usage",
    "container_memory_mapped_file",
    "container_memory_max_usage_bytes",
    "container_memory_rss",
    "container_memory_swap",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_receive_errors_total",
    "container_network_receive_packets_dropped_total",
    "container_network_receive_packets_total",
    "container_network_transmit_bytes_total",
    "container_network_transmit_errors_total",
    "container_network_transmit_packets_dropped_total",
    "container_network_transmit_packets_total",
    "container_oom_events_total",
    "container_processes",
    "container_sockets",
    "container_spec_cpu_period",
    "container_spec_cpu_shares",
    "container_spec_memory_limit_bytes",
    "container_spec_memory_swap_limit_bytes",
    "container_start_time_seconds",
    "container_threads",
    "container_threads_max",
];

/// Declared, but only reported where block I/O accounting is read (not yet).
const NO_VALUES: &[&str] = &[
    "container_blkio_device_usage_total",
    "container_fs_reads_bytes_total",
    "container_fs_reads_total",
    "container_fs_writes_bytes_total",
    "container_fs_writes_total",
];

#[test]
fn every_expected_name_is_declared_with_help_and_labels() {
    let all = descriptors();
    for name in EXPECTED {
        let d = all.iter().find(|d| d.name == *name);
        let d = d.unwrap_or_else(|| panic!("{name} is not declared"));
        assert!(!d.help.is_empty() && d.label_keys.len() >= 5, "{name}");
    }
    let mut names: Vec<_> = all.iter().map(|d| &d.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "no name declared twice");
}

fn pod() -> PodRecord {
    PodRecord {
        id: "p1".into(),
        config: cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                namespace: "ns".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        runtime_handler: String::new(),
        created_at: 1,
        phase: PodPhase::Ready,
        network: None,
        ips: Vec::new(),
        cgroup: "crius/pod-p1".into(),
    }
}

fn container() -> ContainerRecord {
    let mut config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    ContainerRecord {
        id: "c1".into(),
        pod_id: "p1".into(),
        config,
        image_id: String::new(),
        image_ref: String::new(),
        chain_ids: Vec::new(),
        created_at: 1,
        started_at: 5_000_000_000,
        phase: crate::container::manager::ContainerPhase::Started,
        log_path: None,
        exit: None,
        image_volumes: Vec::new(),
        user: None,
        stop_signal: 0,
    }
}

/// A running container: 3 s of CPU, a 6-byte working set, two threads.
fn running_sample() -> ContainerSample {
    ContainerSample {
        at: 7_000_000_000,
        cgroup: Some(CgroupStats {
            cpu: Some(CpuStats {
                usage_ns: 3_000_000_000,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                usage: 10,
                inactive_file: 4,
                ..Default::default()
            }),
            pids: Some(PidsStats {
                current: 2,
                limit: None,
            }),
        }),
        procs: vec![nix::unistd::Pid::from_raw(1)],
        writable: Default::default(),
    }
}

#[test]
fn a_running_container_and_its_pod_report_every_declared_metric_with_its_labels() {
    let (pod, rec) = (pod(), container());
    let sample = running_sample();
    let fs = FsCapacity::default();
    let reads = ContainerReads {
        rec: &rec,
        sample: &sample,
        fds: (3, 1),
        fs,
    };
    let c = container_metrics(&pod, &reads);
    let eth0 = Interface {
        name: "eth0".into(),
        rx_bytes: 9,
        ..Default::default()
    };
    let lo = Interface {
        name: "lo".into(),
        ..Default::default()
    };
    let p = pod_metrics(&pod, &[lo, eth0], 7);
    let mut found: HashMap<&str, &cri::Metric> = HashMap::new();
    for m in c.metrics.iter().chain(&p) {
        found.entry(m.name.as_str()).or_insert(m);
    }
    for d in descriptors() {
        let Some(m) = found.get(d.name.as_str()) else {
            assert!(
                NO_VALUES.contains(&d.name.as_str()),
                "{} has no value",
                d.name
            );
            continue;
        };
        assert_eq!(m.label_values.len(), d.label_keys.len(), "{}", d.name);
    }
    let value = |n: &str| found[n].value.as_ref().unwrap().value;
    assert_eq!(value("container_cpu_usage_seconds_total"), 3);
    assert_eq!(value("container_memory_working_set_bytes"), 6);
    assert_eq!(value("container_start_time_seconds"), 5);
    assert_eq!(value("container_spec_memory_limit_bytes"), 64 << 20);
    assert_eq!(value("container_network_receive_bytes_total"), 9);
    assert_eq!(
        found["container_processes"].label_values,
        ["web", "ns", "app", "c1", "busybox"]
    );
    assert_eq!(p.len(), 8, "loopback is left out");
    assert_eq!(p[0].label_values, ["web", "ns", "", "p1", "", "eth0"]);
}
