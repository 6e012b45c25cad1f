//! The `linux` section of the spec and the process's Linux-specific fields:
//! namespaces, capabilities, resources, sysctls, masked paths, device cgroup rules.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_cri::v1::{ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext};
use oci_spec::runtime::{Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::namespaces::{self, NamespaceModes};
use super::{SpecError, SpecInput};
use crate::container::volumes::ResolvedDevice;

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

pub(super) struct LinuxInput<'a> {
    pub spec: &'a SpecInput<'a>,
    pub sc: Option<&'a LinuxContainerSecurityContext>,
    pub modes: NamespaceModes,
    pub rootfs_propagation: Option<String>,
    /// The process's bounding set, which decides the seccomp rules that apply.
    pub caps: &'a oci_spec::runtime::Capabilities,
}

fn id_mapping(
    m: crate::sandbox::userns::IdMap,
) -> Result<oci_spec::runtime::LinuxIdMapping, SpecError> {
    oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(m.container_id)
        .host_id(m.host_id)
        .size(m.length)
        .build()
        .map_err(|_| SpecError::invalid("user namespace mapping", m.map_line().trim(), "unusable"))
}

pub(super) fn build(input: &LinuxInput) -> Result<Linux, SpecError> {
    let privileged = input.sc.is_some_and(|s| s.privileged);
    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces::build(
        input.modes,
        &input.spec.namespaces,
    )?));
    if let Some(maps) = input.modes.user {
        linux.set_uid_mappings(Some(vec![id_mapping(maps.uid)?]));
        linux.set_gid_mappings(Some(vec![id_mapping(maps.gid)?]));
    }
    let mut limits = match container_resources(input.spec.config) {
        Some(r) => super::resources::limits(r)?,
        None => LinuxResources::default(),
    };
    let (devices, rules) = devices(input.spec.devices);
    let rules = match privileged {
        true => vec![device_rule(false, LinuxDeviceType::A, None, None)],
        false => device_rules().into_iter().chain(rules).collect(),
    };
    limits.set_devices(Some(rules));
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

/// kubelet always sends a security context with both lists (the defaults, or empty for
/// an Unmasked procMount), so a context's lists are taken as they are: empty means none.
/// A client that sends no security context at all gets the defaults.
fn masked_and_readonly_paths(
    sc: Option<&LinuxContainerSecurityContext>,
) -> (Vec<String>, Vec<String>) {
    let defaults = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    match sc {
        Some(sc) => (sc.masked_paths.clone(), sc.readonly_paths.clone()),
        None => (
            defaults(DEFAULT_MASKED_PATHS),
            defaults(DEFAULT_READONLY_PATHS),
        ),
    }
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
    let deny_all = device_rule(true, LinuxDeviceType::A, None, None);
    let allowed = ALLOWED_DEVICES.iter().map(|&(major, minor, access)| {
        let mut rule = device_rule(false, LinuxDeviceType::C, Some(major), minor);
        rule.set_access(Some(access.to_string()));
        rule
    });
    std::iter::once(deny_all).chain(allowed).collect()
}

/// A rwm rule; `deny` false allows. A privileged container gets one allow-all rule.
fn device_rule(
    deny: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(!deny);
    rule.set_typ(Some(typ));
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// Pod sysctls; only namespaced ones can be set per container, and only when the
/// container has its own namespace of that kind.
fn sysctls(input: &LinuxInput) -> Result<HashMap<String, String>, SpecError> {
    let Some(linux) = input.spec.sandbox.linux.as_ref() else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    for (key, value) in &linux.sysctls {
        let key = dotted(key);
        check_sysctl(&key, input.modes)?;
        out.insert(key, value.clone());
    }
    Ok(out)
}

/// The OCI form of a sysctl name: dots between parts. Kubelet accepts '/' as the
/// separator too; then a dot is part of a name (an interface `eth0.100`) and the two
/// swap, as kubelet's ConvertSysctlVariableToDotsSeparator does.
pub(super) fn dotted(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

pub(super) fn check_sysctl(key: &str, modes: NamespaceModes) -> Result<(), SpecError> {
    let k = key;
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
