//! Pod sandbox lifecycle: validate, act, record, with one idempotent teardown that serves
//! as rollback of a failed RunPodSandbox, recovery of a pod whose creation was cut short
//! by a crash, StopPodSandbox and RemovePodSandbox alike.
//!
//! Each pod has its own operation lock (`store::registry`): stop and remove take it
//! exclusively, container creation in the pod takes it shared. Blocking work (namespace
//! threads, mounts, cgroup files, fsync) runs on tokio's blocking pool.

mod info;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tracing::{info, warn};

use super::files;
use super::namespaces::{self, NamespaceSet, PodNamespaces};
use super::network::{Attachment, Cni, PortMapping};
use super::record::name_key;
pub use super::record::{PodPhase, PodRecord};
use super::validate::validate_pod_config;
use super::view::{matches_filter, namespace_options, status_of, summary_of};
use crate::error::{Error, Result};
use crate::events::{Changes, EventType};
use crate::fault;
use crate::id;
use crate::monitor::{self, MonitorClient};
use crate::runtime::cgroups;
use crate::store::registry::{Entry, Exclusive, Held, Registry};
use crate::task::blocking;

const RECORD_FILE: &str = "pod.json";
/// The pod init's cgroup under the pod's; container ids (64 hex digits) never clash.
const POD_INIT_CGROUP: &str = "pod-init";

pub type PodEntry = Entry<PodRecord>;

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

pub struct PodManager {
    settings: PodSettings,
    cni: Cni,
    pods: Registry<PodRecord>,
    changes: Changes,
}

impl PodManager {
    pub fn new(settings: PodSettings, cni: Cni, changes: Changes) -> Self {
        let pods = Registry::new("pod sandbox", settings.records.clone(), RECORD_FILE);
        PodManager {
            settings,
            cni,
            pods,
            changes,
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

    pub fn cgroup_root(&self) -> &Path {
        &self.settings.cgroup_root
    }

    /// The pod with this id or unique prefix; its lock orders work on it.
    pub fn entry(&self, wanted: &str) -> Result<Arc<PodEntry>> {
        self.pods.entry(wanted)
    }

    /// The pod held for an exclusive operation; `None` if it does not exist (Stop and
    /// Remove are idempotent).
    pub async fn hold(&self, wanted: &str) -> Result<Option<Held<PodRecord>>> {
        self.pods.hold(wanted).await
    }

    pub fn get(&self, wanted: &str) -> Result<PodRecord> {
        self.pods.get(wanted)
    }

    /// A Ready pod's id and its network namespace pin (`None`: the host's network), for
    /// port-forward: NotFound if there is no such pod, FailedPrecondition if not Ready.
    pub fn ready_network(&self, wanted: &str) -> Result<(String, Option<PathBuf>)> {
        let rec = self.get(wanted)?;
        if rec.phase != PodPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod {} is not ready",
                rec.id
            )));
        }
        let net = rec.own_network().then(|| self.namespaces(&rec.id).net);
        Ok((rec.id, net))
    }

    /// The listed pods (RunPodSandbox has returned) that `keep` selects, oldest first.
    pub fn select(&self, keep: impl Fn(&PodRecord) -> bool) -> Result<Vec<PodRecord>> {
        let mut out = self
            .pods
            .select(|r| r.phase != PodPhase::Creating && keep(r))?;
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    pub async fn run(&self, req: cri::RunPodSandboxRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("pod sandbox config is required".into()))?;
        validate_pod_config(&config)?;
        if !req.runtime_handler.is_empty() {
            // Only the built-in runtime exists until RuntimeClass handlers are configurable.
            return Err(Error::NotFound {
                what: "runtime handler",
                id: req.runtime_handler,
            });
        }
        let id = id::new_id();
        let name = self.pods.reserve_name(name_key(&config), &id)?;
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
        let entry = self.pods.insert(record).await?;
        // Nobody else can see the pod's id yet, but its stop must wait for the setup.
        let op = entry.exclusive().await;
        if let Err(e) = self.setup(&entry).await {
            warn!(pod = %id, error = %e, "run pod sandbox failed; rolling back");
            if self.undo_creation(&entry, &op).await? {
                name.keep();
            }
            return Err(e);
        }
        name.keep();
        // As containerd: the pod is created and started at once.
        self.changes.pod(EventType::ContainerCreatedEvent, &id);
        self.changes.pod(EventType::ContainerStartedEvent, &id);
        info!(pod = %id, "pod sandbox ready");
        Ok(id)
    }

    /// Acquires every resource of a pod in `Creating` phase and marks it Ready.
    async fn setup(&self, entry: &PodEntry) -> Result<()> {
        let rec = entry.get()?;
        let set = NamespaceSet::from_cri(namespace_options(&rec.config).as_ref());
        let user = super::userns::pod_mappings(namespace_options(&rec.config).as_ref());
        let hostname = effective_hostname(&rec.config)?;
        let (dir, cgroup_root, cgroup) = (
            self.run_dir(&rec.id),
            self.settings.cgroup_root.clone(),
            rec.cgroup.clone(),
        );
        let ns = blocking("pod namespaces", {
            let (dir, hostname) = (dir.clone(), hostname.clone());
            move || {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
                let ns = namespaces::create_namespace_set(&dir, set, &hostname, user.as_ref())?;
                cgroups::manager(&cgroup_root, &cgroup)?.create()?;
                fault::inject("pod-cgroup")?;
                Ok::<_, Error>(ns)
            }
        })
        .await?;
        let mut ips = Vec::new();
        if set.net {
            let net = self.cni.load_network()?;
            let rec = self
                .pods
                .save(entry, |r| r.network = Some(net.clone()))
                .await?;
            ips = self.cni.add(&net, &attachment(&rec, &ns)?).await?.ips;
        }
        let (dns, ip) = (rec.config.dns_config.clone(), ips.first().copied());
        blocking("pod files", move || {
            files::write_resolv_conf(&dir, dns.as_ref())?;
            files::write_hostname(&dir, &hostname)?;
            files::write_hosts(&dir, &hostname, ip)?;
            Ok::<_, Error>(())
        })
        .await?;
        self.spawn_monitor(&rec, set).await?;
        self.pods
            .save(entry, |r| {
                r.ips = ips;
                r.phase = PodPhase::Ready;
            })
            .await?;
        Ok(())
    }

    /// The pod's monitor and, for a pod-wide PID namespace, its pod init (which joins
    /// the pod's other namespaces). The pod init gets a leaf cgroup of its own under the
    /// pod's: on cgroup v2 a process in the pod cgroup itself would keep the pod's
    /// controllers from being enabled for its containers ("no internal processes").
    async fn spawn_monitor(&self, rec: &PodRecord, set: NamespaceSet) -> Result<()> {
        fault::inject("monitor-spawn")?;
        let ns = self.namespaces(&rec.id);
        let user = super::userns::pod_mappings(namespace_options(&rec.config).as_ref());
        let pod_init = set.pid.then(|| monitor::PodInitOptions {
            join: ns.created(set),
            pin: ns.pid.clone(),
            cgroup: format!("{}/{POD_INIT_CGROUP}", rec.cgroup),
            user: user.map(|_| ns.user.clone()),
        });
        let opts = monitor::SpawnOptions {
            pod_id: rec.id.clone(),
            dir: self.run_dir(&rec.id),
            cgroup_root: self.settings.cgroup_root.clone(),
            exe: self.settings.exe.clone(),
            pod_init,
        };
        monitor::spawn(&opts).await?;
        Ok(())
    }

    /// Rolls back a pod that never became Ready; returns whether it stays recorded. If
    /// the teardown itself fails, the pod is kept and listed as NotReady instead of being
    /// forgotten, so what leaked is still known and kubelet's Stop/RemovePodSandbox
    /// retries the teardown.
    async fn undo_creation(&self, entry: &PodEntry, _op: &Exclusive) -> Result<bool> {
        let rec = entry.get()?;
        let Some(e) = self.teardown(&rec).await else {
            self.forget(&rec).await?;
            return Ok(false);
        };
        warn!(pod = %rec.id, error = %e, "rollback incomplete; keeping the pod as NotReady");
        self.pods
            .save(entry, |r| r.phase = PodPhase::NotReady)
            .await?;
        Ok(true)
    }

    /// Drops the pod from memory and disk (record and volatile dir).
    async fn forget(&self, rec: &PodRecord) -> Result<()> {
        self.pods.forget(rec).await?;
        let dir = self.run_dir(&rec.id);
        blocking("pod dir removal", move || {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("removing", &dir, e))
                }
                _ => Ok(()),
            }
        })
        .await
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
        let removed = blocking("namespace removal", move || {
            namespaces::remove_namespaces(&dir)
        });
        if let Err(e) = removed.await {
            note("namespaces", e);
        }
        let (root, cgroup) = (self.settings.cgroup_root.clone(), rec.cgroup.clone());
        let destroyed = blocking("pod cgroup removal", move || {
            cgroups::manager(&root, &cgroup)?.destroy()
        });
        if let Err(e) = destroyed.await {
            note("cgroup", e);
        }
        first
    }

    /// Stops a pod: its monitor (and so its containers), network, namespaces and cgroup
    /// are released; the record stays, NotReady. A pod that does not exist is not an
    /// error (CRI StopPodSandbox is idempotent). `settle` runs once the containers are
    /// gone and before the pod is reported stopped, so that the caller can record (and
    /// report) their exits first: events come in the order things happened.
    pub async fn stop<F, Fut>(&self, wanted: &str, settle: F) -> Result<()>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let Some(held) = self.pods.hold(wanted).await? else {
            return Ok(());
        };
        let rec = held.record;
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        settle(rec.id.clone()).await;
        if rec.phase != PodPhase::NotReady {
            self.mark_not_ready(&held.entry).await?;
        }
        info!(pod = %rec.id, "pod sandbox stopped");
        Ok(())
    }

    /// Removes a pod whose containers the caller has removed while holding it.
    pub async fn remove_held(&self, held: &Held<PodRecord>) -> Result<()> {
        let rec = held.entry.get()?;
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        let last = status_of(&rec);
        self.forget(&rec).await?;
        self.changes.pod_removed(last);
        info!(pod = %rec.id, "pod sandbox removed");
        Ok(())
    }

    /// Whether `entry` is still the live pod `id` (not removed while a caller waited).
    pub fn is_current(&self, entry: &Arc<PodEntry>, id: &str) -> Result<bool> {
        self.pods.is_current(entry, id)
    }

    /// The pod's status. A Ready pod whose monitor has died (and its containers with
    /// it) is recorded NotReady here, so kubelet recreates it instead of waiting forever.
    /// With `verbose`, also the info map `crictl inspectp` shows.
    pub async fn status(
        &self,
        wanted: &str,
        verbose: bool,
    ) -> Result<(cri::PodSandboxStatus, HashMap<String, String>)> {
        let entry = self.entry(wanted)?;
        let mut rec = entry.get()?;
        if rec.phase == PodPhase::Ready && !self.monitor_alive(&rec.id).await {
            warn!(pod = %rec.id, "monitor is gone; pod is no longer ready");
            rec = self.mark_not_ready(&entry).await?;
        }
        let info = match verbose {
            true => self.info(&rec).await?,
            false => HashMap::new(),
        };
        Ok((status_of(&rec), info))
    }

    /// Records the pod NotReady; the one call that turns a Ready pod NotReady reports
    /// it stopped (a stop and a status check racing report it once).
    async fn mark_not_ready(&self, entry: &PodEntry) -> Result<PodRecord> {
        let mut was_ready = false;
        let rec = self
            .pods
            .save(entry, |r| {
                was_ready = r.phase == PodPhase::Ready;
                r.phase = PodPhase::NotReady;
            })
            .await?;
        if was_ready {
            self.changes.pod(EventType::ContainerStoppedEvent, &rec.id);
        }
        Ok(rec)
    }

    /// The ids of the pods that are Ready.
    pub fn ready_ids(&self) -> Result<Vec<String>> {
        let ready = self.pods.select(|r| r.phase == PodPhase::Ready)?;
        Ok(ready.into_iter().map(|r| r.id).collect())
    }

    /// The pod's status as recorded, without asking its monitor (events carry it).
    pub fn recorded_status(&self, id: &str) -> Option<cri::PodSandboxStatus> {
        self.pods.get(id).ok().map(|r| status_of(&r))
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
        let mut out: Vec<cri::PodSandbox> = self
            .pods
            // A pod is listed once RunPodSandbox has returned its id.
            .select(|r| r.phase != PodPhase::Creating)?
            .iter()
            .map(summary_of)
            .filter(|item| filter.is_none_or(|f| matches_filter(item, f)))
            .collect();
        out.sort_by_key(|p| p.created_at);
        Ok(out)
    }

    /// Rebuilds state from disk after a (re)start: pods whose creation was interrupted
    /// are torn down, Ready pods whose monitor is gone (a reboot) become NotReady.
    pub async fn recover(&self) -> Result<()> {
        let (entries, orphans) = self.pods.load()?;
        for dir in orphans {
            warn!(dir = %dir.display(), "removing pod dir without a record");
            let _ = std::fs::remove_dir_all(&dir);
        }
        for entry in entries {
            let rec = entry.get()?;
            if rec.phase == PodPhase::Creating {
                warn!(pod = %rec.id, "pod creation was interrupted; tearing it down");
                let op = entry.exclusive().await;
                self.undo_creation(&entry, &op).await?;
                continue;
            }
            if rec.phase == PodPhase::Ready && self.monitor(&rec.id).ping().await.is_err() {
                warn!(pod = %rec.id, "monitor is gone; pod is no longer ready");
                self.mark_not_ready(&entry).await?;
            }
        }
        Ok(())
    }
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
