//! A pod as the daemon records it: `<root>/pods/<id>/pod.json`.

use std::net::IpAddr;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use super::network::NetworkConfig;
use crate::store::registry::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Resources are being acquired; a record found in this phase at startup is torn down.
    Creating,
    Ready,
    NotReady,
}

/// What the daemon knows about a pod, persisted as `<root>/pods/<id>/pod.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub runtime_handler: String,
    pub created_at: i64,
    pub phase: PodPhase,
    /// Set before CNI ADD runs, so teardown knows to run DEL with the same config.
    pub network: Option<NetworkConfig>,
    pub ips: Vec<IpAddr>,
    /// Cgroup path relative to the hierarchy root.
    pub cgroup: String,
}

impl PodRecord {
    pub fn log_directory(&self) -> &str {
        &self.config.log_directory
    }
}

impl Record for PodRecord {
    fn id(&self) -> &str {
        &self.id
    }

    fn name_key(&self) -> String {
        name_key(&self.config)
    }
}

pub(super) fn name_key(c: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}
