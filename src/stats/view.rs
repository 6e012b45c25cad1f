//! Samples to CRI messages: pure functions, shared by container and pod stats.

use std::collections::HashMap;
use std::path::Path;

use k8s_cri::v1 as cri;

use super::netdev::Interface;
use super::read::ContainerSample;
use crate::container::manager::ContainerRecord;
use crate::runtime::cgroups::CgroupStats;

/// The interface kubelet treats as the pod's own (CNI's `eth0`).
pub const DEFAULT_INTERFACE: &str = "eth0";

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// CPU from a cgroup sample, with the rate since the previous sample if there is one.
pub fn cpu(s: &CgroupStats, at: i64, nano_cores: Option<u64>) -> Option<cri::CpuUsage> {
    let c = s.cpu.as_ref()?;
    Some(cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: value(c.usage_ns),
        usage_nano_cores: nano_cores.and_then(value),
    })
}

/// Memory as kubelet reads it: the working set drives eviction and `kubectl top`.
pub fn memory(s: &CgroupStats, at: i64) -> Option<cri::MemoryUsage> {
    let m = s.memory.as_ref()?;
    Some(cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: value(m.working_set()),
        available_bytes: m.available().and_then(value),
        usage_bytes: value(m.usage),
        rss_bytes: value(m.rss),
        page_faults: value(m.pgfault),
        major_page_faults: value(m.pgmajfault),
    })
}

pub fn container_attributes(rec: &ContainerRecord) -> cri::ContainerAttributes {
    cri::ContainerAttributes {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
    }
}

/// One container's stats; `nano_cores` is the CPU rate computed from this sample.
pub fn container(
    rec: &ContainerRecord,
    s: &ContainerSample,
    image_fs: &Path,
    nano_cores: Option<u64>,
) -> cri::ContainerStats {
    let cg = s.cgroup.as_ref();
    cri::ContainerStats {
        attributes: Some(container_attributes(rec)),
        cpu: cg.and_then(|c| cpu(c, s.at, nano_cores)),
        memory: cg.and_then(|c| memory(c, s.at)),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: s.at,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: image_fs.display().to_string(),
            }),
            used_bytes: value(s.writable.bytes),
            inodes_used: value(s.writable.inodes),
        }),
        swap: None,
    }
}

/// The pod's interfaces, loopback left out as containerd does; `eth0` is the default,
/// or the first one if there is no `eth0`.
pub fn network(ifaces: &[Interface], at: i64) -> cri::NetworkUsage {
    let interfaces: Vec<cri::NetworkInterfaceUsage> = ifaces
        .iter()
        .filter(|i| i.name != "lo")
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name.clone(),
            rx_bytes: value(i.rx_bytes),
            rx_errors: value(i.rx_errors),
            tx_bytes: value(i.tx_bytes),
            tx_errors: value(i.tx_errors),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == DEFAULT_INTERFACE)
        .or(interfaces.first())
        .cloned();
    cri::NetworkUsage {
        timestamp: at,
        default_interface,
        interfaces,
    }
}

/// CRI label selectors: every key present with the same value.
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cgroups::{CpuStats, MemoryStats};

    #[test]
    fn memory_and_cpu_fields() {
        let s = CgroupStats {
            cpu: Some(CpuStats {
                usage_ns: 7,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                usage: 100,
                inactive_file: 30,
                rss: 50,
                pgfault: 4,
                pgmajfault: 1,
                ..Default::default()
            }),
            pids: None,
        };
        let m = memory(&s, 9).unwrap();
        assert_eq!(m.working_set_bytes.unwrap().value, 70);
        assert_eq!(m.available_bytes, None, "no limit, no available bytes");
        assert_eq!(m.rss_bytes.unwrap().value, 50);
        assert_eq!((m.page_faults.unwrap().value, m.timestamp), (4, 9));
        let c = cpu(&s, 9, Some(5)).unwrap();
        assert_eq!(c.usage_core_nano_seconds.unwrap().value, 7);
        assert_eq!(c.usage_nano_cores.unwrap().value, 5);
        assert!(cpu(&CgroupStats::default(), 9, None).is_none());
    }

    #[test]
    fn network_skips_loopback_and_prefers_eth0() {
        let i = |name: &str, rx| Interface {
            name: name.into(),
            rx_bytes: rx,
            ..Default::default()
        };
        let n = network(&[i("lo", 1), i("net1", 2), i("eth0", 3)], 5);
        assert_eq!(n.interfaces.len(), 2);
        let d = n.default_interface.unwrap();
        assert_eq!((d.name.as_str(), d.rx_bytes.unwrap().value), ("eth0", 3));
        let n = network(&[i("lo", 1), i("net1", 2)], 5);
        assert_eq!(n.default_interface.unwrap().name, "net1");
        assert!(network(&[i("lo", 1)], 5).default_interface.is_none());
    }

    #[test]
    fn selectors_need_every_label() {
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(labels_match(&HashMap::new(), &labels));
        assert!(labels_match(&labels.clone(), &labels));
        let other = HashMap::from([("a".to_string(), "2".to_string())]);
        assert!(!labels_match(&other, &labels));
    }
}
