//! OCI runtime spec (`config.json`) generation for a CRI container.
//!
//! [`generate`] is a pure function of the CRI request, the image configuration and the
//! paths that the image and sandbox layers already prepared (rootfs, pinned namespaces,
//! pod files, the resolved user). It follows containerd's `internal/cri` choices unless a
//! comment says otherwise; the Linux section and the mount list live in the child modules.

pub mod capabilities;
#[cfg(test)]
mod capabilities_tests;
mod linux;
#[cfg(test)]
mod linux_tests;
mod lsm;
mod mounts;
mod namespaces;
mod resources;
pub mod seccomp;
mod seccomp_profile;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, LinuxContainerSecurityContext, PodSandboxConfig};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Process, Root, Spec, User};

pub use super::error::SpecError;
use crate::container::user::ResolvedUser;
use crate::container::volumes::ResolvedDevice;
pub use lsm::DefaultProfile;

/// Used when neither the image nor the CRI config sets PATH (same value as containerd).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const ANNOTATION_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const ANNOTATION_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const ANNOTATION_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub const ANNOTATION_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub const ANNOTATION_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub const ANNOTATION_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// The pod's pinned namespaces (bind-mounted nsfs files) a container joins.
#[derive(Debug, Clone, Copy)]
pub struct NamespacePaths<'a> {
    pub net: &'a Path,
    pub ipc: &'a Path,
    pub uts: &'a Path,
    /// The pod's shared PID namespace (only mounted for a pod whose pid mode is POD).
    pub pid: &'a Path,
    /// The pod's user namespace (only pinned for a pod whose user namespace mode is POD).
    pub user: &'a Path,
    /// The PID namespace of the container named by a TARGET pid mode, resolved by the
    /// caller (`/proc/<its init>/ns/pid`).
    pub target_pid: Option<&'a Path>,
}

/// Per-pod files bind-mounted into every container.
#[derive(Debug, Clone, Copy)]
pub struct PodFiles<'a> {
    pub resolv_conf: &'a Path,
    pub hosts: &'a Path,
    pub hostname: &'a Path,
}

/// Everything [`generate`] needs; the caller has validated `config` and `sandbox`.
#[derive(Debug, Clone, Copy)]
pub struct SpecInput<'a> {
    pub sandbox_id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a PodSandboxConfig,
    pub image: &'a ImageConfiguration,
    /// Image name recorded in the annotations.
    pub image_ref: &'a str,
    /// Absolute path of the mounted container rootfs.
    pub rootfs: &'a Path,
    pub namespaces: NamespacePaths<'a>,
    /// Relative cgroup path, e.g. `crius/pod-<sid>/<cid>`.
    pub cgroups_path: &'a str,
    pub pod_files: PodFiles<'a>,
    pub user: &'a ResolvedUser,
    /// The host side of each of `config.mounts`, same order (`container::volumes`).
    pub mount_sources: &'a [PathBuf],
    /// `config.devices` as host device nodes.
    pub devices: &'a [ResolvedDevice],
    /// The seccomp profile chosen and read by [`seccomp::load`].
    pub seccomp: &'a seccomp::Loaded,
    pub host: &'a Host,
}

/// What the host lets containers have, read once at start.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// The daemon's bounding set: the most any container may hold.
    pub capabilities: oci_spec::runtime::Capabilities,
    /// AppArmor is enabled in the kernel.
    pub apparmor: bool,
    /// The profile RuntimeDefault asks for, where AppArmor is enabled.
    pub apparmor_default: DefaultProfile,
    /// SELinux is enabled in the kernel.
    pub selinux: bool,
}

/// The limits UpdateContainerResources writes to a container's cgroup, validated and
/// mapped exactly as at create.
pub fn resource_limits(
    r: &k8s_cri::v1::LinuxContainerResources,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    resources::limits(r)
}

/// Builds the OCI runtime spec for one container.
/// Whether the container's namespace options fit its pod's, checked before anything is
/// acquired (the same rules [`generate`] applies).
pub fn check_namespace_options(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
) -> Result<(), SpecError> {
    let pod_options = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    namespaces::NamespaceModes::from_cri(pod_options, security_context(config)).map(|_| ())
}

pub fn generate(input: &SpecInput) -> Result<Spec, SpecError> {
    let sc = security_context(input.config);
    let pod_options = input
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let modes = namespaces::NamespaceModes::from_cri(pod_options, sc)?;
    let mounts = mounts::build(&mounts::MountInput {
        config: input.config,
        sources: input.mount_sources,
        pod_files: input.pod_files,
        readonly_rootfs: sc.is_some_and(|s| s.readonly_rootfs),
        privileged: sc.is_some_and(|s| s.privileged),
        idmap: modes.user.is_some(),
    })?;

    let mut spec = Spec::default();
    spec.set_version("1.1.0".to_string());
    let process = process(input, sc)?;
    let caps = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    spec.set_process(Some(process));
    spec.set_root(Some(root(input.rootfs, sc)));
    // Without its own UTS namespace the container cannot (and must not) set the hostname.
    let hostname = (!modes.host_network && !input.sandbox.hostname.is_empty())
        .then(|| input.sandbox.hostname.clone());
    spec.set_hostname(hostname);
    spec.set_domainname(None);
    spec.set_mounts(Some(mounts.mounts));
    spec.set_annotations(Some(annotations(input)));
    spec.set_linux(Some(linux::build(&linux::LinuxInput {
        spec: input,
        sc,
        modes,
        rootfs_propagation: mounts.rootfs_propagation,
        caps: &caps,
    })?));
    Ok(spec)
}

fn security_context(config: &ContainerConfig) -> Option<&LinuxContainerSecurityContext> {
    config.linux.as_ref()?.security_context.as_ref()
}

fn root(rootfs: &Path, sc: Option<&LinuxContainerSecurityContext>) -> Root {
    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(sc.is_some_and(|s| s.readonly_rootfs)));
    root
}

fn process(
    input: &SpecInput,
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<Process, SpecError> {
    let image = input.image.config().as_ref();
    let mut p = Process::default();
    p.set_terminal(Some(input.config.tty));
    p.set_console_size(None);
    p.set_args(Some(command(input.config, input.image)?));
    p.set_env(Some(environment(input)));
    p.set_cwd(working_dir(
        input.config,
        image.and_then(|c| c.working_dir().as_deref()),
    ));
    p.set_user(user(input.user));
    p.set_capabilities(Some(capabilities::build(sc, &input.host.capabilities)?));
    // Inherit the daemon's rlimits like containerd does: raising RLIMIT_NOFILE above the
    // daemon's hard limit needs CAP_SYS_RESOURCE, which the daemon may not hold.
    p.set_rlimits(None);
    p.set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)));
    p.set_oom_score_adj(linux::oom_score_adj(input.config)?);
    p.set_apparmor_profile(lsm::apparmor_profile(sc, input.host)?);
    lsm::check_selinux(sc, input.host)?;
    p.set_selinux_label(None);
    Ok(p)
}

/// Kubelet's rules: a CRI command replaces the image entrypoint *and* cmd; CRI args alone
/// replace only the image cmd.
pub fn command(
    config: &ContainerConfig,
    image: &ImageConfiguration,
) -> Result<Vec<String>, SpecError> {
    let args = if !config.command.is_empty() {
        config.command.iter().chain(&config.args).cloned().collect()
    } else {
        let image = image.config().as_ref();
        let entrypoint = image
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default();
        let rest = if config.args.is_empty() {
            image.and_then(|c| c.cmd().clone()).unwrap_or_default()
        } else {
            config.args.clone()
        };
        entrypoint.into_iter().chain(rest).collect::<Vec<_>>()
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// HOSTNAME, then the image env, then the CRI envs; a later value for a key replaces the
/// earlier one in place so the order stays stable.
fn environment(input: &SpecInput) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = entry,
            None => env.push((key.to_string(), entry)),
        }
    };
    if !input.sandbox.hostname.is_empty() {
        set(format!("HOSTNAME={}", input.sandbox.hostname));
    }
    let image_env = input.image.config().as_ref().and_then(|c| c.env().as_ref());
    for entry in image_env.into_iter().flatten() {
        set(entry.clone());
    }
    if input.config.tty {
        // As containerd's WithTTY; the container's own env may still say otherwise.
        set("TERM=xterm".into());
    }
    for kv in &input.config.envs {
        set(format!("{}={}", kv.key, kv.value));
    }
    let mut out: Vec<String> = env.into_iter().map(|(_, entry)| entry).collect();
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH_ENV.to_string());
    }
    out
}

fn working_dir(config: &ContainerConfig, image_dir: Option<&str>) -> PathBuf {
    [Some(config.working_dir.as_str()), image_dir]
        .into_iter()
        .flatten()
        .find(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn user(resolved: &ResolvedUser) -> User {
    let mut u = User::default();
    u.set_uid(resolved.uid);
    u.set_gid(resolved.gid);
    u.set_umask(None);
    let gids = (!resolved.additional_gids.is_empty()).then(|| resolved.additional_gids.clone());
    u.set_additional_gids(gids);
    u.set_username(None);
    u
}

/// The CRI config annotations, then ours: ours win so a request cannot spoof them.
fn annotations(input: &SpecInput) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = input.config.annotations.clone().into_iter().collect();
    let meta = input.sandbox.metadata.as_ref();
    let container_name = input.config.metadata.as_ref().map(|m| m.name.clone());
    let ours = [
        (ANNOTATION_CONTAINER_TYPE, Some("container".to_string())),
        (ANNOTATION_CONTAINER_NAME, container_name),
        (ANNOTATION_SANDBOX_ID, Some(input.sandbox_id.to_string())),
        (ANNOTATION_SANDBOX_NAME, meta.map(|m| m.name.clone())),
        (
            ANNOTATION_SANDBOX_NAMESPACE,
            meta.map(|m| m.namespace.clone()),
        ),
        (ANNOTATION_SANDBOX_UID, meta.map(|m| m.uid.clone())),
        (ANNOTATION_IMAGE_NAME, Some(input.image_ref.to_string())),
    ];
    for (key, value) in ours {
        if let Some(value) = value {
            out.insert(key.to_string(), value);
        }
    }
    out
}
