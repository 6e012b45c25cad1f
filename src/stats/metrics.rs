//! ListMetricDescriptors and ListPodSandboxMetrics: the cadvisor metric names kubelet's
//! `/metrics/cadvisor` serves when the runtime provides them (the set containerd
//! declares), with values from the same reads as the stats calls.

use k8s_cri::v1 as cri;
use tracing::warn;

use super::Stats;
use super::read::{self, ContainerSample, FsCapacity};
use crate::container::manager::ContainerRecord;
use crate::error::{Error, Result};
use crate::sandbox::manager::{PodPhase, PodRecord};
use crate::task::blocking;

mod table;
use table::DESCRIPTORS;

/// Every metric this runtime reports, with its help and label keys.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: d.keys.names().iter().map(|k| k.to_string()).collect(),
        })
        .collect()
}

/// Metrics of one object sharing its label values and timestamp.
struct Builder {
    base: Vec<String>,
    at: i64,
    out: Vec<cri::Metric>,
}

impl Builder {
    fn new(base: Vec<String>, at: i64) -> Self {
        Builder {
            base,
            at,
            out: Vec::new(),
        }
    }

    /// Adds `name` with the base labels followed by `extra`.
    fn add_with(&mut self, name: &str, extra: &[&str], value: u64) {
        debug_assert!(
            DESCRIPTORS
                .iter()
                .any(|d| d.name == name && d.keys.names().len() == 5 + extra.len()),
            "{name} is declared with these labels"
        );
        let mut label_values = self.base.clone();
        label_values.extend(extra.iter().map(|s| s.to_string()));
        let metric_type = if name.ends_with("_total") {
            cri::MetricType::Counter
        } else {
            cri::MetricType::Gauge
        };
        self.out.push(cri::Metric {
            name: name.to_string(),
            timestamp: self.at,
            metric_type: metric_type as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn add(&mut self, name: &str, value: u64) {
        self.add_with(name, &[], value);
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// What a running container's metrics are made of.
struct ContainerReads<'a> {
    rec: &'a ContainerRecord,
    sample: &'a ContainerSample,
    fds: (u64, u64),
    fs: FsCapacity,
}

fn cpu_metrics(b: &mut Builder, r: &ContainerReads<'_>) {
    let Some(c) = r.sample.cgroup.as_ref().and_then(|c| c.cpu.as_ref()) else {
        return;
    };
    b.add("container_cpu_usage_seconds_total", c.usage_ns / NS_PER_S);
    b.add("container_cpu_user_seconds_total", c.user_ns / NS_PER_S);
    b.add("container_cpu_system_seconds_total", c.system_ns / NS_PER_S);
    b.add("container_cpu_cfs_periods_total", c.periods);
    b.add(
        "container_cpu_cfs_throttled_periods_total",
        c.throttled_periods,
    );
    b.add(
        "container_cpu_cfs_throttled_seconds_total",
        c.throttled_ns / NS_PER_S,
    );
}

fn memory_metrics(b: &mut Builder, r: &ContainerReads<'_>) {
    let Some(m) = r.sample.cgroup.as_ref().and_then(|c| c.memory.as_ref()) else {
        return;
    };
    b.add("container_memory_usage_bytes", m.usage);
    b.add("container_memory_max_usage_bytes", m.max_usage);
    b.add("container_memory_working_set_bytes", m.working_set());
    b.add("container_memory_rss", m.rss);
    b.add("container_memory_cache", m.cache);
    b.add("container_memory_mapped_file", m.mapped_file);
    b.add("container_memory_kernel_usage", m.kernel);
    b.add("container_memory_swap", m.swap);
    b.add("container_memory_failcnt", m.failcnt);
    b.add("container_memory_total_active_file_bytes", m.active_file);
    b.add(
        "container_memory_total_inactive_file_bytes",
        m.inactive_file,
    );
    let failures = "container_memory_failures_total";
    b.add_with(failures, &["pgfault", "container"], m.pgfault);
    b.add_with(failures, &["pgmajfault", "container"], m.pgmajfault);
    b.add("container_oom_events_total", m.oom_kills);
}

/// The writable layer on the image filesystem (device "/", as containerd labels it).
fn fs_metrics(b: &mut Builder, r: &ContainerReads<'_>) {
    let dev = &["/"];
    b.add_with("container_fs_usage_bytes", dev, r.sample.writable.bytes);
    b.add_with("container_fs_limit_bytes", dev, r.fs.bytes);
    b.add_with("container_fs_inodes_total", dev, r.fs.inodes);
    b.add_with("container_fs_inodes_free", dev, r.fs.inodes_free);
}

fn process_metrics(b: &mut Builder, r: &ContainerReads<'_>) {
    b.add("container_processes", r.sample.procs.len() as u64);
    b.add("container_file_descriptors", r.fds.0);
    b.add("container_sockets", r.fds.1);
    if let Some(p) = r.sample.cgroup.as_ref().and_then(|c| c.pids.as_ref()) {
        b.add("container_threads", p.current);
        // cadvisor's convention: zero means no limit.
        b.add("container_threads_max", p.limit.unwrap_or(0));
    }
}

/// The limits the container was created with (zero where none was set).
fn spec_metrics(b: &mut Builder, r: &ContainerReads<'_>) {
    let res = r
        .rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone());
    let res = res.unwrap_or_default();
    let pos = |v: i64| v.max(0) as u64;
    b.add("container_spec_cpu_period", pos(res.cpu_period));
    b.add("container_spec_cpu_shares", pos(res.cpu_shares));
    b.add(
        "container_spec_memory_limit_bytes",
        pos(res.memory_limit_in_bytes),
    );
    let swap = pos(res.memory_swap_limit_in_bytes);
    b.add("container_spec_memory_swap_limit_bytes", swap);
}

fn container_metrics(pod: &PodRecord, r: &ContainerReads<'_>) -> cri::ContainerMetrics {
    let (pm, cm) = (
        pod_meta(pod),
        r.rec.config.metadata.clone().unwrap_or_default(),
    );
    let image = r.rec.config.image.as_ref().map(|i| i.image.clone());
    let base = vec![
        pm.0,
        pm.1,
        cm.name,
        r.rec.id.clone(),
        image.unwrap_or_default(),
    ];
    let mut b = Builder::new(base, r.sample.at);
    b.add(
        "container_last_seen",
        (r.sample.at.max(0) as u64) / NS_PER_S,
    );
    let started = (r.rec.started_at.max(0) as u64) / NS_PER_S;
    b.add("container_start_time_seconds", started);
    cpu_metrics(&mut b, r);
    memory_metrics(&mut b, r);
    fs_metrics(&mut b, r);
    process_metrics(&mut b, r);
    spec_metrics(&mut b, r);
    cri::ContainerMetrics {
        container_id: r.rec.id.clone(),
        metrics: b.out,
    }
}

fn pod_meta(pod: &PodRecord) -> (String, String) {
    let m = pod.config.metadata.clone().unwrap_or_default();
    (m.name, m.namespace)
}

/// The pod's own metrics: its network counters, labelled as containerd does (no
/// container name or image, the pod id as the id).
fn pod_metrics(pod: &PodRecord, ifaces: &[super::netdev::Interface], at: i64) -> Vec<cri::Metric> {
    let (name, namespace) = pod_meta(pod);
    let mut b = Builder::new(
        vec![
            name,
            namespace,
            String::new(),
            pod.id.clone(),
            String::new(),
        ],
        at,
    );
    for i in ifaces.iter().filter(|i| i.name != "lo") {
        let n = &[i.name.as_str()];
        b.add_with("container_network_receive_bytes_total", n, i.rx_bytes);
        b.add_with("container_network_receive_packets_total", n, i.rx_packets);
        b.add_with(
            "container_network_receive_packets_dropped_total",
            n,
            i.rx_dropped,
        );
        b.add_with("container_network_receive_errors_total", n, i.rx_errors);
        b.add_with("container_network_transmit_bytes_total", n, i.tx_bytes);
        b.add_with("container_network_transmit_packets_total", n, i.tx_packets);
        b.add_with(
            "container_network_transmit_packets_dropped_total",
            n,
            i.tx_dropped,
        );
        b.add_with("container_network_transmit_errors_total", n, i.tx_errors);
    }
    b.out
}

impl Stats {
    /// ListPodSandboxMetrics: every ready pod, with its running containers. A pod that
    /// cannot be read is left out.
    pub async fn pod_metrics(&self) -> Result<Vec<cri::PodSandboxMetrics>> {
        let pods = self.pods.select(|p| p.phase == PodPhase::Ready)?;
        let fs_root = self.image_fs.clone();
        let fs = blocking("image fs capacity", move || {
            Ok::<_, Error>(read::capacity(&fs_root))
        });
        let fs = fs.await?;
        let mut out = Vec::with_capacity(pods.len());
        for pod in pods {
            match self.one_pod_metrics(&pod, fs).await {
                Ok(m) => out.push(m),
                Err(e) => warn!(pod = %pod.id, error = %e, "pod metrics"),
            }
        }
        Ok(out)
    }

    async fn one_pod_metrics(
        &self,
        pod: &PodRecord,
        fs: FsCapacity,
    ) -> Result<cri::PodSandboxMetrics> {
        let own = self.read_pod(pod).await?;
        let running: Vec<_> = self
            .sample(self.containers.select(|r| r.pod_id == pod.id)?)
            .await?
            .into_iter()
            .filter(|(_, s)| s.cgroup.is_some())
            .collect();
        let procs: Vec<_> = running.iter().map(|(_, s)| s.procs.clone()).collect();
        let fds = blocking("descriptor counts", move || {
            Ok::<_, Error>(
                procs
                    .iter()
                    .map(|p| read::descriptors(p))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
        let container_metrics = running
            .iter()
            .zip(fds)
            .map(|((rec, sample), fds)| {
                container_metrics(
                    pod,
                    &ContainerReads {
                        rec,
                        sample,
                        fds,
                        fs,
                    },
                )
            })
            .collect();
        Ok(cri::PodSandboxMetrics {
            pod_sandbox_id: pod.id.clone(),
            metrics: pod_metrics(pod, own.net.as_deref().unwrap_or_default(), own.at),
            container_metrics,
        })
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
