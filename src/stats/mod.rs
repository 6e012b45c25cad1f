//! Container and pod stats, and the cadvisor-named metrics kubelet scrapes through CRI.
//!
//! Nothing here keeps a copy of state: records come from the pod and container managers'
//! registries at each call, use from the cgroups (`runtime::cgroups::CgroupManager::stats`),
//! the writable layer's walk and the pod's network namespace, all read on the blocking
//! pool. The one thing kept is each object's previous CPU sample, for the rate
//! (`rate.rs`), dropped once the object is gone.

mod metrics;
mod netdev;
mod pod;
mod rate;
mod read;
mod view;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tracing::warn;

use crate::container::manager::{ContainerManager, ContainerPhase, ContainerRecord};
use crate::container::record::cgroup_path;
use crate::error::Result;
use crate::image::ImageStore;
use crate::sandbox::manager::PodManager;
use crate::task::blocking;
use rate::CpuRates;
use read::{ContainerSample, ContainerTarget};

pub use metrics::descriptors;

pub struct Stats {
    pods: Arc<PodManager>,
    containers: Arc<ContainerManager>,
    image_fs: PathBuf,
    cgroup_root: PathBuf,
    rates: CpuRates,
}

/// Records paired with what was read for them.
type Sampled = Vec<(ContainerRecord, ContainerSample)>;

impl Stats {
    pub fn new(
        pods: Arc<PodManager>,
        containers: Arc<ContainerManager>,
        images: &ImageStore,
    ) -> Self {
        Stats {
            cgroup_root: pods.cgroup_root().to_path_buf(),
            image_fs: images.root().to_path_buf(),
            pods,
            containers,
            rates: CpuRates::default(),
        }
    }

    /// What to read for each record; a container whose pod is gone (being removed) is
    /// left out.
    fn targets(&self, recs: Vec<ContainerRecord>) -> Vec<(ContainerRecord, ContainerTarget)> {
        recs.into_iter()
            .filter_map(|rec| {
                let pod = self.pods.get(&rec.pod_id).ok()?;
                let target = ContainerTarget {
                    id: rec.id.clone(),
                    cgroup: cgroup_path(&pod.cgroup, &rec.id),
                    upper: self.containers.upper_dir(&rec.id),
                    may_run: rec.phase == ContainerPhase::Started && rec.exit.is_none(),
                };
                Some((rec, target))
            })
            .collect()
    }

    async fn sample(&self, recs: Vec<ContainerRecord>) -> Result<Sampled> {
        let targets = self.targets(recs);
        let root = self.cgroup_root.clone();
        blocking("container stats", move || {
            let out: Sampled = targets
                .into_iter()
                .map(|(rec, t)| {
                    let s = read::container(&root, &t);
                    (rec, s)
                })
                .collect();
            Ok::<_, crate::error::Error>(out)
        })
        .await
    }

    fn to_cri(&self, rec: &ContainerRecord, s: &ContainerSample) -> cri::ContainerStats {
        let cpu = s.cgroup.as_ref().and_then(|c| c.cpu.as_ref());
        let nano_cores = cpu.and_then(|c| self.rates.sample(&rec.id, c.usage_ns, s.at));
        view::container(rec, s, &self.image_fs, nano_cores)
    }

    /// ContainerStats: NotFound for an id that names no container.
    pub async fn container(&self, wanted: &str) -> Result<cri::ContainerStats> {
        let rec = self.containers.get(wanted)?;
        let sampled = self.sample(vec![rec]).await?;
        let (rec, s) = sampled
            .first()
            .ok_or_else(|| crate::error::Error::NotFound {
                what: "container",
                id: wanted.to_string(),
            })?;
        Ok(self.to_cri(rec, s))
    }

    /// ListContainerStats: every listed container the filter selects (ids by prefix).
    pub async fn containers(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>> {
        let f = filter.cloned().unwrap_or_default();
        let recs = self.containers.select(|r| {
            r.id.starts_with(&f.id)
                && r.pod_id.starts_with(&f.pod_sandbox_id)
                && view::labels_match(&f.label_selector, &r.config.labels)
        })?;
        let sampled = self.sample(recs).await?;
        self.forget_gone();
        Ok(sampled.iter().map(|(r, s)| self.to_cri(r, s)).collect())
    }

    /// Drops the CPU samples of pods and containers that no longer exist.
    fn forget_gone(&self) {
        let live = self
            .pods
            .select(|_| true)
            .and_then(|p| Ok((p, self.containers.select(|_| true)?)));
        match live {
            Ok((pods, ctrs)) => {
                let ids = pods.into_iter().map(|p| p.id);
                let ids: HashSet<String> = ids.chain(ctrs.into_iter().map(|c| c.id)).collect();
                self.rates.retain(&ids);
            }
            Err(e) => warn!(error = %e, "listing objects to prune CPU samples"),
        }
    }
}
