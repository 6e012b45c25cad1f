//! The metric descriptors: cadvisor's names and help texts as containerd declares them.

/// Which labels a metric carries after the base ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    Base,
    Network,
    Disk,
    Failure,
    Blkio,
}

const BASE: [&str; 5] = ["pod", "namespace", "container", "id", "image"];

impl Keys {
    pub fn names(self) -> Vec<&'static str> {
        let extra: &[&str] = match self {
            Keys::Base => &[],
            Keys::Network => &["interface"],
            Keys::Disk => &["device"],
            Keys::Failure => &["failure_type", "scope"],
            Keys::Blkio => &["device", "major", "minor", "operation"],
        };
        BASE.iter().chain(extra).copied().collect()
    }
}

pub struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub keys: Keys,
}

const fn d(name: &'static str, help: &'static str, keys: Keys) -> Descriptor {
    Descriptor { name, help, keys }
}

use Keys::{Base, Blkio, Disk, Failure, Network};

pub const DESCRIPTORS: &[Descriptor] = &[
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user CPU time consumed in seconds.",
        Base,
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system CPU time consumed in seconds.",
        Base,
    ),
    d(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed in seconds.",
        Base,
    ),
    d(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        Base,
    ),
    d(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        Base,
    ),
    d(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        Base,
    ),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        Base,
    ),
    d("container_memory_rss", "Size of RSS in bytes.", Base),
    d(
        "container_memory_kernel_usage",
        "Size of kernel memory allocated to the container in bytes.",
        Base,
    ),
    d(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        Base,
    ),
    d(
        "container_memory_swap",
        "Container swap usage in bytes.",
        Base,
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits (cgroup v1 only).",
        Base,
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        Base,
    ),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes.",
        Base,
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        Base,
    ),
    d(
        "container_memory_total_active_file_bytes",
        "Current total active file in bytes.",
        Base,
    ),
    d(
        "container_memory_total_inactive_file_bytes",
        "Current total inactive file in bytes.",
        Base,
    ),
    d(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        Failure,
    ),
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container.",
        Base,
    ),
    d(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        Network,
    ),
    d(
        "container_network_receive_packets_total",
        "Cumulative count of packets received.",
        Network,
    ),
    d(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving.",
        Network,
    ),
    d(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        Network,
    ),
    d(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        Network,
    ),
    d(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted.",
        Network,
    ),
    d(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting.",
        Network,
    ),
    d(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        Network,
    ),
    d(
        "container_fs_inodes_free",
        "Number of available inodes.",
        Disk,
    ),
    d("container_fs_inodes_total", "Number of inodes.", Disk),
    d(
        "container_fs_limit_bytes",
        "Number of bytes that can be consumed by the container on this filesystem.",
        Disk,
    ),
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        Disk,
    ),
    d(
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read.",
        Disk,
    ),
    d(
        "container_fs_reads_total",
        "Cumulative count of reads completed.",
        Disk,
    ),
    d(
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written.",
        Disk,
    ),
    d(
        "container_fs_writes_total",
        "Cumulative count of writes completed.",
        Disk,
    ),
    d(
        "container_blkio_device_usage_total",
        "Blkio device bytes usage.",
        Blkio,
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
        Base,
    ),
    d(
        "container_file_descriptors",
        "Number of open file descriptors for the container.",
        Base,
    ),
    d(
        "container_sockets",
        "Number of open sockets for the container.",
        Base,
    ),
    d(
        "container_threads_max",
        "Maximum number of threads allowed inside the container, infinity if value is zero.",
        Base,
    ),
    d(
        "container_threads",
        "Number of threads running inside the container.",
        Base,
    ),
    d(
        "container_last_seen",
        "Last time a container was seen by the exporter.",
        Base,
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        Base,
    ),
    d(
        "container_spec_cpu_period",
        "CPU period of the container.",
        Base,
    ),
    d(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        Base,
    ),
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        Base,
    ),
    d(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        Base,
    ),
];
