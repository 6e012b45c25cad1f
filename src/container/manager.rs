//! Container lifecycle: CreateContainer builds the rootfs and the OCI bundle and asks the
//! pod's monitor to create the container; the monitor owns it from then on. Every step is
//! undone by one idempotent teardown (rollback, RemoveContainer, recovery).
//!
//! Each container has its own operation lock (`store::registry`): create, start, stop and
//! remove of one container run one at a time; different containers never wait on each
//! other. Creating a container holds its pod's lock shared, so a pod is not stopped or
//! removed under a create.

mod create;
mod events;
mod info;
mod observe;
mod stop;
mod update;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tracing::{info, warn};

use super::status::{matches_filter, status_of, summary_of};
use crate::error::{Error, Result};
use crate::events::{ChangeReceiver, Changes, EventType, Hub};
use crate::image::ImageStore;
use crate::monitor::MonitorClient;
use crate::sandbox::manager::PodManager;
use crate::store::registry::{Entry, Registry};

pub use super::record::{ContainerPhase, ContainerRecord, ImageVolume};

const RECORD_FILE: &str = "container.json";
const EXIT_FILE: &str = "exit.json";
/// The overlay's writable layer, under the container's data dir.
const UPPER_DIR: &str = "upper";

type ContainerEntry = Entry<ContainerRecord>;

#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub records: PathBuf,
    pub run_dir: PathBuf,
    /// Longest CRI log line before the monitor splits it (config).
    pub max_log_line: u32,
    /// What the host lets containers have (capabilities, LSMs).
    pub host: Arc<super::spec::Host>,
}

pub struct ContainerManager {
    settings: ContainerSettings,
    containers: Registry<ContainerRecord>,
    pods: Arc<PodManager>,
    images: Arc<ImageStore>,
    /// Where pod and container changes are reported (`crate::events`).
    changes: Changes,
    /// The changes, until `start_events` takes them to build CRI events from.
    pending: Mutex<Option<ChangeReceiver>>,
    /// GetContainerEvents subscribers.
    hub: Hub,
}

/// How long after SIGKILL a container may take to be reaped before stop gives up.
const KILL_GRACE: Duration = Duration::from_secs(10);

impl ContainerManager {
    /// `changes` is the reporting end of `pending`, shared with the pod manager.
    pub fn new(
        settings: ContainerSettings,
        pods: Arc<PodManager>,
        images: Arc<ImageStore>,
        (changes, pending): (Changes, ChangeReceiver),
    ) -> Self {
        let containers = Registry::new("container", settings.records.clone(), RECORD_FILE);
        ContainerManager {
            settings,
            containers,
            pods,
            images,
            changes,
            pending: Mutex::new(Some(pending)),
            hub: Hub::default(),
        }
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.settings.run_dir.join(id)
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.containers.object_dir(id)
    }

    fn monitor(&self, rec: &ContainerRecord) -> MonitorClient {
        self.pods.monitor(&rec.pod_id)
    }

    pub async fn start(&self, wanted: &str) -> Result<()> {
        let entry = self.containers.entry(wanted)?;
        let _op = entry.exclusive().await;
        let rec = entry.get()?;
        if rec.phase != ContainerPhase::Created || !self.containers.is_current(&entry, &rec.id)? {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not in created state",
                rec.id
            )));
        }
        self.monitor(&rec).start(&rec.id).await?;
        let started = crate::id::now_ns();
        self.containers
            .save(&entry, |r| {
                r.phase = ContainerPhase::Started;
                r.started_at = started;
            })
            .await?;
        self.changes
            .container(EventType::ContainerStartedEvent, &rec.id, &rec.pod_id);
        info!(container = %rec.id, "container started");
        Ok(())
    }

    /// Removes a container, killing it first if it runs. Unknown ids are not an error.
    pub async fn remove(&self, wanted: &str) -> Result<()> {
        let Some(held) = self.containers.hold(wanted).await? else {
            return Ok(());
        };
        let rec = held.record;
        if let Some(e) = self.teardown(&rec).await {
            return Err(e);
        }
        self.containers.forget(&rec).await?;
        self.changes
            .container(EventType::ContainerDeletedEvent, &rec.id, &rec.pod_id);
        info!(container = %rec.id, "container removed");
        Ok(())
    }

    /// RemovePodSandbox: the pod's containers, then the pod, under the pod's lock so no
    /// container is created in it meanwhile. An unknown pod is not an error.
    pub async fn remove_pod(&self, wanted: &str) -> Result<()> {
        let Some(pod) = self.pods.hold(wanted).await? else {
            return Ok(());
        };
        let pod_id = pod.record.id.clone();
        for rec in self.containers.select(|r| r.pod_id == pod_id)? {
            self.remove(&rec.id).await?;
        }
        self.pods.remove_held(&pod).await
    }

    fn records_where(
        &self,
        keep: impl Fn(&ContainerRecord) -> bool,
    ) -> Result<Vec<ContainerRecord>> {
        let mut out = self.containers.select(keep)?;
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    /// The listed containers (CreateContainer has returned) that `keep` selects, oldest
    /// first.
    pub fn select(&self, keep: impl Fn(&ContainerRecord) -> bool) -> Result<Vec<ContainerRecord>> {
        self.records_where(|r| r.phase != ContainerPhase::Creating && keep(r))
    }

    /// The container with this id or unique prefix.
    pub fn get(&self, wanted: &str) -> Result<ContainerRecord> {
        self.containers.get(wanted)
    }

    /// The container's writable layer (the overlay's upper dir).
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        self.data_dir(id).join(UPPER_DIR)
    }

    /// ContainerStatus; with `verbose`, also the info map `crictl inspect` shows.
    pub async fn status(
        &self,
        wanted: &str,
        verbose: bool,
    ) -> Result<(cri::ContainerStatus, HashMap<String, String>)> {
        let rec = self.containers.get(wanted)?;
        let o = self.observe(&rec).await?;
        let info = match verbose {
            true => self.info(&rec, &o).await?,
            false => HashMap::new(),
        };
        Ok((status_of(&rec, &o), info))
    }

    pub async fn list(&self, filter: Option<&cri::ContainerFilter>) -> Result<Vec<cri::Container>> {
        // A container is listed once CreateContainer has returned its id.
        let recs = self.records_where(|r| r.phase != ContainerPhase::Creating)?;
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            // One monitor that does not answer must not fail the node-wide list.
            let o = self.observe(&rec).await.unwrap_or_else(|e| {
                warn!(container = %rec.id, error = %e, "state unknown");
                super::status::Observed::unknown()
            });
            let item = summary_of(&rec, &o);
            if filter.is_none_or(|f| matches_filter(&item, f)) {
                out.push(item);
            }
        }
        Ok(out)
    }

    pub async fn exec_sync(&self, req: cri::ExecSyncRequest) -> Result<cri::ExecSyncResponse> {
        let rec = self.containers.get(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument(
                "exec command must not be empty".into(),
            ));
        }
        // The monitor refuses a container that is not running; asking it for the
        // state first would cost every exec (kubelet's probes) another round trip.
        let not_running =
            || Error::FailedPrecondition(format!("container {} is not running", rec.id));
        if rec.exit.is_some() {
            return Err(not_running());
        }
        let timeout = Duration::from_secs(req.timeout.max(0) as u64);
        let r = match self
            .monitor(&rec)
            .exec_sync(&rec.id, req.cmd, timeout)
            .await
        {
            Err(e) if e.is_unavailable() => return Err(not_running()),
            r => r?,
        };
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

    /// Checks an Exec request: the container exists (else NotFound) and runs (else
    /// FailedPrecondition), the command is not empty, and at least one stream is asked
    /// for. The process starts when the client connects
    /// to the streaming URL, through the monitor returned here.
    pub fn check_exec(&self, req: &cri::ExecRequest) -> Result<MonitorClient> {
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument(
                "exec command must not be empty".into(),
            ));
        }
        let streams = [req.stdin, req.stdout, req.stderr];
        self.check_streaming(&req.container_id, streams, req.tty)
    }

    /// Checks an Attach request as [`Self::check_exec`] does; the container's own
    /// stdin/tty settings decide the rest when the client connects.
    pub fn check_attach(&self, req: &cri::AttachRequest) -> Result<MonitorClient> {
        let streams = [req.stdin, req.stdout, req.stderr];
        self.check_streaming(&req.container_id, streams, req.tty)
    }

    /// The rules kubelet's streaming server applies to both (stdin, stdout, stderr):
    /// one at least, and no stderr with a tty (the terminal merges it into stdout).
    fn check_streaming(&self, id: &str, streams: [bool; 3], tty: bool) -> Result<MonitorClient> {
        let rec = self.containers.get(id)?;
        if rec.phase != ContainerPhase::Started || rec.exit.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if !streams.contains(&true) {
            return Err(Error::InvalidArgument(
                "one of stdin, stdout and stderr must be set".into(),
            ));
        }
        if tty && streams[2] {
            return Err(Error::InvalidArgument(
                "tty and stderr cannot both be set".into(),
            ));
        }
        Ok(self.monitor(&rec))
    }

    /// ReopenContainerLog: the monitor opens the log path again after kubelet renamed
    /// the file. A container that is not running gets an error and no new file.
    pub async fn reopen_log(&self, wanted: &str) -> Result<()> {
        let rec = self.containers.get(wanted)?;
        match self.monitor(&rec).reopen_log(&rec.id).await {
            Err(e) if e.is_unavailable() => Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            ))),
            r => Ok(r?),
        }
    }

    /// Chain ids of layers used by containers: image removal must keep these snapshots.
    pub fn chain_ids_in_use(&self) -> Result<HashSet<String>> {
        Ok(self
            .containers
            .select(|_| true)?
            .into_iter()
            .flat_map(|r| {
                let volumes = r.image_volumes.into_iter().flat_map(|v| v.chain_ids);
                r.chain_ids.into_iter().chain(volumes)
            })
            .collect())
    }

    /// Reloads container records; containers whose creation was interrupted are undone.
    pub async fn recover(&self) -> Result<()> {
        let (entries, orphans) = self.containers.load()?;
        for dir in orphans {
            warn!(dir = %dir.display(), "removing container dir without a record");
            let _ = std::fs::remove_dir_all(&dir);
        }
        for entry in entries {
            let rec = entry.get()?;
            if rec.phase == ContainerPhase::Creating || self.pods.get(&rec.pod_id).is_err() {
                warn!(container = %rec.id, "container creation was interrupted; removing it");
                self.undo_creation(&entry).await?;
            }
        }
        Ok(())
    }

    fn stop_signal(&self, rec: &ContainerRecord) -> i32 {
        if rec.stop_signal != 0 {
            return rec.stop_signal;
        }
        let from_image = self.images.get(&rec.image_id).and_then(|i| {
            i.config
                .config()
                .as_ref()
                .and_then(|c| c.stop_signal().clone())
        });
        from_image
            .and_then(|s| super::signal::number(&s))
            .unwrap_or(libc::SIGTERM)
    }
}

fn resolve_log_path(
    pod: &crate::sandbox::manager::PodRecord,
    c: &cri::ContainerConfig,
) -> Result<Option<PathBuf>> {
    if c.log_path.is_empty() || pod.log_directory().is_empty() {
        return Ok(None);
    }
    Ok(Some(super::validate::log_path(
        Path::new(pod.log_directory()),
        &c.log_path,
    )?))
}
