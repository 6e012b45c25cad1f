//! The `verbose` part of ContainerStatus: what `crictl inspect` shows beyond the CRI
//! status, in the shape containerd gives it (one "info" key holding a JSON object).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{ContainerManager, ContainerRecord};
use crate::container::status::Observed;
use crate::error::{Error, Result};
use crate::task::blocking;

impl ContainerManager {
    /// The verbose info of a container: read only when asked for (the runtime spec is a
    /// file read).
    pub(super) async fn info(
        &self,
        rec: &ContainerRecord,
        o: &Observed,
    ) -> Result<HashMap<String, String>> {
        let bundle = self.bundle(&rec.id);
        let config_json = bundle.join("config.json");
        // Gone once the container is removed, or not written yet during a create.
        let spec = blocking("reading config.json", move || {
            match std::fs::read(&config_json) {
                Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| Error::io("decoding", &config_json, std::io::Error::other(e))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
                Err(e) => Err(Error::io("reading", &config_json, e)),
            }
        })
        .await?;
        let info = json!({
            "sandboxID": rec.pod_id,
            "pid": o.pid,
            "removing": false,
            "snapshotter": "overlayfs",
            "snapshotKey": rec.id,
            "imageLayers": rec.chain_ids,
            "upperDir": self.data_dir(&rec.id).join("upper"),
            "bundle": bundle,
            "runtimeType": "crius (built-in)",
            "config": rec.config,
            "runtimeSpec": spec,
        });
        Ok(HashMap::from([("info".to_string(), info.to_string())]))
    }
}
