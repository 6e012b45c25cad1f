//! The container's capability sets from the CRI security context, limited to what the
//! daemon itself may grant.
//!
//! A process can only ever hold capabilities in its bounding set, so asking the kernel
//! for more fails the container's capset. Like containerd (which reads `cap.Current()`
//! at start), "ALL" and privileged mean every capability the daemon has, and anything
//! else asked for is limited to that set.

use std::str::FromStr;

use k8s_cri::v1::LinuxContainerSecurityContext;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;

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

/// The daemon's own capabilities, in the spec's names: what a container may get at most.
pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Capabilities {
    names
        .into_iter()
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

/// Default set, then containerd's order: add "ALL", drop "ALL", the named adds, the named
/// drops (so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps the one added). Ambient
/// capabilities are also added to every other set, as the kernel only raises an ambient
/// capability that is permitted and inheritable. Everything is limited to `host`.
pub fn build(
    sc: Option<&LinuxContainerSecurityContext>,
    host: &Capabilities,
) -> Result<LinuxCapabilities, SpecError> {
    let privileged = sc.is_some_and(|s| s.privileged);
    let mut set: Capabilities = match privileged {
        true => host.clone(),
        false => DEFAULT_CAPABILITIES.iter().copied().collect(),
    };
    let mut ambient = Capabilities::new();
    if let Some(caps) = sc.and_then(|s| s.capabilities.as_ref()) {
        let adds = parse_all(&caps.add_capabilities)?;
        let drops = parse_all(&caps.drop_capabilities)?;
        ambient = parse_all(&caps.add_ambient_capabilities)?
            .iter()
            .filter_map(Named::one)
            .collect();
        if adds.iter().any(Named::is_all) {
            set.clone_from(host);
        }
        if drops.iter().any(Named::is_all) {
            set.clear();
        }
        set.extend(adds.iter().filter_map(Named::one));
        set.extend(ambient.iter().copied());
        for cap in drops.iter().filter_map(Named::one) {
            set.remove(&cap);
            ambient.remove(&cap);
        }
    }
    set.retain(|c| host.contains(c));
    ambient.retain(|c| set.contains(c));
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(ambient.clone()));
    caps.set_ambient(Some(ambient));
    Ok(caps)
}

/// A CRI capability name: "ALL" or one capability.
enum Named {
    All,
    One(Capability),
}

impl Named {
    fn is_all(&self) -> bool {
        matches!(self, Named::All)
    }

    /// The capability, unless this is "ALL" (which the caller handles in order).
    fn one(&self) -> Option<Capability> {
        match self {
            Named::All => None,
            Named::One(c) => Some(*c),
        }
    }
}

/// Accepts `NET_ADMIN`, `CAP_NET_ADMIN` and any case, as kubelet and crictl send both.
fn parse_all(names: &[String]) -> Result<Vec<Named>, SpecError> {
    names.iter().map(|n| parse(n)).collect()
}

fn parse(name: &str) -> Result<Named, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" {
        return Ok(Named::All);
    }
    Capability::from_str(bare)
        .map(Named::One)
        .map_err(|_| SpecError::invalid("capability", name, "unknown Linux capability"))
}
