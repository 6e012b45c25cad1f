//! Container lifecycle: CreateContainer builds the rootfs and the OCI bundle and asks the
//! pod's monitor to create the container; the monitor owns it from then on. Every step is
//! undone by one idempotent teardown (rollback, RemoveContainer, recovery).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::rootfs::{self, Overlay};
use super::spec::{self, NamespacePaths, PodFiles, SpecInput};
use super::status::{Exit, Observed, exit_reason, matches_filter};
use super::user::resolve_user;
use super::validate::{log_path, validate_container_config};
use crate::error::{Error, Result, poisoned};
use crate::id;
use crate::image::ImageStore;
use crate::monitor::{self, MonitorClient, proto};
use crate::sandbox::manager::{PodManager, PodPhase, PodRecord};
use crate::store::{RecordDir, read_json};

const RECORD_FILE: &str = "container.json";
const EXIT_FILE: &str = "exit.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    /// Being created; found in this phase at startup, it is torn down.
    Creating,
    Created,
    Started,
}

/// What the daemon knows about a container: `<root>/containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: cri::ContainerConfig,
    pub image_id: String,
    pub image_ref: String,
    pub chain_ids: Vec<String>,
    pub created_at: i64,
    pub started_at: i64,
    pub phase: ContainerPhase,
    pub log_path: Option<PathBuf>,
    /// Cached once the container has exited, so its status never needs the monitor again.
    pub exit: Option<Exit>,
}

impl ContainerRecord {
    fn name_key(&self) -> String {
        name_key(&self.pod_id, &self.config)
    }
}

fn name_key(pod_id: &str, c: &cri::ContainerConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{pod_id}/{}_{}", m.name, m.attempt)
}

#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub records: PathBuf,
    pub run_dir: PathBuf,
}

pub struct ContainerManager {
    settings: ContainerSettings,
    records: RecordDir,
    pods: Arc<PodManager>,
    images: Arc<ImageStore>,
    containers: RwLock<HashMap<String, Arc<Mutex<ContainerRecord>>>>,
    names: Mutex<HashMap<String, String>>,
}

/// How often a stop polls the monitor for the exit.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long after SIGKILL a container may take to be reaped before stop gives up.
const KILL_GRACE: Duration = Duration::from_secs(10);

impl ContainerManager {
    pub fn new(
        settings: ContainerSettings,
        pods: Arc<PodManager>,
        images: Arc<ImageStore>,
    ) -> Self {
        let records = RecordDir::new(settings.records.clone(), RECORD_FILE);
        ContainerManager {
            settings,
            records,
            pods,
            images,
            containers: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.settings.run_dir.join(id)
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.records.object_dir(id)
    }

    fn monitor(&self, rec: &ContainerRecord) -> MonitorClient {
        self.pods.monitor(&rec.pod_id)
    }

    fn entry(&self, wanted: &str) -> Result<Arc<Mutex<ContainerRecord>>> {
        let all = self.containers.read().map_err(poisoned)?;
        let id = id::resolve("container", wanted, all.keys())?;
        all.get(&id).cloned().ok_or(Error::NotFound {
            what: "container",
            id,
        })
    }

    fn get(&self, wanted: &str) -> Result<ContainerRecord> {
        Ok(self.entry(wanted)?.lock().map_err(poisoned)?.clone())
    }

    fn save(&self, id: &str, change: impl FnOnce(&mut ContainerRecord)) -> Result<ContainerRecord> {
        let entry = self.entry(id)?;
        let mut rec = entry.lock().map_err(poisoned)?;
        let mut next = rec.clone();
        change(&mut next);
        self.records.save(&next.id, &next)?;
        *rec = next.clone();
        Ok(next)
    }

    pub async fn create(&self, req: cri::CreateContainerRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("container config is required".into()))?;
        let pod = self.pods.get(&req.pod_sandbox_id)?;
        if pod.phase != PodPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        validate_container_config(&config, &pod.config)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self
            .images
            .get(&image_name)
            .ok_or_else(|| Error::NotFound {
                what: "image",
                id: image_name.clone(),
            })?;
        let id = id::new_id();
        let key = name_key(&pod.id, &config);
        self.reserve_name(&key, &id)?;
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or(image.id.clone()),
            chain_ids: image.chain_ids.clone(),
            log_path: resolve_log_path(&pod, &config)?,
            config,
            created_at: id::now_ns(),
            started_at: 0,
            phase: ContainerPhase::Creating,
            exit: None,
        };
        self.containers
            .write()
            .map_err(poisoned)?
            .insert(id.clone(), Arc::new(Mutex::new(record.clone())));
        let result = match self.records.save(&id, &record) {
            Ok(()) => self.setup(&record, &pod, &image, &image_name).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            warn!(container = %id, error = %e, "create container failed; rolling back");
            self.undo_creation(&record).await?;
            return Err(e);
        }
        self.save(&id, |r| r.phase = ContainerPhase::Created)?;
        info!(container = %id, pod = %pod.id, "container created");
        Ok(id)
    }

    async fn setup(
        &self,
        rec: &ContainerRecord,
        pod: &PodRecord,
        image: &crate::image::Image,
        image_name: &str,
    ) -> Result<()> {
        let bundle = self.bundle(&rec.id);
        let data = self.data_dir(&rec.id);
        let rootfs_dir = bundle.join("rootfs");
        let lower = self.images.snapshot_dirs(image);
        rootfs::mount_overlay(&Overlay {
            lower: &lower,
            upper: &data.join("upper"),
            work: &data.join("work"),
            empty: &data.join("empty"),
            target: &rootfs_dir,
        })?;
        let image_user = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.user().clone())
            .unwrap_or_default();
        let sc = rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        let user = resolve_user(&rootfs_dir, &image_user, sc)?;
        let ns = self.pods.namespaces(&pod.id);
        let pod_dir = self.pods.run_dir(&pod.id);
        let cgroups_path = format!("{}/{}", pod.cgroup, rec.id);
        let spec = spec::generate(&SpecInput {
            sandbox_id: &pod.id,
            config: &rec.config,
            sandbox: &pod.config,
            image: &image.config,
            image_ref: image_name,
            rootfs: &rootfs_dir,
            namespaces: NamespacePaths {
                net: &ns.net,
                ipc: &ns.ipc,
                uts: &ns.uts,
            },
            cgroups_path: &cgroups_path,
            pod_files: PodFiles {
                resolv_conf: &pod_dir.join("resolv.conf"),
                hosts: &pod_dir.join("hosts"),
                hostname: &pod_dir.join("hostname"),
            },
            user: &user,
        })?;
        let config_json = bundle.join("config.json");
        let bytes = serde_json::to_vec(&spec).map_err(|e| {
            Error::io(
                "encoding",
                &config_json,
                std::io::Error::other(e.to_string()),
            )
        })?;
        crate::store::write_atomic(&config_json, &bytes)?;
        self.monitor(rec)
            .create(proto::CreateContainer {
                id: rec.id.clone(),
                bundle: bundle.display().to_string(),
                log_path: rec
                    .log_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                exit_file: data.join(EXIT_FILE).display().to_string(),
            })
            .await?;
        Ok(())
    }

    /// Rolls back a container that was never created. If the teardown itself fails, the
    /// container stays recorded (and listed, with an unknown exit) instead of being
    /// forgotten, so kubelet's RemoveContainer retries the teardown.
    async fn undo_creation(&self, rec: &ContainerRecord) -> Result<()> {
        let Some(e) = self.teardown(rec).await else {
            self.forget(rec);
            return Ok(());
        };
        warn!(container = %rec.id, error = %e, "rollback incomplete; keeping the record");
        self.save(&rec.id, |r| r.phase = ContainerPhase::Created)?;
        Ok(())
    }

    fn reserve_name(&self, key: &str, id: &str) -> Result<()> {
        let mut names = self.names.lock().map_err(poisoned)?;
        if let Some(existing) = names.get(key) {
            return Err(Error::AlreadyExists {
                what: "container",
                name: key.to_string(),
                id: existing.clone(),
            });
        }
        names.insert(key.to_string(), id.to_string());
        Ok(())
    }

    fn forget(&self, rec: &ContainerRecord) {
        if let Ok(mut names) = self.names.lock() {
            names.remove(&rec.name_key());
        }
        if let Ok(mut all) = self.containers.write() {
            all.remove(&rec.id);
        }
        if let Err(e) = self.records.remove(&rec.id) {
            warn!(container = %rec.id, error = %e, "removing container record");
        }
    }

    /// Releases what a container holds (process, cgroup, rootfs mount, bundle), keeping
    /// going past failures; returns the first. Idempotent.
    async fn teardown(&self, rec: &ContainerRecord) -> Option<Error> {
        let mut first: Option<Error> = None;
        let mon = self.monitor(rec);
        let _ = mon.kill(&rec.id, libc::SIGKILL).await;
        let _ = self.wait_exit(rec, KILL_GRACE).await;
        let bundle = self.bundle(&rec.id);
        match mon.delete(&rec.id).await {
            Ok(()) => {}
            Err(e) if e.is_unavailable() || e.is_not_found() => {
                // No monitor to do it: remove the cgroup ourselves.
                if bundle.join("config.json").exists()
                    && let Err(e) = crate::runtime::destroy(&bundle, self.pods.cgroup_root())
                {
                    warn!(container = %rec.id, error = %e, "destroying container cgroup");
                }
            }
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        if let Err(e) = rootfs::unmount(&bundle.join("rootfs")) {
            first.get_or_insert(e);
        }
        if let Err(e) = std::fs::remove_dir_all(&bundle)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            first.get_or_insert(Error::io("removing", &bundle, e));
        }
        first
    }

    pub async fn start(&self, wanted: &str) -> Result<()> {
        let rec = self.get(wanted)?;
        if rec.phase != ContainerPhase::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not in created state",
                rec.id
            )));
        }
        self.monitor(&rec).start(&rec.id).await?;
        let started = id::now_ns();
        self.save(&rec.id, |r| {
            r.phase = ContainerPhase::Started;
            r.started_at = started;
        })?;
        info!(container = %rec.id, "container started");
        Ok(())
    }

    /// What the container is doing now; caches the exit in the record once known.
    async fn observe(&self, rec: &ContainerRecord) -> Result<Observed> {
        if let Some(exit) = &rec.exit {
            return Ok(Observed::exited(exit.clone(), rec.started_at));
        }
        let (observed, known) = match self.monitor(rec).state(&rec.id).await {
            Ok(s) => (Observed::from_monitor(&s), true),
            Err(e) if e.is_unavailable() || e.is_not_found() => self.observe_offline(rec)?,
            Err(e) => return Err(e.into()),
        };
        // Only an exit the monitor reported (live or in exit.json) is a fact worth
        // keeping; a guess made while the monitor is unreachable is asked again next time.
        if known && let Some(exit) = &observed.exit {
            let exit = exit.clone();
            self.save(&rec.id, |r| r.exit = Some(exit))?;
        }
        Ok(observed)
    }

    /// The state of a container whose monitor does not answer: its exit record if it
    /// left one (a fact: `true`), otherwise a guess that it died with its monitor (a
    /// reboot, or the monitor was killed: `false`).
    fn observe_offline(&self, rec: &ContainerRecord) -> Result<(Observed, bool)> {
        let path = self.data_dir(&rec.id).join(EXIT_FILE);
        if let Some(r) = read_json::<monitor::ExitRecord>(&path)? {
            let exit = Observed::exited(
                Exit {
                    exit_code: r.exit_code,
                    finished_at: r.finished_at,
                    reason: r.reason,
                    message: r.message,
                },
                rec.started_at,
            );
            return Ok((exit, true));
        }
        if rec.phase == ContainerPhase::Creating {
            return Ok((Observed::unknown(), false));
        }
        let guess = Observed::exited(
            Exit {
                exit_code: 255,
                finished_at: id::now_ns(),
                reason: "Unknown".into(),
                message: "the container's monitor is gone and left no exit record".into(),
            },
            rec.started_at,
        );
        Ok((guess, false))
    }

    async fn wait_exit(&self, rec: &ContainerRecord, limit: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let rec = self.get(&rec.id).unwrap_or_else(|_| rec.clone());
            let o = self.observe(&rec).await?;
            if o.is_exited() || o.state == cri::ContainerState::ContainerUnknown {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    pub async fn stop(&self, wanted: &str, timeout_secs: i64) -> Result<()> {
        let rec = self.get(wanted)?;
        let o = self.observe(&rec).await?;
        if o.is_exited() {
            return Ok(());
        }
        let mon = self.monitor(&rec);
        if timeout_secs > 0 && o.is_running() {
            // A stop signal the monitor refuses must not keep SIGKILL from being sent.
            match mon.kill(&rec.id, stop_signal(self, &rec)).await {
                Ok(()) => {
                    let limit = Duration::from_secs(timeout_secs.min(86_400) as u64);
                    if self.wait_exit(&rec, limit).await? {
                        info!(container = %rec.id, "container stopped");
                        return Ok(());
                    }
                }
                Err(e) => warn!(container = %rec.id, error = %e, "stop signal failed"),
            }
        }
        mon.kill(&rec.id, libc::SIGKILL).await?;
        if !self.wait_exit(&rec, KILL_GRACE).await? {
            return Err(Error::FailedPrecondition(format!(
                "container {} did not exit after SIGKILL",
                rec.id
            )));
        }
        info!(container = %rec.id, "container killed");
        Ok(())
    }

    /// Removes a container, stopping it first if needed. Unknown ids are not an error.
    pub async fn remove(&self, wanted: &str) -> Result<()> {
        let rec = match self.get(wanted) {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        self.forget(&rec);
        info!(container = %rec.id, "container removed");
        Ok(())
    }

    /// Removes every container of a pod (RemovePodSandbox).
    pub async fn remove_pod_containers(&self, pod_id: &str) -> Result<()> {
        let ids: Vec<String> = self
            .records_where(|r| r.pod_id == pod_id)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        for id in ids {
            self.remove(&id).await?;
        }
        Ok(())
    }

    fn records_where(
        &self,
        keep: impl Fn(&ContainerRecord) -> bool,
    ) -> Result<Vec<ContainerRecord>> {
        let all = self.containers.read().map_err(poisoned)?;
        let mut out = Vec::new();
        for e in all.values() {
            let r = e.lock().map_err(poisoned)?;
            if keep(&r) {
                out.push(r.clone());
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    pub async fn status(&self, wanted: &str) -> Result<cri::ContainerStatus> {
        let rec = self.get(wanted)?;
        let o = self.observe(&rec).await?;
        Ok(status_of(&rec, &o))
    }

    pub async fn list(&self, filter: Option<&cri::ContainerFilter>) -> Result<Vec<cri::Container>> {
        // A container is listed once CreateContainer has returned its id.
        let recs = self.records_where(|r| r.phase != ContainerPhase::Creating)?;
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            // One monitor that does not answer must not fail the node-wide list.
            let o = self.observe(&rec).await.unwrap_or_else(|e| {
                warn!(container = %rec.id, error = %e, "state unknown");
                Observed::unknown()
            });
            let item = summary_of(&rec, &o);
            if filter.is_none_or(|f| matches_filter(&item, f)) {
                out.push(item);
            }
        }
        Ok(out)
    }

    pub async fn exec_sync(&self, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
        let rec = self.get(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument(
                "exec command must not be empty".into(),
            ));
        }
        if !self.observe(&rec).await?.is_running() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let timeout = Duration::from_secs(req.timeout.max(0) as u64);
        let r = self
            .monitor(&rec)
            .exec_sync(&rec.id, req.cmd, timeout)
            .await?;
        if r.timed_out {
            return Err(Error::Timeout(format!(
                "command in container {} timed out after {}s",
                rec.id, req.timeout
            )));
        }
        Ok(cri::ExecSyncResponse {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
        })
    }

    /// Chain ids of layers used by containers: image removal must keep these snapshots.
    pub fn chain_ids_in_use(&self) -> Result<HashSet<String>> {
        Ok(self
            .records_where(|_| true)?
            .into_iter()
            .flat_map(|r| r.chain_ids)
            .collect())
    }

    /// Reloads container records; containers whose creation was interrupted are undone.
    pub async fn recover(&self) -> Result<()> {
        let (records, orphans) = self.records.load_all::<ContainerRecord>()?;
        for dir in orphans {
            warn!(dir = %dir.display(), "removing container dir without a record");
            let _ = std::fs::remove_dir_all(&dir);
        }
        for rec in records {
            self.containers
                .write()
                .map_err(poisoned)?
                .insert(rec.id.clone(), Arc::new(Mutex::new(rec.clone())));
            self.names
                .lock()
                .map_err(poisoned)?
                .insert(rec.name_key(), rec.id.clone());
            if rec.phase == ContainerPhase::Creating || self.pods.get(&rec.pod_id).is_err() {
                warn!(container = %rec.id, "container creation was interrupted; removing it");
                self.undo_creation(&rec).await?;
            }
        }
        Ok(())
    }
}

fn resolve_log_path(pod: &PodRecord, c: &cri::ContainerConfig) -> Result<Option<PathBuf>> {
    if c.log_path.is_empty() || pod.log_directory().is_empty() {
        return Ok(None);
    }
    Ok(Some(log_path(Path::new(pod.log_directory()), &c.log_path)?))
}

fn stop_signal(m: &ContainerManager, rec: &ContainerRecord) -> i32 {
    let from_image = m.images.get(&rec.image_id).and_then(|i| {
        i.config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().clone())
    });
    from_image
        .and_then(|s| parse_signal(&s))
        .unwrap_or(libc::SIGTERM)
}

fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG");
    let full = format!("SIG{name}");
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

fn summary_of(rec: &ContainerRecord, o: &Observed) -> cri::Container {
    cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: rec.config.metadata.clone(),
        image: rec.config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        state: o.state as i32,
        created_at: rec.created_at,
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
    }
}

fn status_of(rec: &ContainerRecord, o: &Observed) -> cri::ContainerStatus {
    let exit = o.exit.clone();
    let started_at = if o.started_at != 0 {
        o.started_at
    } else {
        rec.started_at
    };
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: o.state as i32,
        created_at: rec.created_at,
        started_at,
        finished_at: exit.as_ref().map_or(0, |e| e.finished_at),
        exit_code: exit.as_ref().map_or(0, |e| e.exit_code),
        image: rec.config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        reason: exit.as_ref().map_or(String::new(), |e| {
            if e.reason.is_empty() {
                exit_reason(e.exit_code).into()
            } else {
                e.reason.clone()
            }
        }),
        message: exit.map(|e| e.message).unwrap_or_default(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        mounts: rec.config.mounts.clone(),
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
        user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("QUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}
