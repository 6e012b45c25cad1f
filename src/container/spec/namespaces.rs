//! Which namespaces a container creates, joins by path, or shares with the host, from the
//! pod's and the container's CRI `NamespaceOption`.

use std::path::Path;

use k8s_cri::v1::{LinuxContainerSecurityContext, NamespaceMode, NamespaceOption};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::{NamespacePaths, SpecError};
use crate::sandbox::userns::{UserNsMappings, pod_mappings};

/// Where the container's processes get their PIDs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum PidMode {
    /// A namespace of its own, the container's init is PID 1 (CONTAINER).
    #[default]
    Own,
    /// The pod's, held by the pod init (POD).
    Pod,
    /// The host's (NODE).
    Host,
    /// Another running container's of the same pod (TARGET).
    Target,
}

/// Which namespaces the container shares with the host instead of the pod, and its PID
/// namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NamespaceModes {
    pub host_network: bool,
    pub host_ipc: bool,
    pub pid: PidMode,
    /// The pod's own user namespace and its mappings (POD user namespace mode).
    pub user: Option<UserNsMappings>,
}

impl NamespaceModes {
    /// Network and IPC belong to the pod, so the pod's options decide them (a container
    /// config that omits them must not claim namespaces the pod never made). PID is the
    /// container's, and follows the pod's when the container sends no options. No
    /// options at all means kubelet's defaults: pod network and IPC, a PID namespace of
    /// the container's own.
    pub fn from_cri(
        pod: Option<&NamespaceOption>,
        container: Option<&LinuxContainerSecurityContext>,
    ) -> Result<Self, SpecError> {
        let (host_network, host_ipc, pod_pid) = match pod {
            Some(o) => (
                shared_mode("network", o.network)?,
                shared_mode("ipc", o.ipc)?,
                mode("pod pid", o.pid)?,
            ),
            None => (false, false, NamespaceMode::Container),
        };
        let wanted = match container.and_then(|s| s.namespace_options.as_ref()) {
            Some(opts) => container_pid_mode(opts)?,
            None => pod_pid,
        };
        let pid = match wanted {
            NamespaceMode::Container => PidMode::Own,
            NamespaceMode::Node => PidMode::Host,
            NamespaceMode::Target => PidMode::Target,
            NamespaceMode::Pod if pod_pid == NamespaceMode::Pod => PidMode::Pod,
            NamespaceMode::Pod => {
                return Err(SpecError::invalid(
                    "pid namespace mode",
                    "POD",
                    "the pod sandbox was created without a shared PID namespace (its pid \
                     mode is not POD)",
                ));
            }
        };
        Ok(Self {
            host_network,
            host_ipc,
            pid,
            user: pod_mappings(pod),
        })
    }
}

/// The container's own options: its network and IPC modes are the pod's business, but
/// must still be modes; `target_id` only goes with a TARGET pid mode.
fn container_pid_mode(opts: &NamespaceOption) -> Result<NamespaceMode, SpecError> {
    shared_mode("network", opts.network)?;
    shared_mode("ipc", opts.ipc)?;
    let pid = mode("pid", opts.pid)?;
    if pid != NamespaceMode::Target && !opts.target_id.is_empty() {
        return Err(SpecError::invalid(
            "namespace target_id",
            &opts.target_id,
            "only a TARGET pid namespace mode names a target container",
        ));
    }
    Ok(pid)
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
        NamespaceMode::Target => Err(SpecError::invalid(
            format!("{which} namespace mode"),
            "TARGET",
            "only the PID namespace can be a target container's",
        )),
    }
}

/// The spec's namespace list: joined ones by path, new ones without.
pub(super) fn build(
    modes: NamespaceModes,
    paths: &NamespacePaths,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let ns = |typ, path: Option<&Path>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ);
        n.set_path(path.map(Path::to_path_buf));
        n
    };
    let mut out = Vec::new();
    if modes.user.is_some() {
        out.push(ns(LinuxNamespaceType::User, Some(paths.user)));
    }
    match modes.pid {
        PidMode::Own => out.push(ns(LinuxNamespaceType::Pid, None)),
        PidMode::Pod => out.push(ns(LinuxNamespaceType::Pid, Some(paths.pid))),
        PidMode::Target => {
            let Some(target) = paths.target_pid else {
                return Err(SpecError::invalid(
                    "pid namespace target_id",
                    "",
                    "TARGET needs the id of a running container of the pod",
                ));
            };
            out.push(ns(LinuxNamespaceType::Pid, Some(target)));
        }
        PidMode::Host => {}
    }
    if !modes.host_ipc {
        out.push(ns(LinuxNamespaceType::Ipc, Some(paths.ipc)));
    }
    // Like containerd, a host-network container also keeps the host's UTS namespace.
    if !modes.host_network {
        out.push(ns(LinuxNamespaceType::Uts, Some(paths.uts)));
        out.push(ns(LinuxNamespaceType::Network, Some(paths.net)));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    Ok(out)
}
