//! CreateContainer, its rollback, and the teardown shared with RemoveContainer.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tracing::{info, warn};

use super::{
    ContainerEntry, ContainerManager, ContainerPhase, ContainerRecord, EXIT_FILE, ImageVolume,
    KILL_GRACE, resolve_log_path,
};
use crate::container::record::name_key;
use crate::container::rootfs::{self, IdMapped, Overlay};

/// Under the bundle: where a pod user namespace's id-mapped layers are attached while
/// the overlay is mounted (emptied right after).
const IDMAP_SCRATCH: &str = "idmap";

fn pod_namespace_options(pod: &cri::PodSandboxConfig) -> Option<&cri::NamespaceOption> {
    let sc = pod.linux.as_ref()?.security_context.as_ref()?;
    sc.namespace_options.as_ref()
}
use crate::container::spec::{self, NamespacePaths, PodFiles, SpecInput};
use crate::container::user::resolve_user;
use crate::container::validate::validate_container_config;
use crate::container::volumes::{self, VolumeLayers};
use crate::error::{Error, Result};
use crate::events::EventType;
use crate::fault;
use crate::image::Image;
use crate::monitor::proto;
use crate::sandbox::manager::{PodPhase, PodRecord};
use crate::task::blocking;

/// Everything the blocking part of a create needs, owned so it can move to the pool.
struct BundleJob {
    rec: ContainerRecord,
    pod: PodRecord,
    image: Image,
    image_name: String,
    lower: Vec<PathBuf>,
    bundle: PathBuf,
    data: PathBuf,
    ns: crate::sandbox::namespaces::PodNamespaces,
    /// `/proc/<init>/ns/pid` of the container a TARGET pid mode names.
    target_pid: Option<PathBuf>,
    pod_dir: PathBuf,
    /// For each CRI mount, the layers of its image when it is an image volume.
    volume_layers: Vec<Option<VolumeLayers>>,
    host: Arc<spec::Host>,
}

/// Under the bundle: the image volumes' mount points (`container::volumes`).
const VOLUMES_DIR: &str = "volumes";

impl ContainerManager {
    pub async fn create(&self, req: cri::CreateContainerRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("container config is required".into()))?;
        let pod_entry = self.pods.entry(&req.pod_sandbox_id)?;
        // Shared: containers of one pod are created side by side, but the pod is not
        // stopped or removed under them.
        let _pod_op = pod_entry.shared().await;
        let pod = pod_entry.get()?;
        if pod.phase != PodPhase::Ready || !self.pods.is_current(&pod_entry, &pod.id)? {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        validate_container_config(&config, &pod.config)?;
        let target_pid = self.target_pid_namespace(&pod, &config).await?;
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
        let volumes = self.volume_images(&config)?;
        let record = new_record(&pod, config, &image, &volumes)?;
        let id = record.id.clone();
        // Every failure from here on drops `name`, which frees it for a retry.
        let name = self
            .containers
            .reserve_name(name_key(&pod.id, &record.config), &id)?;
        let entry = self.containers.insert(record.clone()).await?;
        let _op = entry.exclusive().await;
        let setup = self.setup(&record, pod, image, image_name, volumes, target_pid);
        let user = match setup.await {
            Ok(user) => user,
            Err(e) => {
                warn!(container = %id, error = %e, "create container failed; rolling back");
                if self.undo_creation(&entry).await? {
                    name.keep();
                }
                return Err(e);
            }
        };
        self.containers
            .save(&entry, |r| {
                r.phase = ContainerPhase::Created;
                r.user = Some(user);
            })
            .await?;
        name.keep();
        self.changes
            .container(EventType::ContainerCreatedEvent, &id, &record.pod_id);
        info!(container = %id, pod = %record.pod_id, "container created");
        Ok(id)
    }

    async fn setup(
        &self,
        rec: &ContainerRecord,
        pod: PodRecord,
        image: Image,
        image_name: String,
        volumes: Vec<Option<Image>>,
        target_pid: Option<PathBuf>,
    ) -> Result<cri::ContainerUser> {
        let volume_layers = volumes
            .iter()
            .map(|v| {
                v.as_ref().map(|i| VolumeLayers {
                    lower: self.images.snapshot_dirs(i),
                })
            })
            .collect();
        let job = BundleJob {
            volume_layers,
            host: self.settings.host.clone(),
            target_pid,
            lower: self.images.snapshot_dirs(&image),
            bundle: self.bundle(&rec.id),
            data: self.data_dir(&rec.id),
            ns: self.pods.namespaces(&pod.id),
            pod_dir: self.pods.run_dir(&pod.id),
            rec: rec.clone(),
            pod,
            image,
            image_name,
        };
        let (bundle, data) = (job.bundle.clone(), job.data.clone());
        let user = blocking("container bundle", move || write_bundle(&job)).await?;
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
                max_log_line: self.settings.max_log_line,
                stdin: rec.config.stdin,
                stdin_once: rec.config.stdin_once,
                tty: rec.config.tty,
            })
            .await?;
        Ok(user)
    }

    /// The image of each image volume mount (None for a host path). kubelet pulls them
    /// first, so one that is not here is NotFound, before anything is acquired.
    fn volume_images(&self, config: &cri::ContainerConfig) -> Result<Vec<Option<Image>>> {
        config
            .mounts
            .iter()
            .map(|m| {
                let Some(spec) = m.image.as_ref().filter(|i| !i.image.is_empty()) else {
                    return Ok(None);
                };
                let image = self
                    .images
                    .get(&spec.image)
                    .ok_or_else(|| Error::NotFound {
                        what: "image for image volume",
                        id: spec.image.clone(),
                    })?;
                Ok(Some(image))
            })
            .collect()
    }

    /// For a container whose pid mode is TARGET: the PID namespace of the running
    /// container it names, which must belong to the same pod. Like containerd, the
    /// namespace is named by the target's init pid; the monitor, which reaps that init,
    /// keeps the pid from being reused while the target's state says running.
    async fn target_pid_namespace(
        &self,
        pod: &PodRecord,
        config: &cri::ContainerConfig,
    ) -> Result<Option<PathBuf>> {
        let opts = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let Some(opts) = opts.filter(|o| o.pid == cri::NamespaceMode::Target as i32) else {
            return Ok(None);
        };
        if opts.target_id.is_empty() {
            return Err(Error::InvalidArgument(
                "pid namespace mode TARGET needs a target_id".into(),
            ));
        }
        let target = self.containers.get(&opts.target_id)?;
        if target.pod_id != pod.id {
            return Err(Error::InvalidArgument(format!(
                "pid namespace target {} belongs to another pod sandbox",
                target.id
            )));
        }
        let state = match self.monitor(&target).state(&target.id).await {
            Ok(st) => Some(st),
            Err(e) if e.is_unavailable() || e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        match state {
            Some(st) if st.status == proto::state::Status::Running as i32 && st.pid > 0 => {
                Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", st.pid))))
            }
            _ => Err(Error::FailedPrecondition(format!(
                "pid namespace target {} is not running",
                target.id
            ))),
        }
    }

    /// Rolls back a container that was never created; returns whether it stays recorded.
    /// If the teardown itself fails, the container is kept (and listed, with an unknown
    /// exit) instead of forgotten, so kubelet's RemoveContainer retries the teardown.
    pub(super) async fn undo_creation(&self, entry: &ContainerEntry) -> Result<bool> {
        let rec = entry.get()?;
        let Some(e) = self.teardown(&rec).await else {
            self.containers.forget(&rec).await?;
            return Ok(false);
        };
        warn!(container = %rec.id, error = %e, "rollback incomplete; keeping the record");
        self.containers
            .save(entry, |r| r.phase = ContainerPhase::Created)
            .await?;
        Ok(true)
    }

    /// Releases what a container holds (process, cgroup, rootfs mount, bundle), keeping
    /// going past failures; returns the first. Idempotent.
    pub(super) async fn teardown(&self, rec: &ContainerRecord) -> Option<Error> {
        let mut first: Option<Error> = None;
        let mon = self.monitor(rec);
        let _ = mon.kill(&rec.id, libc::SIGKILL).await;
        let _ = self.wait_exit(rec, KILL_GRACE).await;
        let mut monitor_gone = false;
        match mon.delete(&rec.id).await {
            Ok(()) => {}
            Err(e) if e.is_unavailable() || e.is_not_found() => monitor_gone = true,
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        let (bundle, cgroup_root) = (self.bundle(&rec.id), self.pods.cgroup_root().to_owned());
        let id = rec.id.clone();
        let released = blocking("container teardown", move || {
            // No monitor to do it: remove the cgroup ourselves.
            if monitor_gone
                && bundle.join("config.json").exists()
                && let Err(e) = crate::runtime::destroy(&bundle, &cgroup_root)
            {
                warn!(container = %id, error = %e, "destroying container cgroup");
            }
            // Before anything under the bundle is deleted: never through a mount.
            volumes::release(&bundle.join(VOLUMES_DIR))?;
            rootfs::unmount(&bundle.join("rootfs"))?;
            rootfs::clear_scratch(&bundle.join(IDMAP_SCRATCH))?;
            match std::fs::remove_dir_all(&bundle) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("removing", &bundle, e))
                }
                _ => Ok(()),
            }
        });
        if let Err(e) = released.await {
            first.get_or_insert(e);
        }
        first
    }
}

/// The record of a container about to be created, in phase `Creating`.
fn new_record(
    pod: &PodRecord,
    config: cri::ContainerConfig,
    image: &Image,
    volumes: &[Option<Image>],
) -> Result<ContainerRecord> {
    let image_volumes = config
        .mounts
        .iter()
        .zip(volumes)
        .filter_map(|(m, image)| {
            image.as_ref().map(|i| ImageVolume {
                container_path: m.container_path.clone(),
                image_id: i.id.clone(),
                chain_ids: i.chain_ids.clone(),
            })
        })
        .collect();
    let image_signal = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().clone());
    let stop_signal = crate::container::signal::resolve(&config, image_signal.as_deref())?;
    Ok(ContainerRecord {
        id: crate::id::new_id(),
        pod_id: pod.id.clone(),
        image_id: image.id.clone(),
        image_ref: image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or(image.id.clone()),
        chain_ids: image.chain_ids.clone(),
        image_volumes,
        log_path: resolve_log_path(pod, &config)?,
        config,
        created_at: crate::id::now_ns(),
        started_at: 0,
        phase: ContainerPhase::Creating,
        user: None,
        stop_signal,
        exit: None,
    })
}

/// Mounts the rootfs, resolves the user in it and writes `config.json`: the blocking
/// half of a create.
/// The CRI devices; a privileged container also gets every host device, the CRI ones
/// last so that their container paths win.
fn all_devices(config: &cri::ContainerConfig) -> Result<Vec<volumes::ResolvedDevice>> {
    let asked = volumes::resolve_devices(&config.devices)?;
    let privileged = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if !privileged {
        return Ok(asked);
    }
    let mut all = volumes::host_devices()?;
    all.retain(|d| !asked.iter().any(|a| a.container_path == d.container_path));
    all.extend(asked);
    Ok(all)
}

/// Writes `config.json`; returns the user its process runs as.
fn write_bundle(job: &BundleJob) -> Result<cri::ContainerUser> {
    let sc = job
        .rec
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    // First: a missing or malformed profile fails the create before anything is made.
    let seccomp = spec::seccomp::load(sc).map_err(spec::SpecError::from)?;
    let rootfs_dir = job.bundle.join("rootfs");
    fault::inject("overlay-mount")?;
    let scratch = job.bundle.join(IDMAP_SCRATCH);
    let maps = crate::sandbox::userns::pod_mappings(pod_namespace_options(&job.pod.config));
    rootfs::mount_overlay(&Overlay {
        lower: &job.lower,
        upper: &job.data.join(super::UPPER_DIR),
        work: &job.data.join("work"),
        empty: &job.data.join("empty"),
        target: &rootfs_dir,
        idmap: maps.map(|m| IdMapped {
            userns: &job.ns.user,
            root_uid: m.uid.host_id,
            root_gid: m.gid.host_id,
            scratch: &scratch,
        }),
    })?;
    let image_user = job
        .image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let user = resolve_user(&rootfs_dir, &image_user, sc)?;
    let config = &job.rec.config;
    let volumes_dir = job.bundle.join(VOLUMES_DIR);
    let mount_sources = volumes::prepare_sources(&config.mounts, &job.volume_layers, &volumes_dir)?;
    let devices = all_devices(config)?;
    fault::inject("container-spec")?;
    let cgroups_path = super::super::record::cgroup_path(&job.pod.cgroup, &job.rec.id);
    let spec = spec::generate(&SpecInput {
        sandbox_id: &job.pod.id,
        config: &job.rec.config,
        sandbox: &job.pod.config,
        image: &job.image.config,
        image_ref: &job.image_name,
        rootfs: &rootfs_dir,
        namespaces: NamespacePaths {
            net: &job.ns.net,
            ipc: &job.ns.ipc,
            uts: &job.ns.uts,
            pid: &job.ns.pid,
            user: &job.ns.user,
            target_pid: job.target_pid.as_deref(),
        },
        cgroups_path: &cgroups_path,
        pod_files: PodFiles {
            resolv_conf: &job.pod_dir.join("resolv.conf"),
            hosts: &job.pod_dir.join("hosts"),
            hostname: &job.pod_dir.join("hostname"),
        },
        user: &user,
        mount_sources: &mount_sources,
        devices: &devices,
        host: &job.host,
        seccomp: &seccomp,
    })?;
    let filter = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    if let Some(filter) = filter.filter(|_| seccomp.is_localhost()) {
        // What the container's init will compile, checked now so that a profile the
        // kernel's filter language cannot express is the caller's InvalidArgument.
        crate::runtime::check_seccomp(filter)?;
    }
    let config_json = job.bundle.join("config.json");
    let bytes = serde_json::to_vec(&spec)
        .map_err(|e| Error::io("encoding", &config_json, std::io::Error::other(e)))?;
    crate::store::write_atomic(&config_json, &bytes)?;
    Ok(user.to_cri())
}
