//! The `linux` section of the spec and the process's Linux-specific fields:
//! namespaces, capabilities, resources, sysctls, masked paths, device cgroup rules.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use k8s_cri::v1::{
    ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, NamespaceMode,
    NamespaceOption,
};
use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, LinuxResources,
};

use super::{SpecError, SpecInput};
use crate::container::volumes::ResolvedDevice;

/// containerd's default capability set for non-privileged containers.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability oci-spec knows, for "ALL" and privileged containers.
const ALL_CAPABILITIES: &[Capability] = &[
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Character devices every container may use (runc's default allow list):
/// (major, minor or None for all, access).
const ALLOWED_DEVICES: &[(i64, Option<i64>, &str)] = &[
    (1, Some(3), "rwm"),    // /dev/null
    (1, Some(5), "rwm"),    // /dev/zero
    (1, Some(7), "rwm"),    // /dev/full
    (1, Some(8), "rwm"),    // /dev/random
    (1, Some(9), "rwm"),    // /dev/urandom
    (5, Some(0), "rwm"),    // /dev/tty
    (5, Some(2), "rwm"),    // /dev/ptmx
    (136, None, "rwm"),     // /dev/pts/*
    (10, Some(200), "rwm"), // /dev/net/tun
];

/// Which pod namespaces the container shares with the host instead of the pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NamespaceModes {
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
}

impl NamespaceModes {
    /// Network and IPC belong to the pod, so the pod's options decide them (a container
    /// config that omits them must not claim namespaces the pod never made); PID is the
    /// container's. No options means the kubelet defaults: pod network and IPC, a PID
    /// namespace of the container's own.
    pub fn from_cri(
        pod: Option<&NamespaceOption>,
        container: Option<&LinuxContainerSecurityContext>,
    ) -> Result<Self, SpecError> {
        let (host_network, host_ipc) = match pod {
            Some(o) => (
                shared_mode("network", o.network)?,
                shared_mode("ipc", o.ipc)?,
            ),
            None => (false, false),
        };
        let Some(opts) = container.and_then(|s| s.namespace_options.as_ref()) else {
            return Ok(Self {
                host_network,
                host_ipc,
                host_pid: false,
            });
        };
        let host_pid = match mode("pid", opts.pid)? {
            NamespaceMode::Container => false,
            NamespaceMode::Node => true,
            NamespaceMode::Pod => {
                return Err(SpecError::unsupported(
                    "a pod-wide PID namespace (shareProcessNamespace; it needs a pod init process)",
                ));
            }
            NamespaceMode::Target => {
                return Err(SpecError::unsupported(
                    "PID namespace mode TARGET (ephemeral containers)",
                ));
            }
        };
        Ok(Self {
            host_network,
            host_ipc,
            host_pid,
        })
    }
}

fn mode(which: &str, value: i32) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(value).map_err(|_| {
        SpecError::invalid(
            format!("{which} namespace mode"),
            value.to_string(),
            "unknown namespace mode",
        )
    })
}

/// Network and IPC: the pod's namespace (POD, or CONTAINER which kubelet never sends for
/// them) or the host's (NODE). Returns whether it is the host's.
fn shared_mode(which: &str, value: i32) -> Result<bool, SpecError> {
    match mode(which, value)? {
        NamespaceMode::Pod | NamespaceMode::Container => Ok(false),
        NamespaceMode::Node => Ok(true),
        NamespaceMode::Target => Err(SpecError::unsupported(format!(
            "{which} namespace mode TARGET"
        ))),
    }
}

pub(super) struct LinuxInput<'a> {
    pub spec: &'a SpecInput<'a>,
    pub sc: Option<&'a LinuxContainerSecurityContext>,
    pub modes: NamespaceModes,
    pub rootfs_propagation: Option<String>,
    /// The process's bounding set, which decides the seccomp rules that apply.
    pub caps: &'a Capabilities,
}

pub(super) fn build(input: &LinuxInput) -> Result<Linux, SpecError> {
    let privileged = input.sc.is_some_and(|s| s.privileged);
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces(input)));
    let mut limits = match container_resources(input.spec.config) {
        Some(r) => super::resources::limits(r)?,
        None => LinuxResources::default(),
    };
    let (devices, rules) = devices(input.spec.devices);
    limits.set_devices(Some(device_rules().into_iter().chain(rules).collect()));
    linux.set_resources(Some(limits));
    linux.set_cgroups_path(Some(PathBuf::from(input.spec.cgroups_path)));
    linux.set_sysctl(Some(sysctls(input)?));
    linux.set_rootfs_propagation(input.rootfs_propagation.clone());
    linux.set_devices((!devices.is_empty()).then_some(devices));
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        masked_and_readonly_paths(input.sc)
    };
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_seccomp(super::seccomp::build(input.spec.seccomp, input.caps)?);
    Ok(linux)
}

fn namespaces(input: &LinuxInput) -> Vec<LinuxNamespace> {
    let paths = input.spec.namespaces;
    let ns = |typ, path: Option<&Path>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ);
        n.set_path(path.map(Path::to_path_buf));
        n
    };
    let mut out = Vec::new();
    if !input.modes.host_pid {
        out.push(ns(LinuxNamespaceType::Pid, None));
    }
    if !input.modes.host_ipc {
        out.push(ns(LinuxNamespaceType::Ipc, Some(paths.ipc)));
    }
    // Like containerd, a host-network container also keeps the host's UTS namespace.
    if !input.modes.host_network {
        out.push(ns(LinuxNamespaceType::Uts, Some(paths.uts)));
        out.push(ns(LinuxNamespaceType::Network, Some(paths.net)));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    out
}

/// CRI masked/readonly paths replace the defaults when the kubelet sends them.
fn masked_and_readonly_paths(
    sc: Option<&LinuxContainerSecurityContext>,
) -> (Vec<String>, Vec<String>) {
    let pick = |given: Option<&Vec<String>>, default: &[&str]| match given {
        Some(list) if !list.is_empty() => list.clone(),
        _ => default.iter().map(|s| s.to_string()).collect(),
    };
    (
        pick(sc.map(|s| &s.masked_paths), DEFAULT_MASKED_PATHS),
        pick(sc.map(|s| &s.readonly_paths), DEFAULT_READONLY_PATHS),
    )
}

/// Default set, plus CRI adds, minus CRI drops ("ALL" accepted in both, drops applied
/// last as in containerd); privileged containers get every capability.
pub(super) fn capabilities(
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<LinuxCapabilities, SpecError> {
    let mut set: Capabilities = if sc.is_some_and(|s| s.privileged) {
        ALL_CAPABILITIES.iter().copied().collect()
    } else {
        DEFAULT_CAPABILITIES.iter().copied().collect()
    };
    if let Some(caps) = sc.and_then(|s| s.capabilities.as_ref()) {
        if !caps.add_ambient_capabilities.is_empty() {
            return Err(SpecError::unsupported("ambient capabilities"));
        }
        for name in &caps.add_capabilities {
            set.extend(parse_capabilities(name)?);
        }
        for name in &caps.drop_capabilities {
            for cap in parse_capabilities(name)? {
                set.remove(&cap);
            }
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    Ok(caps)
}

fn parse_capabilities(name: &str) -> Result<HashSet<Capability>, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" {
        return Ok(ALL_CAPABILITIES.iter().copied().collect());
    }
    Capability::from_str(bare)
        .map(|c| HashSet::from([c]))
        .map_err(|_| SpecError::invalid("capability", name, "unknown Linux capability"))
}

pub(super) fn oom_score_adj(config: &ContainerConfig) -> Result<Option<i32>, SpecError> {
    let Some(res) = container_resources(config) else {
        return Ok(None);
    };
    match i32::try_from(res.oom_score_adj) {
        Ok(adj) if (-1000..=1000).contains(&adj) => Ok(Some(adj)),
        _ => Err(SpecError::invalid(
            "oom_score_adj",
            res.oom_score_adj.to_string(),
            "must be between -1000 and 1000",
        )),
    }
}

fn container_resources(config: &ContainerConfig) -> Option<&LinuxContainerResources> {
    config.linux.as_ref()?.resources.as_ref()
}

/// The CRI devices as spec devices, and the cgroup rules that let the container use them
/// with the permissions asked for (containerd's WithDevices).
fn devices(resolved: &[ResolvedDevice]) -> (Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>) {
    resolved
        .iter()
        .map(|d| {
            let typ = if d.typ == 'b' {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            let mut dev = LinuxDevice::default();
            dev.set_path(d.container_path.clone());
            dev.set_typ(typ);
            dev.set_major(d.major as i64);
            dev.set_minor(d.minor as i64);
            dev.set_file_mode(Some(d.file_mode));
            dev.set_uid(Some(d.uid));
            dev.set_gid(Some(d.gid));
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(typ));
            rule.set_major(Some(d.major as i64));
            rule.set_minor(Some(d.minor as i64));
            rule.set_access(Some(d.permissions.clone()));
            (dev, rule)
        })
        .unzip()
}

/// Deny every device, then allow the standard character devices.
fn device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(Some(LinuxDeviceType::A));
    deny_all.set_access(Some("rwm".to_string()));
    let allowed = ALLOWED_DEVICES.iter().map(|&(major, minor, access)| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(major));
        rule.set_minor(minor);
        rule.set_access(Some(access.to_string()));
        rule
    });
    std::iter::once(deny_all).chain(allowed).collect()
}

/// Pod sysctls; only namespaced ones can be set per container, and only when the
/// container has its own namespace of that kind.
fn sysctls(input: &LinuxInput) -> Result<HashMap<String, String>, SpecError> {
    let Some(linux) = input.spec.sandbox.linux.as_ref() else {
        return Ok(HashMap::new());
    };
    for key in linux.sysctls.keys() {
        check_sysctl(key, input.modes)?;
    }
    Ok(linux.sysctls.clone().into_iter().collect())
}

pub(super) fn check_sysctl(key: &str, modes: NamespaceModes) -> Result<(), SpecError> {
    // Kubelet accepts '/' as a separator too (net/ipv4/ip_forward).
    let k = key.replace('/', ".");
    let ipc = k.starts_with("kernel.shm")
        || k.starts_with("kernel.msg")
        || k == "kernel.sem"
        || k.starts_with("fs.mqueue.");
    let net = k.starts_with("net.");
    if !ipc && !net {
        return Err(SpecError::invalid(
            "sysctl",
            key,
            "not a namespaced sysctl; only net.*, kernel.shm*, kernel.msg*, kernel.sem and \
             fs.mqueue.* can be set for a pod",
        ));
    }
    if net && modes.host_network {
        return Err(SpecError::invalid(
            "sysctl",
            key,
            "net.* sysctls cannot be set for a pod using the host network",
        ));
    }
    if ipc && modes.host_ipc {
        return Err(SpecError::invalid(
            "sysctl",
            key,
            "IPC sysctls cannot be set for a pod using the host IPC namespace",
        ));
    }
    Ok(())
}
