//! The container's mount list: kernel filesystems, pod files, then the CRI bind mounts.
//!
//! Like containerd, a CRI mount replaces any default or pod-file mount on the same
//! destination (and a CRI `/dev` drops every default mount under `/dev`), and CRI mounts
//! are ordered by depth so that a parent never shadows a child.

use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, Mount as CriMount, MountPropagation};
use oci_spec::runtime::Mount;

use super::{PodFiles, SpecError};

pub(super) struct MountInput<'a> {
    pub config: &'a ContainerConfig,
    /// What to bind for each of `config.mounts` (same order): the resolved host path or
    /// the mounted image volume.
    pub sources: &'a [PathBuf],
    pub pod_files: PodFiles<'a>,
    pub readonly_rootfs: bool,
    /// Privileged containers get writable sysfs and cgroupfs, as in containerd.
    pub privileged: bool,
    /// The pod has a user namespace of its own: the CRI binds (volumes) are id-mapped
    /// through it (`ridmap`), so files show the owners they have on the host, as
    /// kubelet expects of a runtime (the pod files, read-only to it, are not).
    pub idmap: bool,
}

pub(super) struct Mounts {
    pub mounts: Vec<Mount>,
    /// `rshared`/`rslave` when a CRI mount needs the rootfs to propagate; None = private.
    pub rootfs_propagation: Option<String>,
}

/// (destination, type, source, options) of the kernel filesystems every container gets.
const DEFAULT_MOUNTS: &[(&str, &str, &str, &[&str])] = &[
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
    (
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

pub(super) fn build(input: &MountInput) -> Result<Mounts, SpecError> {
    let mut cri: Vec<(&CriMount, &Path)> = input
        .config
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let source = input.sources.get(i).map(PathBuf::as_path);
            (m, source.unwrap_or(Path::new(&m.host_path)))
        })
        .collect();
    // Stable sort keeps the request's order among mounts of equal depth.
    cri.sort_by_key(|(m, _)| depth(&m.container_path));
    let overridden: Vec<PathBuf> = cri.iter().map(|(m, _)| clean(&m.container_path)).collect();
    let dev_overridden = overridden.iter().any(|p| p == Path::new("/dev"));
    let keep = |dest: &str| {
        let dest = clean(dest);
        !(overridden.contains(&dest) || dev_overridden && dest.starts_with("/dev"))
    };

    let mut mounts = Vec::new();
    for (dest, typ, source, options) in DEFAULT_MOUNTS {
        if keep(dest) {
            let mut m = mount(dest, typ, Path::new(source), options);
            let writable = input.privileged && matches!(*typ, "sysfs" | "cgroup");
            if let Some(opts) = m.options_mut().as_mut().filter(|_| writable) {
                opts.retain(|o| o != "ro");
                opts.push("rw".to_string());
            }
            mounts.push(m);
        }
    }
    let pod_files = [
        ("/etc/hosts", input.pod_files.hosts),
        ("/etc/resolv.conf", input.pod_files.resolv_conf),
        ("/etc/hostname", input.pod_files.hostname),
    ];
    let mode = if input.readonly_rootfs { "ro" } else { "rw" };
    for (dest, source) in pod_files {
        if keep(dest) {
            mounts.push(mount(dest, "bind", source, &["rbind", "rprivate", mode]));
        }
    }

    let mut rootfs_propagation: Option<String> = None;
    for (m, source) in cri {
        let (mut options, needs) = bind_options(m)?;
        if input.idmap {
            options.push("ridmap");
        }
        // rshared wins over rslave: a bidirectional mount needs a shared rootfs.
        if needs.is_some() && rootfs_propagation.as_deref() != Some("rshared") {
            rootfs_propagation = needs.map(str::to_string);
        }
        mounts.push(mount(&m.container_path, "bind", source, &options));
    }
    Ok(Mounts {
        mounts,
        rootfs_propagation,
    })
}

/// Options for one CRI mount, and the rootfs propagation it requires.
fn bind_options(m: &CriMount) -> Result<(Vec<&'static str>, Option<&'static str>), SpecError> {
    let field = || format!("mount {} propagation", m.container_path);
    let (propagation, rootfs) = match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationPrivate) => ("rprivate", None),
        Ok(MountPropagation::PropagationHostToContainer) => ("rslave", Some("rslave")),
        Ok(MountPropagation::PropagationBidirectional) => ("rshared", Some("rshared")),
        Err(_) => {
            return Err(SpecError::invalid(
                field(),
                m.propagation.to_string(),
                "unknown mount propagation mode",
            ));
        }
    };
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(SpecError::unsupported(format!(
            "id-mapped mount of {}",
            m.container_path
        )));
    }
    // As in containerd, a read-only rootfs does not make the volumes read-only.
    // Validation has made sure `rro` comes with readonly and private propagation.
    let mode = match (m.readonly, m.recursive_read_only) {
        (true, true) => "rro",
        (true, false) => "ro",
        (false, _) => "rw",
    };
    Ok((vec!["rbind", propagation, mode], rootfs))
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// Lexical cleanup (no filesystem access): drops `.` and repeated or trailing slashes.
fn clean(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn depth(path: &str) -> usize {
    clean(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}
