//! The pod's net, ipc and uts namespaces, pinned by bind mounts so they outlive every
//! process: containers join them by path, and CNI configures the pinned netns.
//!
//! `unshare` of these three namespace types only affects the calling thread, so they are
//! created on a dedicated short-lived std thread (never a tokio worker, which would carry
//! the namespaces into unrelated tasks). That thread sets the hostname, brings `lo` up,
//! bind-mounts its `/proc/thread-self/ns/<x>` files onto the pins and exits.
//!
//! A pod with host networking keeps the host's net and uts namespaces
//! ([`NamespaceSet::from_cri`]); only the others are created and pinned.
//!
//! A pod-wide PID namespace (`pid: POD`) cannot be made here: it needs a process to be
//! its init for as long as the pod lives. The pod's monitor starts that pod init and
//! mounts its namespace on the `pid` pin (`monitor/podinit.rs`); teardown here unmounts
//! it with the others.
//!
//! `lo` is brought up here (one rtnetlink request) rather than relying on the CNI
//! `loopback` plugin being configured: kubelet probes and in-pod traffic need it, and a
//! network config without `loopback` is common. Running `loopback` as well is harmless.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_cri::v1::{NamespaceMode, NamespaceOption};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::SandboxError;

mod loopback;
use loopback::bring_loopback_up;
mod owned;
use super::userns::UserNsMappings;

/// Paths of the pinned namespaces of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
    /// Mounted by the monitor when the pod shares a PID namespace.
    pub pid: PathBuf,
    /// The pod's own user namespace, which owns the others (`owned.rs`), if it has one.
    #[serde(default)]
    pub user: PathBuf,
}

impl PodNamespaces {
    /// `(namespace name as in /proc/<pid>/ns, pin path)`.
    pub fn iter(&self) -> [(&'static str, &Path); 5] {
        [
            ("user", &self.user),
            ("net", &self.net),
            ("ipc", &self.ipc),
            ("uts", &self.uts),
            ("pid", &self.pid),
        ]
    }

    /// The pins of `set` that exist once the pod is set up, except the PID one.
    pub fn created(&self, set: NamespaceSet) -> Vec<PathBuf> {
        (self.iter().into_iter())
            .filter(|(name, _)| set.contains(name))
            .map(|(_, pin)| pin.to_path_buf())
            .collect()
    }
}

/// Where the pins of the pod whose volatile directory is `dir` live (`<dir>/ns/<x>`).
pub fn namespace_paths(dir: &Path) -> PodNamespaces {
    let ns = dir.join("ns");
    PodNamespaces {
        net: ns.join("net"),
        ipc: ns.join("ipc"),
        uts: ns.join("uts"),
        pid: ns.join("pid"),
        user: ns.join("user"),
    }
}

/// Which namespaces a pod gets of its own; for the others its containers use the host's
/// (net, ipc, uts) or their own (pid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSet {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// One PID namespace for the whole pod, held by a pod init.
    #[serde(default)]
    pub pid: bool,
}

impl NamespaceSet {
    /// Kubelet's default: own net, ipc, uts; a PID namespace per container.
    pub const DEFAULT: NamespaceSet = NamespaceSet {
        net: true,
        ipc: true,
        uts: true,
        pid: false,
    };

    /// From the pod's CRI namespace options (validated): NODE means the host's. As in
    /// containerd, the UTS namespace follows the network one (a hostNetwork pod has the
    /// node's hostname).
    pub fn from_cri(options: Option<&NamespaceOption>) -> NamespaceSet {
        let own = |mode: i32| mode != NamespaceMode::Node as i32;
        match options {
            None => NamespaceSet::DEFAULT,
            Some(o) => NamespaceSet {
                net: own(o.network),
                ipc: own(o.ipc),
                uts: own(o.network),
                pid: o.pid == NamespaceMode::Pod as i32,
            },
        }
    }

    fn contains(self, name: &str) -> bool {
        match name {
            "net" => self.net,
            "ipc" => self.ipc,
            "uts" => self.uts,
            _ => false,
        }
    }

    fn clone_flags(self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        flags.set(CloneFlags::CLONE_NEWNET, self.net);
        flags.set(CloneFlags::CLONE_NEWIPC, self.ipc);
        flags.set(CloneFlags::CLONE_NEWUTS, self.uts);
        flags
    }
}

/// Creates fresh net/ipc/uts namespaces, sets the hostname in the uts one, brings `lo` up
/// in the net one, and pins each onto `<dir>/ns/<x>`. Rolls back everything on failure.
/// Fails without touching anything if pins already exist.
#[cfg(test)]
pub fn create_namespaces(dir: &Path, hostname: &str) -> Result<PodNamespaces, SandboxError> {
    create_namespace_set(dir, NamespaceSet::DEFAULT, hostname, None)
}

/// [`create_namespaces`] for the namespaces in `set` only; the returned paths of the
/// others do not exist. `hostname` is only used (and validated) with a uts namespace.
/// With `user`, a user namespace with those mappings is created first and owns the
/// others (`owned.rs`).
pub fn create_namespace_set(
    dir: &Path,
    set: NamespaceSet,
    hostname: &str,
    user: Option<&UserNsMappings>,
) -> Result<PodNamespaces, SandboxError> {
    if set.uts {
        crate::validation::check_hostname(hostname)?;
    }
    let paths = namespace_paths(dir);
    let job = PinJob {
        set,
        hostname: hostname.to_owned(),
        pins: (paths.iter().into_iter())
            .filter(|(name, _)| set.contains(name) || (*name == "user" && user.is_some()))
            .map(|(name, pin)| (name, pin.to_owned()))
            .collect(),
    };
    if job.pins.is_empty() {
        return Ok(paths);
    }
    for (_, pin) in &job.pins {
        if pin.symlink_metadata().is_ok() {
            let err = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(SandboxError::io("creating namespace pin", pin, err));
        }
    }
    let pinned = match user {
        None => create_pins(&job.pins).and_then(|()| unshare_and_pin(job)),
        Some(maps) => create_pins(&job.pins).and_then(|()| pin_owned(&job, maps)),
    };
    match pinned {
        Ok(()) => Ok(paths),
        Err(e) => Err(e.with_cleanup(remove_namespaces(dir))),
    }
}

/// What the namespace thread does: unshare `set`, set `hostname` (with uts), bring `lo`
/// up (with net), and bind-mount each new namespace onto its pin.
struct PinJob {
    set: NamespaceSet,
    hostname: String,
    pins: Vec<(&'static str, PathBuf)>,
}

/// Unmounts (MNT_DETACH) and deletes the pins of `dir`. Idempotent; keeps going past
/// errors and returns the first.
pub fn remove_namespaces(dir: &Path) -> Result<(), SandboxError> {
    let paths = namespace_paths(dir);
    let mut first = None;
    for (_, pin) in paths.iter() {
        if let Err(e) = remove_pin(pin) {
            first.get_or_insert(e);
        }
    }
    let ns_dir = dir.join("ns");
    match fs::remove_dir(&ns_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            first.get_or_insert(SandboxError::io("removing", ns_dir, e));
        }
        _ => {}
    }
    first.map_or(Ok(()), Err)
}

fn create_pins(pins: &[(&'static str, PathBuf)]) -> Result<(), SandboxError> {
    for (_, pin) in pins {
        if let Some(parent) = pin.parent() {
            fs::create_dir_all(parent).map_err(|e| SandboxError::io("creating", parent, e))?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(pin)
            .map_err(|e| SandboxError::io("creating namespace pin", pin, e))?;
    }
    Ok(())
}

/// The owned variant of [`unshare_and_pin`]: a forked helper unshares, `lo` comes up
/// from a thread that joins the pinned netns.
fn pin_owned(job: &PinJob, maps: &UserNsMappings) -> Result<(), SandboxError> {
    owned::unshare_owned_and_pin(&owned::OwnedJob {
        flags: job.set.clone_flags(),
        hostname: job.set.uts.then_some(job.hostname.as_str()),
        maps,
        pins: &job.pins,
    })?;
    match job.pins.iter().find(|(name, _)| *name == "net") {
        Some((_, net)) => owned::loopback_up_in(net),
        None => Ok(()),
    }
}

fn unshare_and_pin(job: PinJob) -> Result<(), SandboxError> {
    let handle = std::thread::Builder::new()
        .name("crius-podns".into())
        .spawn(move || pin_on_this_thread(&job))
        .map_err(|e| SandboxError::io("spawning namespace thread for", "/proc/thread-self", e))?;
    match handle.join() {
        Ok(result) => result,
        // A panic there is a bug, not an input problem: propagate it unchanged.
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs on the dedicated thread: its namespaces are discarded when it exits, except
/// through the bind mounts made here.
fn pin_on_this_thread(job: &PinJob) -> Result<(), SandboxError> {
    nix::sched::unshare(job.set.clone_flags()).map_err(|source| SandboxError::Sys {
        op: "unshare(net, ipc, uts)",
        source,
    })?;
    if job.set.uts {
        nix::unistd::sethostname(&job.hostname).map_err(|source| SandboxError::Sys {
            op: "sethostname",
            source,
        })?;
    }
    if job.set.net {
        bring_loopback_up()?;
    }
    for (name, pin) in &job.pins {
        let source = Path::new("/proc/thread-self/ns").join(name);
        nix::mount::mount(
            Some(&source),
            pin,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SandboxError::io("bind-mounting namespace onto", pin, e.into()))?;
    }
    Ok(())
}

fn remove_pin(pin: &Path) -> Result<(), SandboxError> {
    // A pin bind-mounted twice (only after manual meddling) needs one unmount per layer;
    // EINVAL means "not a mount point" and ENOENT "already gone": both are done.
    for _ in 0..8 {
        match nix::mount::umount2(pin, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(SandboxError::io("unmounting namespace pin", pin, e.into())),
        }
    }
    match fs::remove_file(pin) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(SandboxError::io("removing namespace pin", pin, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Removes the pins even when an assertion fails.
    struct Guard(PathBuf);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = remove_namespaces(&self.0);
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Runs `f` on a thread that has joined the namespace pinned at `pin`.
    fn in_ns<T: Send + 'static>(pin: &Path, kind: CloneFlags, f: fn() -> T) -> T {
        let pin = pin.to_path_buf();
        std::thread::spawn(move || {
            let fd = fs::File::open(&pin).unwrap();
            nix::sched::setns(fd, kind).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    fn mounted(path: &Path) -> bool {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = format!(" {} ", path.display());
        info.lines().any(|l| l.contains(&needle))
    }

    #[test]
    fn create_and_remove_pinned_namespaces() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let _guard = Guard(tmp.path().to_path_buf());
        let ns = create_namespaces(tmp.path(), "crius-test-pod").unwrap();
        assert_eq!(ns, namespace_paths(tmp.path()));
        for (name, pin) in ns
            .iter()
            .into_iter()
            .filter(|(n, _)| !["pid", "user"].contains(n))
        {
            let own = fs::metadata(format!("/proc/self/ns/{name}")).unwrap();
            let pinned = fs::metadata(pin).unwrap();
            assert_ne!(own.ino(), pinned.ino(), "{name} is the host's");
            assert!(mounted(pin), "{} not mounted", pin.display());
        }
        let host = in_ns(&ns.uts, CloneFlags::CLONE_NEWUTS, || {
            nix::unistd::gethostname().unwrap()
        });
        assert_eq!(host, "crius-test-pod");
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.net.display()))
            .args(["ip", "-o", "link", "show", "lo"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(",UP"), "lo not up: {text}");

        // A second create on live pins must not disturb them.
        assert!(create_namespaces(tmp.path(), "other").is_err());
        assert!(mounted(&ns.net));

        remove_namespaces(tmp.path()).unwrap();
        for (_, pin) in ns.iter() {
            assert!(!mounted(pin));
            assert!(!pin.exists());
        }
        assert!(!tmp.path().join("ns").exists());
        remove_namespaces(tmp.path()).unwrap();
    }

    #[test]
    fn host_network_pod_gets_only_ipc() {
        use k8s_cri::v1::NamespaceOption;
        let node = NamespaceMode::Node as i32;
        let host_net = NamespaceOption {
            network: node,
            ..Default::default()
        };
        let set = NamespaceSet::from_cri(Some(&host_net));
        assert_eq!((set.net, set.ipc, set.uts), (false, true, false));
        assert_eq!(NamespaceSet::from_cri(None), NamespaceSet::DEFAULT);
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let _guard = Guard(tmp.path().to_path_buf());
        // No uts namespace: the hostname is neither set nor validated.
        let ns = create_namespace_set(tmp.path(), set, "", None).unwrap();
        assert!(mounted(&ns.ipc));
        assert!(!ns.net.exists() && !ns.uts.exists());
        let own = fs::metadata("/proc/self/ns/ipc").unwrap().ino();
        assert_ne!(fs::metadata(&ns.ipc).unwrap().ino(), own);
        remove_namespaces(tmp.path()).unwrap();
        assert!(!mounted(&ns.ipc) && !ns.ipc.exists());
        let none = NamespaceSet {
            net: false,
            ipc: false,
            uts: false,
            pid: false,
        };
        create_namespace_set(tmp.path(), none, "", None).unwrap();
        assert!(!tmp.path().join("ns").exists());
    }

    #[test]
    fn invalid_hostname_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let err = create_namespaces(tmp.path(), "bad_name").unwrap_err();
        assert!(matches!(err, SandboxError::Input(_)));
        assert!(!tmp.path().join("ns").exists());
    }
}
