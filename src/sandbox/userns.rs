//! A pod's user namespace: the id mappings a POD-mode request asks for, checked before
//! anything is created.
//!
//! As containerd, crius takes exactly one uid and one gid mapping (kubelet sends one
//! range of 65536 ids per pod), and the mapping must give the container a root: id 0
//! inside. Ranges that wrap around the 32-bit id space are refused; the kernel would
//! refuse them later, after namespaces exist.

use k8s_cri::v1::{IdMapping, NamespaceMode, NamespaceOption, UserNamespace};
use serde::{Deserialize, Serialize};

use crate::validation::InputError;

/// One line of `/proc/<pid>/uid_map` or `gid_map`: `container_id host_id length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMap {
    /// The text the kernel takes in `uid_map` / `gid_map`.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// The uid and gid mappings of a pod's user namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNsMappings {
    pub uid: IdMap,
    pub gid: IdMap,
}

static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Set once at start from the id-mapped mount check on the image store: pod user
/// namespaces are only taken (and announced in Status) where it passed.
pub fn set_supported(yes: bool) {
    let _ = SUPPORTED.set(yes);
}

/// Whether this host can run pods in their own user namespace (false until checked).
pub fn supported() -> bool {
    SUPPORTED.get().copied().unwrap_or(false)
}

/// What a POD user namespace cannot be combined with, as kubelet refuses it too: the
/// host's network, IPC or PID namespace (sysfs, mqueue and proc cannot be mounted from
/// inside it). A pod-wide PID namespace is fine: its pod init is created owned by the
/// pod's user namespace (`monitor/podinit.rs`).
pub fn check_combination(o: &NamespaceOption) -> Result<(), InputError> {
    let node = NamespaceMode::Node as i32;
    if o.network == node || o.ipc == node || o.pid == node {
        let reason = "a pod user namespace cannot share the node's network, IPC or PID namespace";
        return Err(InputError::invalid("user namespace mode", "POD", reason));
    }
    Ok(())
}

/// The mappings of the pod's own user namespace, if its (validated) options ask for one.
pub fn pod_mappings(options: Option<&NamespaceOption>) -> Option<UserNsMappings> {
    let userns = options?.userns_options.as_ref()?;
    if userns.mode != NamespaceMode::Pod as i32 {
        return None;
    }
    check_mappings(userns).ok()
}

/// The mappings of a POD-mode user namespace request, or why they cannot be used.
pub fn check_mappings(userns: &UserNamespace) -> Result<UserNsMappings, InputError> {
    Ok(UserNsMappings {
        uid: one_mapping("user namespace uid mappings", &userns.uids)?,
        gid: one_mapping("user namespace gid mappings", &userns.gids)?,
    })
}

fn one_mapping(field: &'static str, maps: &[IdMapping]) -> Result<IdMap, InputError> {
    let shown = || {
        let lines: Vec<String> = maps
            .iter()
            .map(|m| format!("{} {} {}", m.container_id, m.host_id, m.length))
            .collect();
        lines.join(", ")
    };
    let [m] = maps else {
        let reason = if maps.is_empty() {
            "a pod user namespace needs one mapping"
        } else {
            "only one mapping is supported"
        };
        return Err(InputError::invalid(field, shown(), reason));
    };
    let reason = if m.length == 0 {
        "the length must not be 0"
    } else if m.container_id != 0 {
        "container id 0 (root) must be mapped"
    } else if m.host_id.checked_add(m.length).is_none() {
        "the host range passes the last id"
    } else {
        return Ok(IdMap {
            container_id: m.container_id,
            host_id: m.host_id,
            length: m.length,
        });
    };
    Err(InputError::invalid(field, shown(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    fn userns(uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
        UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids,
            gids,
        }
    }

    #[test]
    fn one_mapping_each_with_root_is_taken() {
        let ns = userns(vec![map(0, 1000, 100000)], vec![map(0, 2000, 65536)]);
        let m = check_mappings(&ns).unwrap();
        assert_eq!(m.uid.map_line(), "0 1000 100000\n");
        assert_eq!(m.gid.map_line(), "0 2000 65536\n");
        let top = userns(vec![map(0, u32::MAX - 10, 10)], vec![map(0, 0, 1)]);
        assert!(
            check_mappings(&top).is_ok(),
            "a range ending at the last id"
        );
    }

    #[test]
    fn bad_mappings_are_invalid_arguments() {
        let good = || vec![map(0, 1000, 65536)];
        let cases = [
            ("no uid mapping", userns(vec![], good())),
            ("no gid mapping", userns(good(), vec![])),
            (
                "two uid mappings",
                userns(vec![map(0, 1000, 10), map(10, 5000, 10)], good()),
            ),
            (
                "two gid mappings",
                userns(good(), vec![map(0, 1000, 10), map(10, 5000, 10)]),
            ),
            ("uid 0 unmapped", userns(vec![map(1, 1000, 65536)], good())),
            ("gid 0 unmapped", userns(good(), vec![map(1000, 0, 65536)])),
            ("empty range", userns(vec![map(0, 1000, 0)], good())),
            ("wrapping range", userns(good(), vec![map(0, u32::MAX, 2)])),
        ];
        for (what, ns) in cases {
            let err = check_mappings(&ns).expect_err(what);
            assert_eq!(
                crate::error::Classify::kind(&err),
                crate::error::Kind::InvalidArgument,
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn host_namespaces_are_refused() {
        let modes =
            |network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode| NamespaceOption {
                network: network as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                ..Default::default()
            };
        use NamespaceMode::{Container, Node, Pod};
        assert!(check_combination(&modes(Pod, Container, Pod)).is_ok());
        assert!(check_combination(&modes(Pod, Pod, Pod)).is_ok());
        for bad in [
            modes(Node, Container, Pod),
            modes(Pod, Node, Pod),
            modes(Pod, Container, Node),
        ] {
            assert!(check_combination(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_name_the_mapping() {
        let ns = userns(vec![map(0, 1, 2), map(2, 3, 4)], vec![map(0, 1, 2)]);
        assert_eq!(
            check_mappings(&ns).unwrap_err().to_string(),
            "invalid user namespace uid mappings \"0 1 2, 2 3 4\": only one mapping is supported"
        );
    }
}
