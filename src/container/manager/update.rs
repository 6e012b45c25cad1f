//! UpdateContainerResources: new limits for a created or running container, as kubelet
//! sends them for an in-place pod resize.

use k8s_cri::v1 as cri;
use tracing::info;

use super::ContainerManager;
use crate::container::spec;
use crate::error::{Error, Result};
use crate::runtime::cgroups;

impl ContainerManager {
    /// Writes `new` to the container's cgroup, then records it so ContainerStatus reports
    /// it. A limit the kernel refuses (a memory limit below current usage) puts the old
    /// limits back and fails the call.
    pub async fn update_resources(
        &self,
        wanted: &str,
        new: cri::LinuxContainerResources,
    ) -> Result<()> {
        let limits = spec::resource_limits(&new)?;
        let Some(held) = self.containers.hold(wanted).await? else {
            return Err(Error::NotFound {
                what: "container",
                id: wanted.to_string(),
            });
        };
        let rec = held.record;
        if self.observe(&rec).await?.is_exited() {
            return Err(Error::FailedPrecondition(format!(
                "container {} has exited",
                rec.id
            )));
        }
        let old = match rec.config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
            Some(r) => Some(spec::resource_limits(r)?),
            None => None,
        };
        let pod = self.pods.get(&rec.pod_id)?;
        let path = format!("{}/{}", pod.cgroup, rec.id);
        let root = self.pods.cgroup_root().to_owned();
        crate::task::blocking("updating a container's cgroup", move || {
            let cg = cgroups::manager(&root, &path)?;
            let applied = cg.apply(&limits);
            if applied.is_err()
                && let Some(old) = old
            {
                let _ = cg.apply(&old);
            }
            applied
        })
        .await?;
        self.containers
            .save(&held.entry, |r| {
                r.config.linux.get_or_insert_default().resources = Some(new);
            })
            .await?;
        info!(container = %rec.id, "container resources updated");
        Ok(())
    }
}
