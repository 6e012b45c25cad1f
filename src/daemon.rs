//! Daemon startup: directories, domain managers, recovery from disk, then the CRI server
//! until SIGTERM/SIGINT. Containers and their monitors are not touched on shutdown: they
//! do not depend on the daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::apparmor;

use crate::config::Config;
use crate::container::manager::{ContainerManager, ContainerSettings};
use crate::container::spec::DefaultProfile;
use crate::error::{Error, Result, error_chain};
use crate::grpc;
use crate::image::ImageStore;
use crate::sandbox::manager::{PodManager, PodSettings};
use crate::sandbox::network::Cni;

/// How long in-flight calls may run after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

pub async fn run(cfg: Config) -> Result<()> {
    // A certificate that will not load stops the daemon before it touches any state.
    let tls = crate::streaming::load_tls(&cfg.streaming).await?;
    let layout = cfg.layout();
    make_dir(&cfg.root, 0o711)?;
    make_dir(&cfg.run_root, 0o711)?;
    // Only root reads pod records, CNI results (addresses, routes) and bundles.
    let cni_results = cfg.run_root.join("cni-results");
    for d in [
        &layout.pods,
        &layout.containers,
        &layout.pod_run,
        &layout.container_run,
        &cni_results,
    ] {
        make_dir(d, 0o700)?;
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("locating", "/proc/self/exe", e))?;
    let images = Arc::new(ImageStore::open(
        layout.images.clone(),
        cfg.registry.config_path.clone(),
    )?);
    let changes = crate::events::Changes::channel();
    let apparmor = crate::runtime::apparmor_enabled();
    let apparmor_default = default_apparmor_profile(apparmor, layout.apparmor.clone()).await;
    let pods = Arc::new(PodManager::new(
        PodSettings {
            records: layout.pods.clone(),
            run_dir: layout.pod_run.clone(),
            cgroup_root: cfg.cgroup_root.clone(),
            cgroup_parent: cfg.cgroup_parent.clone(),
            exe,
        },
        Cni::new(cfg.cni.conf_dir.clone(), cfg.cni.bin_dirs.clone()).with_result_cache(cni_results),
        changes.0.clone(),
    ));
    let containers = Arc::new(ContainerManager::new(
        ContainerSettings {
            records: layout.containers.clone(),
            run_dir: layout.container_run.clone(),
            max_log_line: cfg.max_container_log_line_size,
            host: Arc::new(crate::container::spec::Host {
                capabilities: host_capabilities(),
                apparmor,
                apparmor_default,
                selinux: crate::runtime::selinux_enabled(),
            }),
        },
        pods.clone(),
        images.clone(),
        changes,
    ));
    log_idmap_support(&cfg.run_root.join("idmap-probe"), &layout.images);
    pods.recover().await?;
    containers.recover().await?;
    containers.start_events()?;
    // A pull or removal cut short by a crash can leave unreferenced snapshots and blobs.
    images.prune(&containers.chain_ids_in_use()?);
    let streaming = Arc::new(crate::streaming::Streaming::start(&cfg.streaming, tls).await?);
    let listener = grpc::bind(&cfg.socket)?;
    info!(socket = %cfg.socket.display(), "crius ready");
    let services = grpc::Services {
        config: cfg.clone(),
        pods,
        containers,
        images,
        streaming,
    };
    let stop = Arc::new(tokio::sync::Notify::new());
    let server = grpc::serve(listener, services, {
        let stop = stop.clone();
        async move { stop.notified().await }
    });
    // kubelet keeps its connection open forever, so a graceful drain alone would never
    // finish: after the signal, in-flight calls get a short grace period.
    let signalled = async {
        shutdown_signal().await;
        stop.notify_one();
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {},
        () = signalled => {},
    };
    let _ = std::fs::remove_file(&cfg.socket);
    info!("crius stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon still serves; it just stops on SIGKILL only.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

/// Loads crius's RuntimeDefault profile where AppArmor is enabled. A failure does not
/// stop the daemon: pods that ask for no profile of ours still run, and the others are
/// refused with the cause logged here.
async fn default_apparmor_profile(enabled: bool, dir: PathBuf) -> DefaultProfile {
    if !enabled {
        return DefaultProfile::default();
    }
    let name = apparmor::DEFAULT_PROFILE;
    match crate::task::blocking("apparmor profile", move || {
        apparmor::ensure_loaded(name, &dir)
    })
    .await
    {
        Ok(apparmor::Loaded::Already) => {
            info!(profile = name, "AppArmor profile already loaded");
            DefaultProfile::Loaded(name.into())
        }
        Ok(apparmor::Loaded::From(file)) => {
            info!(profile = name, file = %file.display(), "AppArmor profile loaded");
            DefaultProfile::Loaded(name.into())
        }
        Err(e) => {
            let why = error_chain(&e);
            warn!(profile = name, error = %why, "AppArmor profile not loaded: RuntimeDefault refused");
            DefaultProfile::Unavailable(format!("loading {name}: {why}"))
        }
    }
}

/// The daemon's bounding set, with what it lacks logged once: privileged containers and
/// "ALL" get exactly this set, never a capability the kernel would refuse.
fn host_capabilities() -> oci_spec::runtime::Capabilities {
    let held = crate::runtime::bounding_names();
    let missing: Vec<&str> = crate::runtime::CAPABILITY_NAMES
        .iter()
        .filter(|n| !held.contains(n))
        .copied()
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            missing = %missing.join(","),
            "capabilities outside crius's bounding set are never granted to containers"
        );
    }
    crate::container::spec::capabilities::from_names(held)
}

/// Whether the image store's filesystem takes id-mapped mounts, which pod user
/// namespaces need: logged, and decides whether they are taken and announced.
fn log_idmap_support(scratch: &Path, images: &Path) {
    let supported = match idmap_probe(scratch, images) {
        Ok(()) => {
            info!(path = %images.display(), "id-mapped mounts supported: pod user namespaces on");
            true
        }
        Err(e) => {
            info!(path = %images.display(), error = %e, "no id-mapped mounts: pod user namespaces off");
            false
        }
    };
    crate::sandbox::userns::set_supported(supported);
}

/// Id-maps a detached clone of `path` through a throwaway user namespace pinned under
/// `scratch`; removes the pin and `scratch` whatever happens.
fn idmap_probe(scratch: &Path, path: &Path) -> Result<()> {
    use crate::sandbox::namespaces::{self, NamespaceSet};
    use crate::sandbox::userns::{IdMap, UserNsMappings};
    let none = NamespaceSet {
        net: false,
        ipc: false,
        uts: false,
        pid: false,
    };
    let map = IdMap {
        container_id: 0,
        host_id: 1 << 20,
        length: 65536,
    };
    let maps = UserNsMappings { uid: map, gid: map };
    std::fs::create_dir_all(scratch).map_err(|e| Error::io("creating", scratch, e))?;
    let result = namespaces::create_namespace_set(scratch, none, "", Some(&maps))
        .map_err(Error::from)
        .and_then(|ns| {
            let user =
                std::fs::File::open(&ns.user).map_err(|e| Error::io("opening", &ns.user, e))?;
            Ok(crate::runtime::check_idmap(path, &user)?)
        });
    let cleanup = namespaces::remove_namespaces(scratch).map_err(Error::from);
    let _ = std::fs::remove_dir(scratch);
    result.and(cleanup)
}
