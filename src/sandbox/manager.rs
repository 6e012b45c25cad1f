//! Pod sandbox lifecycle: validate, act, record, with one idempotent teardown that serves
//! as rollback of a failed RunPodSandbox, recovery of a pod whose creation was cut short
//! by a crash, StopPodSandbox and RemovePodSandbox alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::files;
use super::namespaces::{self, NamespaceSet, PodNamespaces};
use super::network::{Attachment, Cni, NetworkConfig, PortMapping};
use super::validate::validate_pod_config;
use crate::error::{Error, Result, poisoned};
use crate::id;
use crate::monitor::{self, MonitorClient};
use crate::runtime::cgroups;
use crate::store::RecordDir;

const RECORD_FILE: &str = "pod.json";

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
    fn name_key(&self) -> String {
        name_key(&self.config)
    }

    pub fn log_directory(&self) -> &str {
        &self.config.log_directory
    }
}

fn name_key(c: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// Paths and settings the pod manager needs from the config.
#[derive(Debug, Clone)]
pub struct PodSettings {
    pub records: PathBuf,
    pub run_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub cgroup_parent: String,
    /// The crius binary, re-executed as the per-pod monitor.
    pub exe: PathBuf,
}

struct PodEntry {
    record: Mutex<PodRecord>,
    /// Serializes stop/remove of one pod; never held while another pod is worked on.
    op: tokio::sync::Mutex<()>,
}

pub struct PodManager {
    settings: PodSettings,
    cni: Cni,
    records: RecordDir,
    pods: RwLock<HashMap<String, Arc<PodEntry>>>,
    /// Name key -> id, including pods still being created.
    names: Mutex<HashMap<String, String>>,
}

impl PodManager {
    pub fn new(settings: PodSettings, cni: Cni) -> Self {
        let records = RecordDir::new(settings.records.clone(), RECORD_FILE);
        PodManager {
            settings,
            cni,
            records,
            pods: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    pub fn cni(&self) -> &Cni {
        &self.cni
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.settings.run_dir.join(id)
    }

    pub fn namespaces(&self, id: &str) -> PodNamespaces {
        namespaces::namespace_paths(&self.run_dir(id))
    }

    pub fn monitor(&self, id: &str) -> MonitorClient {
        MonitorClient::new(self.run_dir(id).join("monitor.sock"))
    }

    pub fn cgroup_root(&self) -> &std::path::Path {
        &self.settings.cgroup_root
    }

    /// The pod's record, looked up by id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<PodRecord> {
        Ok(self.entry(id)?.record.lock().map_err(poisoned)?.clone())
    }

    fn entry(&self, wanted: &str) -> Result<Arc<PodEntry>> {
        let pods = self.pods.read().map_err(poisoned)?;
        let id = id::resolve("pod sandbox", wanted, pods.keys())?;
        pods.get(&id).cloned().ok_or(Error::NotFound {
            what: "pod sandbox",
            id,
        })
    }

    fn save(&self, entry: &PodEntry, change: impl FnOnce(&mut PodRecord)) -> Result<PodRecord> {
        let mut rec = entry.record.lock().map_err(poisoned)?;
        let mut next = rec.clone();
        change(&mut next);
        self.records.save(&next.id, &next)?;
        *rec = next.clone();
        Ok(next)
    }

    pub async fn run(&self, req: cri::RunPodSandboxRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("pod sandbox config is required".into()))?;
        validate_pod_config(&config)?;
        check_supported(&config)?;
        if !req.runtime_handler.is_empty() {
            // Only the built-in runtime exists until RuntimeClass handlers are configurable.
            return Err(Error::NotFound {
                what: "runtime handler",
                id: req.runtime_handler,
            });
        }
        let id = id::new_id();
        self.reserve_name(&name_key(&config), &id)?;
        let record = PodRecord {
            id: id.clone(),
            cgroup: format!(
                "{}/pod-{}",
                self.settings.cgroup_parent.trim_matches('/'),
                id
            ),
            config,
            runtime_handler: req.runtime_handler,
            created_at: id::now_ns(),
            phase: PodPhase::Creating,
            network: None,
            ips: Vec::new(),
        };
        let entry = Arc::new(PodEntry {
            record: Mutex::new(record.clone()),
            op: tokio::sync::Mutex::new(()),
        });
        let result = match self.records.save(&id, &record) {
            Ok(()) => self.setup(&entry).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => {
                self.pods
                    .write()
                    .map_err(poisoned)?
                    .insert(id.clone(), entry);
                info!(pod = %id, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                let rec = entry.record.lock().map_err(poisoned)?.clone();
                warn!(pod = %id, error = %e, "run pod sandbox failed; rolling back");
                self.undo_creation(entry, &rec).await?;
                Err(e)
            }
        }
    }

    /// Acquires every resource of a pod in `Creating` phase and marks it Ready.
    async fn setup(&self, entry: &PodEntry) -> Result<()> {
        let rec = entry.record.lock().map_err(poisoned)?.clone();
        let dir = self.run_dir(&rec.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let set = NamespaceSet::from_cri(namespace_options(&rec.config).as_ref());
        let hostname = effective_hostname(&rec.config)?;
        let ns = namespaces::create_namespace_set(&dir, set, &hostname)?;
        let cg = cgroups::manager(&self.settings.cgroup_root, &rec.cgroup)?;
        cg.create()?;
        let mut ips = Vec::new();
        if set.net {
            let net = self.cni.load_network()?;
            let rec = self.save(entry, |r| r.network = Some(net.clone()))?;
            ips = self.cni.add(&net, &attachment(&rec, &ns)?).await?.ips;
        }
        let ip = ips.first().copied();
        files::write_resolv_conf(&dir, rec.config.dns_config.as_ref())?;
        files::write_hostname(&dir, &hostname)?;
        files::write_hosts(&dir, &hostname, ip)?;
        self.spawn_monitor(&rec.id).await?;
        self.save(entry, |r| {
            r.ips = ips;
            r.phase = PodPhase::Ready;
        })?;
        Ok(())
    }

    async fn spawn_monitor(&self, id: &str) -> Result<()> {
        let opts = monitor::SpawnOptions {
            pod_id: id.to_string(),
            dir: self.run_dir(id),
            cgroup_root: self.settings.cgroup_root.clone(),
            exe: self.settings.exe.clone(),
        };
        monitor::spawn(&opts).await?;
        Ok(())
    }

    fn reserve_name(&self, key: &str, id: &str) -> Result<()> {
        let mut names = self.names.lock().map_err(poisoned)?;
        if let Some(existing) = names.get(key) {
            return Err(Error::AlreadyExists {
                what: "pod sandbox",
                name: key.to_string(),
                id: existing.clone(),
            });
        }
        names.insert(key.to_string(), id.to_string());
        Ok(())
    }

    /// Rolls back a pod that never became Ready. If the teardown itself fails, the pod
    /// stays recorded and listed as NotReady instead of being forgotten, so what leaked
    /// is still known and kubelet's Stop/RemovePodSandbox retries the teardown.
    async fn undo_creation(&self, entry: Arc<PodEntry>, rec: &PodRecord) -> Result<()> {
        let Some(e) = self.teardown(rec).await else {
            self.forget(rec);
            return Ok(());
        };
        warn!(pod = %rec.id, error = %e, "rollback incomplete; keeping the pod as NotReady");
        self.save(&entry, |r| r.phase = PodPhase::NotReady)?;
        self.pods
            .write()
            .map_err(poisoned)?
            .insert(rec.id.clone(), entry);
        Ok(())
    }

    /// Whether `entry` is still the pod's current entry (not removed while we waited).
    fn is_current(&self, entry: &Arc<PodEntry>, id: &str) -> Result<bool> {
        let pods = self.pods.read().map_err(poisoned)?;
        Ok(pods.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)))
    }

    /// Drops the pod from memory and disk (record and volatile dir).
    fn forget(&self, rec: &PodRecord) {
        if let Ok(mut names) = self.names.lock() {
            names.remove(&rec.name_key());
        }
        if let Ok(mut pods) = self.pods.write() {
            pods.remove(&rec.id);
        }
        if let Err(e) = self.records.remove(&rec.id) {
            warn!(pod = %rec.id, error = %e, "removing pod record");
        }
        let dir = self.run_dir(&rec.id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(pod = %rec.id, dir = %dir.display(), error = %e, "removing pod dir");
        }
    }

    /// Releases everything a pod holds except its records. Idempotent and best effort:
    /// it keeps going past failures, logs them, and returns the first.
    async fn teardown(&self, rec: &PodRecord) -> Option<Error> {
        let mut first: Option<Error> = None;
        let mut note = |what: &str, e: Error| {
            warn!(pod = %rec.id, error = %e, "teardown: {what}");
            first.get_or_insert(e);
        };
        if let Err(e) = self.monitor(&rec.id).shutdown().await
            && !e.is_unavailable()
        {
            note("monitor shutdown", e.into());
        }
        let ns = self.namespaces(&rec.id);
        if let Some(net) = &rec.network {
            let del = match attachment(rec, &ns) {
                Ok(att) => self.cni.del(net, &att).await.map_err(Error::from),
                Err(e) => Err(e),
            };
            if let Err(e) = del {
                note("CNI DEL", e);
            }
        }
        let dir = self.run_dir(&rec.id);
        if let Err(e) = tokio::task::spawn_blocking(move || namespaces::remove_namespaces(&dir))
            .await
            .unwrap_or(Ok(()))
        {
            note("namespaces", e.into());
        }
        match cgroups::manager(&self.settings.cgroup_root, &rec.cgroup) {
            Ok(cg) => {
                if let Err(e) = cg.destroy() {
                    note("cgroup", e.into());
                }
            }
            Err(e) => note("cgroup", e.into()),
        }
        first
    }

    pub async fn stop(&self, wanted: &str) -> Result<()> {
        let entry = self.entry(wanted)?;
        let _op = entry.op.lock().await;
        let rec = entry.record.lock().map_err(poisoned)?.clone();
        if !self.is_current(&entry, &rec.id)? {
            // Removed while this call waited: saving now would resurrect its record.
            return Err(Error::NotFound {
                what: "pod sandbox",
                id: rec.id,
            });
        }
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        if rec.phase != PodPhase::NotReady {
            self.save(&entry, |r| r.phase = PodPhase::NotReady)?;
        }
        info!(pod = %rec.id, "pod sandbox stopped");
        Ok(())
    }

    /// Removes a pod; its containers must already have been removed by the caller.
    /// An unknown id is not an error (CRI RemovePodSandbox is idempotent).
    pub async fn remove(&self, wanted: &str) -> Result<()> {
        let entry = match self.entry(wanted) {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _op = entry.op.lock().await;
        let rec = entry.record.lock().map_err(poisoned)?.clone();
        if !self.is_current(&entry, &rec.id)? {
            return Ok(());
        }
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        self.forget(&rec);
        info!(pod = %rec.id, "pod sandbox removed");
        Ok(())
    }

    /// The pod's status. A Ready pod whose monitor has died (and its containers with
    /// it) is recorded NotReady here, so kubelet recreates it instead of waiting forever.
    pub async fn status(&self, wanted: &str) -> Result<cri::PodSandboxStatus> {
        let entry = self.entry(wanted)?;
        let rec = entry.record.lock().map_err(poisoned)?.clone();
        if rec.phase == PodPhase::Ready && !self.monitor_alive(&rec.id).await {
            warn!(pod = %rec.id, "monitor is gone; pod is no longer ready");
            return Ok(status_of(
                &self.save(&entry, |r| r.phase = PodPhase::NotReady)?,
            ));
        }
        Ok(status_of(&rec))
    }

    /// Whether the pod's monitor process exists. A failed ping alone is not enough: a
    /// monitor at its connection limit drops new connections but is alive.
    async fn monitor_alive(&self, id: &str) -> bool {
        if self.monitor(id).ping().await.is_ok() {
            return true;
        }
        let pid_file = self.run_dir(id).join(monitor::PID_NAME);
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return false;
        };
        // The pid may have been reused: it must still be this pod's monitor.
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(id))
            .unwrap_or(false)
    }

    pub fn list(&self, filter: Option<&cri::PodSandboxFilter>) -> Result<Vec<cri::PodSandbox>> {
        let pods = self.pods.read().map_err(poisoned)?;
        let mut out = Vec::new();
        for entry in pods.values() {
            let rec = entry.record.lock().map_err(poisoned)?;
            let item = summary_of(&rec);
            if filter.is_none_or(|f| matches_filter(&item, f)) {
                out.push(item);
            }
        }
        out.sort_by_key(|p| p.created_at);
        Ok(out)
    }

    /// Rebuilds state from disk after a (re)start: pods whose creation was interrupted
    /// are torn down, Ready pods whose monitor is gone (a reboot) become NotReady.
    pub async fn recover(&self) -> Result<()> {
        let (records, orphans) = self.records.load_all::<PodRecord>()?;
        for dir in orphans {
            warn!(dir = %dir.display(), "removing pod dir without a record");
            let _ = std::fs::remove_dir_all(&dir);
        }
        for rec in records {
            let entry = Arc::new(PodEntry {
                record: Mutex::new(rec.clone()),
                op: tokio::sync::Mutex::new(()),
            });
            self.names
                .lock()
                .map_err(poisoned)?
                .insert(rec.name_key(), rec.id.clone());
            if rec.phase == PodPhase::Creating {
                warn!(pod = %rec.id, "pod creation was interrupted; tearing it down");
                self.undo_creation(entry, &rec).await?;
                continue;
            }
            let alive = self.monitor(&rec.id).ping().await.is_ok();
            self.pods
                .write()
                .map_err(poisoned)?
                .insert(rec.id.clone(), entry.clone());
            if rec.phase == PodPhase::Ready && !alive {
                warn!(pod = %rec.id, "monitor is gone; pod is no longer ready");
                self.save(&entry, |r| r.phase = PodPhase::NotReady)?;
            }
        }
        Ok(())
    }
}

fn namespace_options(c: &cri::PodSandboxConfig) -> Option<cri::NamespaceOption> {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
}

/// The pod's hostname; like containerd, the node's own when the config names none.
fn effective_hostname(c: &cri::PodSandboxConfig) -> Result<String> {
    if !c.hostname.is_empty() {
        return Ok(c.hostname.clone());
    }
    nix::unistd::gethostname()
        .map_err(|e| Error::io("reading", "the node's hostname", e.into()))
        .map(|h| h.to_string_lossy().into_owned())
}

fn check_supported(c: &cri::PodSandboxConfig) -> Result<()> {
    if let Some(o) = namespace_options(c)
        && o.pid == cri::NamespaceMode::Pod as i32
    {
        // A shared pod PID namespace needs a pod init process (a later issue).
        return Err(Error::Unimplemented("a PID namespace shared by the pod"));
    }
    Ok(())
}

/// The CNI attachment of a pod; built the same way for ADD and DEL so portmap can undo
/// exactly what it did.
fn attachment(rec: &PodRecord, ns: &PodNamespaces) -> Result<Attachment> {
    let m = rec.config.metadata.clone().unwrap_or_default();
    Ok(Attachment {
        container_id: rec.id.clone(),
        netns: ns.net.clone(),
        ifname: "eth0".into(),
        pod_name: m.name,
        pod_namespace: m.namespace,
        pod_uid: m.uid,
        port_mappings: PortMapping::from_cri(&rec.config.port_mappings)?,
    })
}

fn state_of(rec: &PodRecord) -> i32 {
    match rec.phase {
        PodPhase::Ready => cri::PodSandboxState::SandboxReady as i32,
        _ => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn summary_of(rec: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state_of(rec),
        created_at: rec.created_at,
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

fn status_of(rec: &PodRecord) -> cri::PodSandboxStatus {
    let mut ips = rec.ips.iter().map(|ip| ip.to_string());
    let network = cri::PodSandboxNetworkStatus {
        ip: ips.next().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
    };
    // Without options the pod gets kubelet's defaults: its own network and IPC, and a
    // PID namespace per container (the zero value would claim a shared pod PID ns).
    let options = namespace_options(&rec.config).unwrap_or(cri::NamespaceOption {
        pid: cri::NamespaceMode::Container as i32,
        ..Default::default()
    });
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state_of(rec),
        created_at: rec.created_at,
        network: Some(network),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(options),
            }),
        }),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

fn matches_filter(p: &cri::PodSandbox, f: &cri::PodSandboxFilter) -> bool {
    (f.id.is_empty() || p.id.starts_with(&f.id))
        && f.state.is_none_or(|s| s.state == p.state)
        && f.label_selector
            .iter()
            .all(|(k, v)| p.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, state: i32, labels: &[(&str, &str)]) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.into(),
            state,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_id_prefix_state_and_labels() {
        let p = pod("abcdef", 0, &[("app", "web"), ("tier", "fe")]);
        let f = |id: &str, state: Option<i32>, labels: &[(&str, &str)]| cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|state| cri::PodSandboxStateValue { state }),
            label_selector: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(matches_filter(&p, &f("", None, &[])));
        assert!(matches_filter(&p, &f("abc", Some(0), &[("app", "web")])));
        assert!(!matches_filter(&p, &f("abd", None, &[])));
        assert!(!matches_filter(&p, &f("", Some(1), &[])));
        assert!(!matches_filter(&p, &f("", None, &[("app", "db")])));
        assert!(!matches_filter(&p, &f("", None, &[("missing", "x")])));
    }

    #[test]
    fn shared_pod_pid_namespace_is_refused_clearly() {
        let mut c = cri::PodSandboxConfig::default();
        assert!(check_supported(&c).is_ok());
        c.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(matches!(check_supported(&c), Err(Error::Unimplemented(_))));
    }
}
