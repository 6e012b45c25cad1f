//! PodSandboxStats: the pod cgroup's CPU and memory (its containers and its monitor),
//! the counters of its network namespace, its process count and its containers' stats.

use k8s_cri::v1 as cri;
use tracing::warn;

use super::netdev::{self, Interface};
use super::{Stats, read, view};
use crate::error::{Error, Result};
use crate::runtime::cgroups::CgroupStats;
use crate::sandbox::manager::{PodPhase, PodRecord};
use crate::task::blocking;

/// A pod's own reads at one instant.
pub(super) struct PodSample {
    pub at: i64,
    pub cgroup: Option<CgroupStats>,
    /// `None` for a pod on the host's network: like containerd, no network stats then.
    pub net: Option<Vec<Interface>>,
}

impl Stats {
    /// PodSandboxStats: NotFound for an unknown id; a pod that is not ready has no
    /// processes or namespaces left to measure.
    pub async fn pod(&self, wanted: &str) -> Result<cri::PodSandboxStats> {
        let pod = self.pods.get(wanted)?;
        if pod.phase != PodPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        self.pod_stats(pod).await
    }

    /// ListPodSandboxStats: the ready pods the filter selects (ids by prefix). A pod that
    /// cannot be read (stopped meanwhile) is left out rather than failing the list.
    pub async fn pods(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>> {
        let f = filter.cloned().unwrap_or_default();
        let pods = self.pods.select(|p| {
            p.phase == PodPhase::Ready
                && p.id.starts_with(&f.id)
                && view::labels_match(&f.label_selector, &p.config.labels)
        })?;
        let mut out = Vec::with_capacity(pods.len());
        for pod in pods {
            let id = pod.id.clone();
            match self.pod_stats(pod).await {
                Ok(s) => out.push(s),
                Err(e) => warn!(pod = %id, error = %e, "pod stats"),
            }
        }
        self.forget_gone();
        Ok(out)
    }

    pub(super) async fn read_pod(&self, pod: &PodRecord) -> Result<PodSample> {
        let (root, id, cgroup) = (self.cgroup_root.clone(), pod.id.clone(), pod.cgroup.clone());
        let netns = pod.own_network().then(|| self.pods.namespaces(&pod.id).net);
        blocking("pod stats", move || {
            let net = netns.as_deref().map(netdev::read).transpose()?;
            Ok::<_, Error>(PodSample {
                at: crate::id::now_ns(),
                cgroup: read::pod_cgroup(&root, &id, &cgroup),
                net,
            })
        })
        .await
    }

    async fn pod_stats(&self, pod: PodRecord) -> Result<cri::PodSandboxStats> {
        let sampled = self
            .sample(self.containers.select(|r| r.pod_id == pod.id)?)
            .await?;
        let s = self.read_pod(&pod).await?;
        let cg = s.cgroup.as_ref();
        let cpu = cg.and_then(|c| c.cpu.as_ref());
        let nano_cores = cpu.and_then(|c| self.rates.sample(&pod.id, c.usage_ns, s.at));
        let processes: usize = sampled.iter().map(|(_, c)| c.procs.len()).sum();
        let linux = cri::LinuxPodSandboxStats {
            cpu: cg.and_then(|c| view::cpu(c, s.at, nano_cores)),
            memory: cg.and_then(|c| view::memory(c, s.at)),
            network: s.net.as_deref().map(|n| view::network(n, s.at)),
            process: Some(cri::ProcessUsage {
                timestamp: s.at,
                process_count: Some(cri::UInt64Value {
                    value: processes as u64,
                }),
            }),
            containers: sampled.iter().map(|(r, c)| self.to_cri(r, c)).collect(),
        };
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: pod.config.metadata.clone(),
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
            }),
            linux: Some(linux),
            windows: None,
        })
    }
}
