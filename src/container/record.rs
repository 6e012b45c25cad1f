//! A container as the daemon records it: `<root>/containers/<id>/container.json`.

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::store::registry::Record;

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    pub exit_code: i32,
    pub finished_at: i64,
    pub reason: String,
    pub message: String,
}

/// An image mounted as a volume (CRI `Mount.image`): what status reports as its digest
/// and the snapshots image removal must keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    pub container_path: String,
    pub image_id: String,
    pub chain_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    /// Being created; found in this phase at startup, it is torn down.
    Creating,
    Created,
    Started,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: cri::ContainerConfig,
    pub image_id: String,
    pub image_ref: String,
    pub chain_ids: Vec<String>,
    /// Image volumes, in the order of their mounts.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
    pub created_at: i64,
    pub started_at: i64,
    pub phase: ContainerPhase,
    pub log_path: Option<PathBuf>,
    /// Cached once the container has exited, so its status never needs the monitor again.
    pub exit: Option<Exit>,
    /// The identity its process runs as, resolved at create (ContainerStatus `user`).
    #[serde(default)]
    pub user: Option<cri::ContainerUser>,
    /// The signal StopContainer sends first, resolved at create; 0 in records written
    /// before it was kept (the image is asked again).
    #[serde(default)]
    pub stop_signal: i32,
}

impl Record for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn name_key(&self) -> String {
        name_key(&self.pod_id, &self.config)
    }
}

pub fn name_key(pod_id: &str, c: &cri::ContainerConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{pod_id}/{}_{}", m.name, m.attempt)
}

/// The container's cgroup, relative to the hierarchy root: a child of its pod's.
pub fn cgroup_path(pod_cgroup: &str, id: &str) -> String {
    format!("{pod_cgroup}/{id}")
}
