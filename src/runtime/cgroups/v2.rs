//! cgroup v2: one unified hierarchy; controllers must be enabled in every ancestor's
//! `cgroup.subtree_control` before the leaf gets their files.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::fs;
use super::stats;
use super::{CgroupError, CgroupManager, CgroupStats};

/// Controllers whose limits `apply` writes.
const CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// Default `cpu.max` period when the spec gives a quota without one.
const DEFAULT_PERIOD: u64 = 100_000;

pub(super) struct V2Manager {
    root: PathBuf,
    rel: PathBuf,
}

/// cgroup v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000), the conversion
/// runc and the kubelet use so both versions give the same relative weights.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `pids.max` value for an OCI pids limit: zero or negative means unlimited.
pub(super) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// `cpu.max` line: "<quota|max> <period>".
fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let period = period.unwrap_or(DEFAULT_PERIOD);
    Some(match quota {
        Some(q) if q > 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    })
}

/// `memory.swap.max` from OCI's memory+swap total: v2 limits swap alone.
fn swap_max(limit: Option<i64>, swap: i64) -> String {
    match (limit, swap) {
        (_, s) if s < 0 => "max".to_string(),
        (Some(l), s) if l > 0 => s.saturating_sub(l).max(0).to_string(),
        (_, s) => s.to_string(),
    }
}

fn limit_value(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

impl V2Manager {
    pub(super) fn new(root: &Path, rel: PathBuf) -> Self {
        V2Manager {
            root: root.to_path_buf(),
            rel,
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// Enables our controllers in `dir`'s children, as far as `dir` has them.
    fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
        let available = fs::read(&dir.join("cgroup.controllers"))?;
        let enabled = fs::read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
        for c in CONTROLLERS {
            let has = |list: &str| list.split_whitespace().any(|x| x == *c);
            if has(&available) && !has(&enabled) {
                fs::write(&dir.join("cgroup.subtree_control"), &format!("+{c}"))?;
            }
        }
        Ok(())
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let dir = self.dir();
        if let Some(shares) = cpu.shares() {
            let weight = shares_to_weight(shares);
            if weight > 0 {
                fs::write(&dir.join("cpu.weight"), &weight.to_string())?;
            }
        }
        if let Some(max) = cpu_max(cpu.quota(), cpu.period()) {
            fs::write(&dir.join("cpu.max"), &max)?;
        }
        if let Some(cpus) = cpu.cpus() {
            fs::write(&dir.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = cpu.mems() {
            fs::write(&dir.join("cpuset.mems"), mems)?;
        }
        Ok(())
    }

    fn apply_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let dir = self.dir();
        if let Some(limit) = memory.limit() {
            fs::write(&dir.join("memory.max"), &limit_value(limit))?;
        }
        let swap_file = dir.join("memory.swap.max");
        if let Some(swap) = memory.swap().filter(|_| swap_file.exists()) {
            fs::write(&swap_file, &swap_max(memory.limit(), swap))?;
        }
        Ok(())
    }
}

impl CgroupManager for V2Manager {
    fn create(&self) -> Result<(), CgroupError> {
        let mut dir = self.root.clone();
        for component in self.rel.components() {
            Self::enable_controllers(&dir)?;
            dir = dir.join(component);
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(cpu) = resources.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(memory) = resources.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(pids) = resources.pids() {
            fs::write(&self.dir().join("pids.max"), &pids_max(pids.limit()))?;
        }
        if let Some(limits) = resources.hugepage_limits() {
            super::apply_hugepages(Some(&self.dir()), limits, "max")?;
        }
        // Written last, so a key overrides the mapped field it shares a file with.
        for (key, value) in resources.unified().iter().flatten() {
            let file = self.dir().join(key);
            if !file.exists() {
                return Err(CgroupError::Unsupported(format!(
                    "cgroup v2 key {key:?}: no such file (controller not enabled?)"
                )));
            }
            fs::write(&file, value)?;
        }
        Ok(())
    }

    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        fs::add_proc(&self.dir(), pid)
    }

    fn open_self_join(&self) -> Result<Vec<std::fs::File>, CgroupError> {
        // v2 has no per-thread escape for domain cgroups; CLONE_INTO_CGROUP would be one.
        Ok(vec![fs::open_for_join(&self.dir(), "cgroup.procs")?])
    }

    fn processes(&self) -> Result<Vec<Pid>, CgroupError> {
        fs::read_procs(&self.dir())
    }

    fn oom_kills(&self) -> Result<u64, CgroupError> {
        super::oom_kill_count(&self.dir().join("memory.events"))
    }

    fn stats(&self) -> Result<Option<CgroupStats>, CgroupError> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Ok(None);
        }
        Ok(Some(CgroupStats {
            cpu: stats::v2_cpu(&dir)?,
            memory: stats::v2_memory(&dir)?,
            pids: stats::pids(&dir)?,
        }))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        let kill_file = dir.join("cgroup.kill");
        if kill_file.exists() {
            // Best effort: kill_and_remove below falls back to signalling each pid.
            let _ = fs::write(&kill_file, "1");
        }
        fs::kill_and_remove(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    #[test]
    fn shares_convert_to_weight() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn cpu_max_and_swap_lines() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50_000), None).unwrap(), "50000 100000");
        assert_eq!(cpu_max(Some(-1), Some(20_000)).unwrap(), "max 20000");
        assert_eq!(swap_max(Some(100), 300), "200");
        assert_eq!(swap_max(Some(100), -1), "max");
    }

    #[test]
    fn create_enables_controllers_and_apply_writes_files() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        std::fs::write(r.join("cgroup.subtree_control"), "").unwrap();
        // What the kernel would show in the new intermediate directory.
        std::fs::create_dir(r.join("crius")).unwrap();
        std::fs::write(r.join("crius/cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(r.join("crius/cgroup.subtree_control"), "").unwrap();
        std::fs::create_dir(r.join("crius/pod-1")).unwrap();
        std::fs::write(r.join("crius/pod-1/memory.swap.max"), "").unwrap();

        let m = V2Manager::new(r, PathBuf::from("crius/pod-1"));
        m.create().unwrap();
        // Each "+x" write replaces the fixture file; the kernel would accumulate them.
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+pids");
        assert_eq!(read("crius/cgroup.subtree_control"), "+pids");

        let res = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(20_000i64)
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1000i64)
                    .swap(3000i64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        m.apply(&res).unwrap();
        assert_eq!(read("crius/pod-1/cpu.weight"), "39");
        assert_eq!(read("crius/pod-1/cpu.max"), "20000 100000");
        assert_eq!(read("crius/pod-1/memory.max"), "1000");
        assert_eq!(read("crius/pod-1/memory.swap.max"), "2000");
        assert_eq!(read("crius/pod-1/pids.max"), "10");
        m.add_process(Pid::from_raw(7)).unwrap();
        assert_eq!(m.processes().unwrap(), vec![Pid::from_raw(7)]);
    }

    #[test]
    fn hugepages_and_unified_keys_need_their_files() {
        use oci_spec::runtime::LinuxHugepageLimitBuilder;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("crius/c")).unwrap();
        for f in ["hugetlb.2MB.max", "memory.high"] {
            std::fs::write(r.join("crius/c").join(f), "max").unwrap();
        }
        let m = V2Manager::new(r, PathBuf::from("crius/c"));
        let page = |size: &str| {
            LinuxHugepageLimitBuilder::default()
                .page_size(size)
                .limit(4i64 << 20)
                .build()
                .unwrap()
        };
        let unified = |k: &str| -> std::collections::HashMap<String, String> {
            [(k.to_string(), "5000".to_string())].into()
        };
        let res = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![page("2MB")])
            .unified(unified("memory.high"))
            .build()
            .unwrap();
        m.apply(&res).unwrap();
        let read = |p: &str| std::fs::read_to_string(r.join("crius/c").join(p)).unwrap();
        assert_eq!(read("hugetlb.2MB.max"), (4 << 20).to_string());
        assert_eq!(read("memory.high"), "5000");

        let res = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![page("1GB")])
            .build()
            .unwrap();
        assert!(matches!(m.apply(&res), Err(CgroupError::Unsupported(_))));
        let mut zero = page("1GB");
        zero.set_limit(0);
        let res = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![zero])
            .build()
            .unwrap();
        m.apply(&res)
            .expect("kubelet's 0 limit for a size without a file");
        let res = LinuxResourcesBuilder::default()
            .unified(unified("io.max"))
            .build()
            .unwrap();
        assert!(matches!(m.apply(&res), Err(CgroupError::Unsupported(_))));
    }
}
