//! Pod networking through real CNI plugins, executed as the CNI spec (1.0.0, also 0.3.x and
//! 0.4.0 configurations) describes: one process per plugin and command, parameters in
//! `CNI_*` environment variables, the plugin's configuration on stdin, the result (or an
//! error object) on stdout.
//!
//! ADD runs the chain in order, each plugin getting the previous one's result as
//! `prevResult`; if plugin k fails, DEL runs for plugins k..=0 (k may have half set up).
//! DEL runs the chain in reverse, keeps going past failures, and passes an empty
//! `CNI_NETNS` when the pin is gone, which the reference plugins treat as "release IPAM
//! only". With [`Cni::with_result_cache`] the final ADD result is kept in
//! `<cache>/<network>-<pod id>-<ifname>.json` and given to DEL as `prevResult`.

mod config;
mod ports;
mod result;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot::error::TryRecvError::Closed;

use super::SandboxError;
use crate::store;
pub use config::NetworkConfig;
pub use ports::PortMapping;
pub use result::{NetworkResult, parse_result};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Who and where to attach: the pod and its pinned network namespace. DEL must get the
/// same attachment as ADD (port mappings included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The pod sandbox id (CNI_CONTAINERID).
    pub container_id: String,
    pub netns: PathBuf,
    /// The interface name inside the pod, normally "eth0".
    pub ifname: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// Host ports for plugins with the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// Runs CNI plugins for pods. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    result_cache: Option<PathBuf>,
    timeout: Duration,
}

/// One plugin invocation.
struct PluginCall<'a> {
    command: Command,
    plugin: &'a str,
    att: &'a Attachment,
    /// CNI_NETNS: the pin, or empty on DEL when the namespace no longer exists.
    netns: String,
    stdin: Vec<u8>,
}

impl Cni {
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>) -> Cni {
        Cni {
            conf_dir,
            bin_dirs,
            result_cache: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Keeps each final ADD result under `dir` so DEL can pass it as `prevResult`.
    pub fn with_result_cache(mut self, dir: PathBuf) -> Cni {
        self.result_cache = Some(dir);
        self
    }

    /// How long one plugin may run before it is killed (default 60 s).
    #[cfg(test)]
    pub fn with_timeout(mut self, timeout: Duration) -> Cni {
        self.timeout = timeout;
        self
    }

    /// The network that would be used now (see `config` for the selection rule).
    pub fn load_network(&self) -> Result<NetworkConfig, SandboxError> {
        config::load_from_dir(&self.conf_dir)
    }

    /// Attaches the pod to `net`. On failure everything already added is deleted again.
    ///
    /// Cancel-safe: the chain runs in its own task, so dropping this future (a cancelled
    /// RunPodSandbox) neither kills a plugin halfway nor skips the rollback; an ADD that
    /// completes after its caller is gone is deleted again, since nobody recorded it.
    pub async fn add(
        &self,
        net: &NetworkConfig,
        att: &Attachment,
    ) -> Result<NetworkResult, SandboxError> {
        let (cni, net, att) = (self.clone(), net.clone(), att.clone());
        // The task sees the receiver closed once the caller's future is dropped.
        let (caller_alive, mut caller_gone) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = cni.add_chain(&net, &att).await;
            if result.is_ok()
                && caller_gone.try_recv() == Err(Closed)
                && let Err(e) = cni.del(&net, &att).await
            {
                tracing::warn!(error = %e, pod = %att.container_id, "undoing abandoned CNI ADD");
            }
            result
        });
        let outcome = task.await;
        drop(caller_alive);
        match outcome {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SandboxError::Interrupted { command: "ADD" }),
        }
    }

    async fn add_chain(
        &self,
        net: &NetworkConfig,
        att: &Attachment,
    ) -> Result<NetworkResult, SandboxError> {
        let types = net.plugin_types()?;
        let mut prev: Option<Value> = None;
        for (i, ty) in types.iter().enumerate() {
            match self.add_one(net, i, ty, att, prev.as_ref()).await {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    // Plugin i may have half set up, unless it never started.
                    let started = !matches!(e, SandboxError::PluginNotFound { .. });
                    let count = if started { i + 1 } else { i };
                    let cleanup = self.del_chain(net, att, count, prev.as_ref()).await;
                    return Err(e.with_cleanup(cleanup));
                }
            }
        }
        let Some(raw) = prev else {
            return Err(net.invalid("no plugins".into()));
        };
        let ips = match parse_result(&raw, &att.ifname) {
            Ok(ips) => ips,
            Err(reason) => {
                let plugin = types.last().copied().unwrap_or_default().to_owned();
                let e = SandboxError::InvalidResult { plugin, reason };
                let cleanup = self.del_chain(net, att, types.len(), Some(&raw)).await;
                return Err(e.with_cleanup(cleanup));
            }
        };
        let result = NetworkResult { ips, raw };
        self.cache_result(net, att, &result.raw).await;
        Ok(result)
    }

    /// Detaches the pod from `net`: plugins in reverse order, tolerating a missing netns
    /// and plugins that already cleaned up. Idempotent; returns the first failure.
    pub async fn del(&self, net: &NetworkConfig, att: &Attachment) -> Result<(), SandboxError> {
        let cache = self.cache_path(net, att);
        let prev = match cache.as_deref().map(store::read_json::<Value>) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "ignoring unreadable CNI result cache");
                None
            }
            None => None,
        };
        self.del_chain(net, att, net.plugins.len(), prev.as_ref())
            .await?;
        if let Some(path) = cache {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SandboxError::io("removing", path, e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn add_one(
        &self,
        net: &NetworkConfig,
        index: usize,
        plugin: &str,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Value, SandboxError> {
        let call = PluginCall {
            command: Command::Add,
            plugin,
            att,
            netns: att.netns.to_string_lossy().into_owned(),
            stdin: plugin_stdin(net, index, att, prev)?,
        };
        let stdout = self.run(call).await?;
        serde_json::from_slice(&stdout).map_err(|e| SandboxError::InvalidResult {
            plugin: plugin.to_owned(),
            reason: e.to_string(),
        })
    }

    /// DEL for the first `count` plugins, last first.
    async fn del_chain(
        &self,
        net: &NetworkConfig,
        att: &Attachment,
        count: usize,
        prev: Option<&Value>,
    ) -> Result<(), SandboxError> {
        let types = net.plugin_types()?;
        let netns = if is_netns(&att.netns) {
            att.netns.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let mut first = None;
        for (i, plugin) in types.iter().enumerate().take(count).rev() {
            let outcome = match plugin_stdin(net, i, att, prev) {
                Ok(stdin) => {
                    let netns = netns.clone();
                    let command = Command::Del;
                    let call = PluginCall {
                        command,
                        plugin,
                        att,
                        netns,
                        stdin,
                    };
                    self.run(call).await.map(drop)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs one plugin; its stdout when it succeeded.
    async fn run(&self, call: PluginCall<'_>) -> Result<Vec<u8>, SandboxError> {
        let bin = self.find_plugin(call.plugin)?;
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.envs(cni_env(&call, &self.bin_dirs))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let exec = async {
            let mut child = cmd
                .spawn()
                .map_err(|e| SandboxError::io("starting CNI plugin", &bin, e))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A plugin that exits without reading stdin is judged by its exit status.
                let _ = stdin.write_all(&call.stdin).await;
            }
            child
                .wait_with_output()
                .await
                .map_err(|e| SandboxError::io("waiting for CNI plugin", &bin, e))
        };
        // Dropping the future on timeout drops the child, which kills it (kill_on_drop).
        let output = tokio::time::timeout(self.timeout, exec)
            .await
            .map_err(|_| SandboxError::PluginTimeout {
                plugin: call.plugin.to_owned(),
                command: call.command.as_str(),
                after: self.timeout,
            })??;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(plugin_failure(&call, &output))
        }
    }

    fn find_plugin(&self, plugin: &str) -> Result<PathBuf, SandboxError> {
        self.bin_dirs
            .iter()
            .map(|dir| dir.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| SandboxError::PluginNotFound {
                plugin: plugin.to_owned(),
                dirs: self.bin_dirs.clone(),
            })
    }

    /// Where the final ADD result of `att` on `net` is kept, if results are kept.
    pub fn result_path(&self, net: &NetworkConfig, att: &Attachment) -> Option<PathBuf> {
        self.cache_path(net, att)
    }

    fn cache_path(&self, net: &NetworkConfig, att: &Attachment) -> Option<PathBuf> {
        let clean = |s: &str| s.replace(['/', '\0'], "_");
        let name = format!(
            "{}-{}-{}.json",
            clean(&net.name),
            clean(&att.container_id),
            clean(&att.ifname)
        );
        self.result_cache.as_ref().map(|dir| dir.join(name))
    }

    /// Best effort: without the cache DEL still works, only without `prevResult`.
    /// Writes the result for DEL's prevResult; the write fsyncs, so it runs on the
    /// blocking pool.
    async fn cache_result(&self, net: &NetworkConfig, att: &Attachment, raw: &Value) {
        let Some(path) = self.cache_path(net, att) else {
            return;
        };
        let raw = raw.clone();
        let written = tokio::task::spawn_blocking(move || store::write_json(&path, &raw)).await;
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %e, "could not cache CNI result; DEL will lack prevResult");
        }
    }
}

/// The stdin of plugin `index`: its configuration with the network's `name` and
/// `cniVersion`, the previous result, and the runtime config for its capabilities.
fn plugin_stdin(
    net: &NetworkConfig,
    index: usize,
    att: &Attachment,
    prev: Option<&Value>,
) -> Result<Vec<u8>, SandboxError> {
    let mut conf = match net.plugins.get(index) {
        Some(Value::Object(map)) => map.clone(),
        _ => return Err(net.invalid(format!("plugin {index} is not a JSON object"))),
    };
    conf.insert("name".into(), json!(net.name));
    conf.insert("cniVersion".into(), json!(net.cni_version));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let wants_ports = conf
        .get("capabilities")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if wants_ports {
        conf.insert(
            "runtimeConfig".into(),
            json!({ "portMappings": att.port_mappings }),
        );
    }
    serde_json::to_vec(&conf).map_err(|e| net.invalid(e.to_string()))
}

fn cni_args(att: &Attachment) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        att.pod_namespace, att.pod_name, att.container_id, att.pod_uid
    )
}

/// The CNI_* variables; the rest of the daemon's environment (PATH, which portmap needs
/// to find iptables) is inherited.
fn cni_env(call: &PluginCall<'_>, bin_dirs: &[PathBuf]) -> Vec<(&'static str, String)> {
    let path: Vec<String> = bin_dirs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    vec![
        ("CNI_COMMAND", call.command.as_str().to_owned()),
        ("CNI_CONTAINERID", call.att.container_id.clone()),
        ("CNI_NETNS", call.netns.clone()),
        ("CNI_IFNAME", call.att.ifname.clone()),
        ("CNI_PATH", path.join(":")),
        ("CNI_ARGS", cni_args(call.att)),
    ]
}

/// The spec's error object, printed on stdout with a non-zero exit.
#[derive(Deserialize)]
struct PluginErrorJson {
    code: Option<u64>,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

fn plugin_failure(call: &PluginCall<'_>, output: &std::process::Output) -> SandboxError {
    let parsed = serde_json::from_slice::<PluginErrorJson>(&output.stdout).ok();
    let code = parsed.as_ref().and_then(|p| p.code);
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let msg = match parsed {
        Some(p) if !p.msg.is_empty() && !p.details.is_empty() => {
            format!("{}: {}", p.msg, p.details)
        }
        Some(p) if !p.msg.is_empty() => p.msg,
        _ if !stderr.is_empty() => stderr,
        _ => format!("{} with no error message", output.status),
    };
    SandboxError::Plugin {
        plugin: call.plugin.to_owned(),
        command: call.command.as_str(),
        code,
        msg,
    }
}

/// Whether `path` is a namespace file (a live pin), not a leftover plain file. statfs
/// follows /proc/<pid>/ns/* magic links, so those count too.
fn is_netns(path: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod tests;
