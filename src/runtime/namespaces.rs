//! Which namespaces a process creates and which it joins. Namespaces given by path (the
//! pod's pinned net/ipc/uts) are opened by the caller before forking, so the child only
//! makes setns/unshare calls.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::{RuntimeError, io_err, sys_err};

/// The order namespaces are joined in: the user namespace first, since it owns the others
/// and gives the capabilities in them; the mount namespace last, since joining it changes
/// what paths mean (as runc and youki do).
const JOIN_ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// A namespace to setns into.
pub(super) struct Join {
    pub file: OwnedFd,
    pub kind: CloneFlags,
}

pub(super) struct NamespacePlan {
    /// Created by the intermediate process (before forking init).
    pub new: CloneFlags,
    /// Joined by the intermediate process, in `JOIN_ORDER`.
    pub join: Vec<Join>,
}

impl NamespacePlan {
    /// A new cgroup namespace is created by init itself, after the caller has moved it
    /// into its cgroup, so that the cgroup becomes the namespace's root.
    pub(super) fn new_cgroup(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWCGROUP)
    }

    pub(super) fn new_uts(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUTS)
    }

    /// Whether the process joins a user namespace, whose root init then becomes (once
    /// it has opened what it needs from the host, see `rootfs::prepare`).
    pub(super) fn joins_user(&self) -> bool {
        joins_user(&self.join)
    }

    /// The user namespace the process joins, if any.
    pub(super) fn user(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let user = self
            .join
            .iter()
            .find(|j| j.kind == CloneFlags::CLONE_NEWUSER);
        user.map(|j| j.file.as_fd())
    }
}

/// Whether `joins` take the process into another user namespace.
pub(super) fn joins_user(joins: &[Join]) -> bool {
    joins.iter().any(|j| j.kind == CloneFlags::CLONE_NEWUSER)
}

fn flag(typ: LinuxNamespaceType) -> Option<CloneFlags> {
    use LinuxNamespaceType as T;
    Some(match typ {
        T::Mount => CloneFlags::CLONE_NEWNS,
        T::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        T::Uts => CloneFlags::CLONE_NEWUTS,
        T::Ipc => CloneFlags::CLONE_NEWIPC,
        T::Pid => CloneFlags::CLONE_NEWPID,
        T::Network => CloneFlags::CLONE_NEWNET,
        T::User => CloneFlags::CLONE_NEWUSER,
        T::Time => return None,
    })
}

/// Plans the namespaces of a new container. A mount namespace is always created: the
/// runtime's mounts must never land in the caller's namespace.
pub(super) fn plan(spec: &[LinuxNamespace], bundle: &Path) -> Result<NamespacePlan, RuntimeError> {
    let mut plan = NamespacePlan {
        new: CloneFlags::CLONE_NEWNS,
        join: Vec::new(),
    };
    let mut joins: Vec<(CloneFlags, PathBuf)> = Vec::new();
    for ns in spec {
        let Some(kind) = flag(ns.typ()) else {
            return Err(RuntimeError::InvalidSpec {
                bundle: bundle.to_path_buf(),
                message: format!("{} namespaces are not supported", ns.typ()),
            });
        };
        match ns.path() {
            Some(path) => joins.push((kind, path.clone())),
            // A pod's user namespace is created, mapped and pinned by the daemon; the
            // runtime only joins one.
            None if kind == CloneFlags::CLONE_NEWUSER => {
                return Err(RuntimeError::InvalidSpec {
                    bundle: bundle.to_path_buf(),
                    message: "a user namespace can only be joined by path".into(),
                });
            }
            None => plan.new |= kind,
        }
    }
    for (_, kind) in JOIN_ORDER {
        for (k, path) in joins.iter().filter(|(k, _)| k == kind) {
            let file = File::open(path).map_err(|e| io_err("open namespace", path, e))?;
            plan.join.push(Join {
                file: file.into(),
                kind: *k,
            });
        }
    }
    Ok(plan)
}

/// The namespaces of a running container's init that are not the caller's, for exec to
/// join. One's own is skipped: setns into one's own user namespace is EINVAL, and once
/// in a pod's user namespace, joining a namespace the host's user namespace owns (the
/// host cgroup namespace a container without its own shares) is EPERM.
pub(super) fn of_process(pid: Pid) -> Result<Vec<Join>, RuntimeError> {
    let mut joins = Vec::new();
    for (name, kind) in JOIN_ORDER {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let file = File::open(&path).map_err(|e| io_err("open namespace", &path, e))?;
        if same_as_own(&file, name)? {
            continue;
        }
        joins.push(Join {
            file: file.into(),
            kind: *kind,
        });
    }
    Ok(joins)
}

/// Whether the namespace `file` is the caller's own namespace of type `name`.
fn same_as_own(file: &File, name: &str) -> Result<bool, RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let own_path = PathBuf::from(format!("/proc/self/ns/{name}"));
    let own = std::fs::metadata(&own_path).map_err(|e| io_err("stat namespace", &own_path, e))?;
    let theirs = file
        .metadata()
        .map_err(|e| io_err("stat namespace", &own_path, e))?;
    Ok((own.dev(), own.ino()) == (theirs.dev(), theirs.ino()))
}

/// While alive, the calling thread's next children are born in the pid namespace of
/// `joins`; dropped, it points them back where they were.
pub(super) struct PidNsForChildren {
    previous: File,
}

impl PidNsForChildren {
    pub(super) fn enter(joins: &[Join]) -> Result<PidNsForChildren, RuntimeError> {
        let path = Path::new("/proc/thread-self/ns/pid_for_children");
        let previous = File::open(path).map_err(|e| io_err("open namespace", path, e))?;
        if let Some(j) = joins.iter().find(|j| j.kind == CloneFlags::CLONE_NEWPID) {
            setns(&j.file, CloneFlags::CLONE_NEWPID).map_err(sys_err("setns pid"))?;
        }
        Ok(PidNsForChildren { previous })
    }
}

impl Drop for PidNsForChildren {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.previous, CloneFlags::CLONE_NEWPID) {
            // Later children of this thread would land in a container's pid namespace.
            tracing::error!(error = %e, "restoring the pid namespace for children failed");
        }
    }
}

/// In the intermediate process: join the given namespaces, then create the new ones
/// (except cgroup, see [`NamespacePlan::new_cgroup`]). A new pid namespace applies to the
/// children forked afterwards. The ids do not change: after joining a user namespace
/// the process is still host root (unmapped there), which keeps the host's 0700 state
/// dirs walkable; the caller becomes the namespace's root ([`become_root_in_userns`])
/// once it is done with host paths. The capabilities setns gives in the joined user
/// namespace suffice to join and create the namespaces it owns.
pub(super) fn enter(joins: &[Join], new: CloneFlags) -> Result<(), RuntimeError> {
    for j in joins {
        setns(&j.file, j.kind).map_err(sys_err("setns"))?;
    }
    let new = new - CloneFlags::CLONE_NEWCGROUP;
    if !new.is_empty() {
        unshare(new).map_err(sys_err("unshare"))?;
    }
    Ok(())
}

/// After joining a user namespace the ids are still the host's root, which is unmapped
/// there: files created would fail with EOVERFLOW. Become its root (host id = the
/// mapping's), as runc's nsexec does; capabilities in the namespace are kept, since the
/// old uid was not that namespace's root.
pub(super) fn become_root_in_userns() -> Result<(), RuntimeError> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    let (root_gid, root_uid) = (Gid::from_raw(0), Uid::from_raw(0));
    setresgid(root_gid, root_gid, root_gid).map_err(sys_err("setresgid in user namespace"))?;
    setresuid(root_uid, root_uid, root_uid).map_err(sys_err("setresuid in user namespace"))?;
    setgroups(&[]).map_err(sys_err("setgroups in user namespace"))
}

/// In init, once it is in its cgroup.
pub(super) fn enter_cgroup_ns() -> Result<(), RuntimeError> {
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys_err("unshare cgroup namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(typ: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    #[test]
    fn plan_creates_and_joins_in_order() {
        let spec = [
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
            ns(LinuxNamespaceType::Ipc, Some("/proc/self/ns/ipc")),
            ns(LinuxNamespaceType::Uts, None),
        ];
        let plan = plan(&spec, Path::new("/b")).unwrap();
        assert_eq!(
            plan.new,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS
        );
        let kinds: Vec<_> = plan.join.iter().map(|j| j.kind).collect();
        assert_eq!(kinds, [CloneFlags::CLONE_NEWIPC, CloneFlags::CLONE_NEWNET]);
        assert!(plan.new_uts() && !plan.new_cgroup());
    }

    #[test]
    fn a_new_user_namespace_is_rejected() {
        let spec = [ns(LinuxNamespaceType::User, None)];
        assert!(matches!(
            plan(&spec, Path::new("/b")),
            Err(RuntimeError::InvalidSpec { .. })
        ));
    }

    /// A user namespace given by path is joined before every other namespace.
    #[test]
    fn a_user_namespace_is_joined_first() {
        let spec = [
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
            ns(LinuxNamespaceType::User, Some("/proc/self/ns/user")),
        ];
        let plan = plan(&spec, Path::new("/b")).unwrap();
        let kinds: Vec<_> = plan.join.iter().map(|j| j.kind).collect();
        assert_eq!(kinds, [CloneFlags::CLONE_NEWUSER, CloneFlags::CLONE_NEWNET]);
        assert_eq!(plan.new, CloneFlags::CLONE_NEWNS);
    }

    /// exec skips joining a namespace the caller is already in (EINVAL for the user
    /// namespace, EPERM for the others once in a pod's user namespace).
    #[test]
    fn exec_joins_only_foreign_namespaces() {
        assert!(of_process(nix::unistd::getpid()).unwrap().is_empty());
    }
}
