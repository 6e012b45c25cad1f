//! What a daemon may leave behind, how to find it, and how to remove it by force.

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Everything that belongs to one test daemon.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Directories nothing may stay mounted under (tempdir, socket dir).
    pub dirs: Vec<PathBuf>,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub cgroup_root: PathBuf,
    pub cgroup_parent: String,
    /// The CNI bridge whose ports must all be gone, if the daemon had a network.
    pub bridge: Option<String>,
    /// The crius binary: monitors are re-executions of it.
    pub binary: PathBuf,
}

/// Fails the test if anything of `scope` is left (mounts, cgroups below the parent,
/// bridge ports, monitor or container processes, pod and container state).
pub fn assert_no_leaks(scope: &Scope) {
    let leaks = wait_for_none(scope, Duration::from_secs(3));
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
}

/// `find` until it reports nothing or `patience` runs out: a monitor may take a moment
/// to exit after its pod is removed.
pub fn wait_for_none(scope: &Scope, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let leaks = find(scope);
        if leaks.is_empty() || Instant::now() >= deadline {
            return leaks;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every leftover, one line each.
pub fn find(scope: &Scope) -> Vec<String> {
    let mut leaks = Vec::new();
    for m in mounts_under(&scope.dirs) {
        leaks.push(format!("mount: {}", m.display()));
    }
    for cg in cgroups_under(scope) {
        leaks.push(format!("cgroup: {}", cg.display()));
    }
    for port in bridge_ports(scope) {
        leaks.push(format!(
            "interface on {}: {port}",
            scope.bridge.as_deref().unwrap_or("")
        ));
    }
    for (pid, why) in processes(scope) {
        leaks.push(format!("process {pid}: {why}"));
    }
    for dir in state_entries(scope) {
        leaks.push(format!("state: {}", dir.display()));
    }
    leaks
}

/// Kill, unmount, delete. Returns whether nothing is mounted under the scope any more
/// (only then may its directories be deleted recursively).
pub fn force_cleanup(scope: &Scope) -> bool {
    for _ in 0..20 {
        let pids: Vec<i32> = processes(scope)
            .into_iter()
            .map(|(pid, _)| pid)
            .chain(cgroup_pids(scope))
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut mounts = mounts_under(&scope.dirs);
    // Deepest first, so a parent's unmount does not hide a child still mounted.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        let _ = umount2(m, MntFlags::MNT_DETACH);
    }
    for port in bridge_ports(scope) {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &port])
            .status();
    }
    remove_cgroups(scope);
    mounts_under(&scope.dirs).is_empty()
}

/// Mount points under any of `dirs`, from /proc/self/mountinfo.
pub fn mounts_under(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let set: BTreeSet<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount(field)))
        .filter(|m| dirs.iter().any(|d| m.starts_with(d)))
        .collect();
    set.into_iter().collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The mounted hierarchies under the cgroup root (v1 controllers and v2), deduplicated
/// through symlinks such as `cpu -> cpu,cpuacct`.
fn hierarchies(cgroup_root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(cgroup_root) else {
        return Vec::new();
    };
    let set: BTreeSet<PathBuf> = entries
        .flatten()
        .filter_map(|e| fs::canonicalize(e.path()).ok())
        .filter(|p| p.is_dir())
        .collect();
    let mut all: Vec<PathBuf> = set.into_iter().collect();
    // A pure v2 host: the root itself is the hierarchy.
    if cgroup_root.join("cgroup.controllers").exists() {
        all = vec![cgroup_root.to_path_buf()];
    }
    all
}

/// Cgroup directories below the parent (the parent itself may stay).
fn cgroups_under(scope: &Scope) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in hierarchies(&scope.cgroup_root) {
        collect_subdirs(&h.join(&scope.cgroup_parent), &mut out);
    }
    out
}

fn collect_subdirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
            collect_subdirs(&e.path(), out);
        }
    }
}

fn cgroup_pids(scope: &Scope) -> Vec<i32> {
    let mut dirs = Vec::new();
    for h in hierarchies(&scope.cgroup_root) {
        let parent = h.join(&scope.cgroup_parent);
        dirs.push(parent.clone());
        collect_subdirs(&parent, &mut dirs);
    }
    dirs.iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn remove_cgroups(scope: &Scope) {
    for h in hierarchies(&scope.cgroup_root) {
        let parent = h.join(&scope.cgroup_parent);
        let mut dirs = Vec::new();
        collect_subdirs(&parent, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.push(parent);
        for d in dirs {
            let _ = fs::remove_dir(&d);
        }
    }
}

fn bridge_ports(scope: &Scope) -> Vec<String> {
    let Some(bridge) = &scope.bridge else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(Path::new("/sys/class/net").join(bridge).join("brif")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Monitors of this daemon (the crius binary, `monitor` in the command line, naming one
/// of this daemon's directories) and any process whose root is under the daemon's state
/// (a container process).
fn processes(scope: &Scope) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
    {
        if let Some(why) = process_leak(scope, pid) {
            out.push((pid, why));
        }
    }
    out
}

fn process_leak(scope: &Scope, pid: i32) -> Option<String> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = fs::read(proc_dir.join("cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if let Ok(exe) = fs::read_link(proc_dir.join("exe")) {
        let exe = exe.to_string_lossy();
        let binary = scope.binary.to_string_lossy();
        let ours = scope
            .dirs
            .iter()
            .any(|d| cmdline.contains(d.to_string_lossy().as_ref()));
        if exe.trim_end_matches(" (deleted)") == binary && cmdline.contains("monitor") && ours {
            return Some(format!("monitor: {cmdline}"));
        }
    }
    let root = fs::read_link(proc_dir.join("root")).ok()?;
    (root.starts_with(&scope.root) || root.starts_with(&scope.run_root))
        .then(|| format!("root {}: {cmdline}", root.display()))
}

/// Pod and container state the daemon should have deleted with them.
fn state_entries(scope: &Scope) -> Vec<PathBuf> {
    [
        scope.root.join("pods"),
        scope.root.join("containers"),
        scope.run_root.join("pods"),
        scope.run_root.join("containers"),
    ]
    .iter()
    .filter_map(|d| fs::read_dir(d).ok())
    .flat_map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
    .collect()
}
