//! The pod's namespaces when it has a user namespace of its own: the net, ipc and uts
//! namespaces must be owned by that user namespace, or a container root inside it cannot
//! mount sysfs, set the hostname or configure its network.
//!
//! `unshare(CLONE_NEWUSER)` is refused (EINVAL) in a multithreaded process, so a forked
//! helper does it. It unshares the user namespace together with the others in one call:
//! the kernel then creates the user namespace first and makes it the owner of the rest
//! (user_namespaces(7)). The helper sets the hostname, reports, and waits; the daemon
//! writes its `uid_map` and `gid_map` (as a privileged parent, so `setgroups` stays
//! `allow`), bind-mounts its `/proc/<pid>/ns/<x>` onto the pins, and lets it exit.
//!
//! Between fork and exit the helper only makes raw system calls (no allocation, no
//! locks), as a child of a multithreaded process must. `lo` is brought up afterwards
//! from a daemon thread that joins the pinned netns.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};

use super::super::SandboxError;
use super::super::userns::UserNsMappings;

/// What the helper unshares and which of its namespaces are pinned where.
pub(super) struct OwnedJob<'a> {
    /// The namespaces besides the user one.
    pub flags: CloneFlags,
    pub hostname: Option<&'a str>,
    pub maps: &'a UserNsMappings,
    /// `(name in /proc/<pid>/ns, pin)`, the user namespace among them.
    pub pins: &'a [(&'static str, PathBuf)],
}

/// Creates the user namespace and the namespaces of `job.flags` owned by it, and pins
/// them. The pins exist (empty files); on error some may be mounted, which the caller's
/// rollback (`remove_namespaces`) undoes. No helper process outlives this call.
#[allow(unsafe_code)]
pub(super) fn unshare_owned_and_pin(job: &OwnedJob) -> Result<(), SandboxError> {
    let (ready_r, ready_w) = pipe()?;
    let (release_r, release_w) = pipe()?;
    // SAFETY: the child only runs `helper`, which makes async-signal-safe calls and
    // ends in `_exit`.
    match unsafe { nix::unistd::fork() } {
        Err(source) => Err(SandboxError::Sys {
            op: "fork (user namespace helper)",
            source,
        }),
        Ok(ForkResult::Child) => {
            drop((ready_r, release_w));
            helper(job.flags, job.hostname, ready_w, release_r)
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready_w, release_r));
            let result = wait_ready(ready_r)
                .and_then(|()| write_maps(child, job.maps))
                .and_then(|()| pin_from(child, job.pins));
            drop(release_w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| SandboxError::Sys {
        op: "pipe2 (user namespace helper)",
        source,
    })
}

/// The forked child: unshare, set the hostname, report 0 or the errno on `ready`, then
/// wait until the daemon closes `release` (or dies), and exit.
#[allow(unsafe_code)]
fn helper(flags: CloneFlags, hostname: Option<&str>, ready: OwnedFd, release: OwnedFd) -> ! {
    let mut result = nix::sched::unshare(flags | CloneFlags::CLONE_NEWUSER);
    if let (Ok(()), Some(name)) = (result, hostname) {
        result = nix::unistd::sethostname(name);
    }
    let code = match result {
        Ok(()) => 0i32,
        Err(e) => e as i32,
    };
    let _ = nix::unistd::write(&ready, &code.to_ne_bytes());
    let mut byte = [0u8; 1];
    let _ = nix::unistd::read(&release, &mut byte);
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // destructors, which a forked child must not run.
    unsafe { libc::_exit(0) }
}

/// Reads the helper's report: its errno, or EOF if it died first.
fn wait_ready(ready: OwnedFd) -> Result<(), SandboxError> {
    let mut buf = [0u8; 4];
    let mut file = fs::File::from(ready);
    let op = "unshare(user, net, ipc, uts)";
    match file.read_exact(&mut buf) {
        Ok(()) => match i32::from_ne_bytes(buf) {
            0 => Ok(()),
            errno => Err(SandboxError::Sys {
                op,
                source: nix::errno::Errno::from_raw(errno),
            }),
        },
        Err(e) => Err(SandboxError::io(op, "/proc/self/ns/user", e)),
    }
}

/// Writes the helper's `uid_map` and `gid_map`, each in one write as the kernel needs.
fn write_maps(child: Pid, maps: &UserNsMappings) -> Result<(), SandboxError> {
    for (file, map) in [("uid_map", maps.uid), ("gid_map", maps.gid)] {
        let path = PathBuf::from(format!("/proc/{child}/{file}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| SandboxError::io("opening", &path, e))?;
        f.write_all(map.map_line().as_bytes())
            .map_err(|e| SandboxError::io("writing", &path, e))?;
    }
    Ok(())
}

fn pin_from(child: Pid, pins: &[(&'static str, PathBuf)]) -> Result<(), SandboxError> {
    let ns_dir = PathBuf::from(format!("/proc/{child}/ns"));
    for (name, pin) in pins {
        let source = ns_dir.join(name);
        nix::mount::mount(
            Some(&source),
            pin.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SandboxError::io("bind-mounting namespace onto", pin, e.into()))?;
    }
    Ok(())
}

/// Brings `lo` up in the netns pinned at `pin`, from a short-lived thread that joins it.
pub(super) fn loopback_up_in(pin: &Path) -> Result<(), SandboxError> {
    let pin = pin.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("crius-podns".into())
        .spawn(move || {
            let fd = fs::File::open(&pin).map_err(|e| SandboxError::io("opening", &pin, e))?;
            nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(|source| {
                SandboxError::Sys {
                    op: "setns(net)",
                    source,
                }
            })?;
            super::loopback::bring_loopback_up()
        })
        .map_err(|e| SandboxError::io("spawning namespace thread for", "/proc/thread-self", e))?;
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NamespaceSet, create_namespace_set, remove_namespaces};
    use crate::sandbox::userns::{IdMap, UserNsMappings};
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    /// The inode of the user namespace that owns the namespace pinned at `pin`.
    #[allow(unsafe_code)]
    fn owner(pin: &Path) -> u64 {
        const NS_GET_USERNS: libc::c_ulong = 0xb701;
        let f = std::fs::File::open(pin).unwrap();
        // SAFETY: an ioctl without arguments on an open nsfs fd; it returns a new fd.
        let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS as _) };
        assert!(
            fd >= 0,
            "NS_GET_USERNS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the fd was just returned to us and is owned by nothing else.
        let owner = unsafe { std::fs::File::from_raw_fd(fd) };
        owner.metadata().unwrap().ino()
    }

    fn nsenter(args: &[String], cmd: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(args)
            .args(cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn pod_namespaces_are_owned_by_its_user_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let map = |host_id| IdMap {
            container_id: 0,
            host_id,
            length: 100000,
        };
        let maps = UserNsMappings {
            uid: map(1000),
            gid: map(2000),
        };
        let set = NamespaceSet::DEFAULT;
        let made = create_namespace_set(tmp.path(), set, "crius-userns", Some(&maps));
        let ns = made
            .inspect_err(|_| drop(remove_namespaces(tmp.path())))
            .unwrap();
        let user = format!("--user={}", ns.user.display());
        let uid_map = nsenter(std::slice::from_ref(&user), &["cat", "/proc/self/uid_map"]);
        let gid_map = nsenter(std::slice::from_ref(&user), &["cat", "/proc/self/gid_map"]);
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            (words(&uid_map), words(&gid_map)),
            ("0 1000 100000".into(), "0 2000 100000".into())
        );
        let user_ino = std::fs::metadata(&ns.user).unwrap().ino();
        for pin in [&ns.net, &ns.ipc, &ns.uts] {
            assert_eq!(owner(pin), user_ino, "{} not owned", pin.display());
        }
        let uts = format!("--uts={}", ns.uts.display());
        assert_eq!(nsenter(&[uts], &["hostname"]).trim(), "crius-userns");
        let net = format!("--net={}", ns.net.display());
        let lo = nsenter(&[net], &["ip", "-o", "link", "show", "lo"]);
        assert!(lo.contains(",UP"), "lo not up: {lo}");
        // The pod's user namespace can id-map a mount (ext4 and tmpfs both can on 6.1+).
        let user_ns = std::fs::File::open(&ns.user).unwrap();
        crate::runtime::check_idmap(tmp.path(), &user_ns).unwrap();
        drop(user_ns);
        remove_namespaces(tmp.path()).unwrap();
        assert!(!ns.user.exists() && !tmp.path().join("ns").exists());
    }
}
