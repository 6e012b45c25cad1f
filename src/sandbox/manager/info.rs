//! The `verbose` part of PodSandboxStatus: what `crictl inspectp` shows beyond the CRI
//! status, in the shape containerd gives it (one "info" key holding a JSON object).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{PodManager, PodRecord, attachment};
use crate::error::{Error, Result};
use crate::monitor;
use crate::task::blocking;

impl PodManager {
    /// Read only when asked for: the monitor's pid file, the namespace pin and the CNI
    /// result are files.
    pub(super) async fn info(&self, rec: &PodRecord) -> Result<HashMap<String, String>> {
        let ns = self.namespaces(&rec.id);
        let cni_result = match &rec.network {
            Some(net) => self.cni.result_path(net, &attachment(rec, &ns)?),
            None => None,
        };
        let pid_file = self.run_dir(&rec.id).join(monitor::PID_NAME);
        let net_pin = ns.net.clone();
        let (pid, pinned, cni_result) = blocking("pod info", move || {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .unwrap_or(0);
            let result = cni_result
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            Ok::<_, Error>((pid, net_pin.exists(), result))
        })
        .await?;
        let info = json!({
            // The pod's monitor: the process that holds its containers.
            "pid": pid,
            "processStatus": if pid > 0 { "running" } else { "deleted" },
            "netNamespaceClosed": rec.network.is_some() && !pinned,
            "netNamespacePath": if rec.network.is_some() { Some(&ns.net) } else { None },
            "cgroupsPath": rec.cgroup,
            "runtimeHandler": rec.runtime_handler,
            "runtimeType": "crius (built-in)",
            "config": rec.config,
            "cniNetwork": rec.network.as_ref().map(|n| &n.name),
            "cniResult": cni_result,
        });
        Ok(HashMap::from([("info".to_string(), info.to_string())]))
    }
}
