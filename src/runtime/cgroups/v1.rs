//! cgroup v1: one hierarchy per controller (or per co-mounted group such as
//! `cpu,cpuacct`) under the root; the cgroup is the same relative path in each.

use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use super::fs;
use super::stats;
use super::{CgroupError, CgroupManager, CgroupStats};

/// Hierarchies a container joins. `systemd` is the named hierarchy systemd tracks
/// processes with; joining it keeps our processes out of the daemon's unit.
const CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "blkio",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "hugetlb",
    "perf_event",
    "systemd",
];

pub(super) struct V1Manager {
    root: PathBuf,
    rel: PathBuf,
}

impl V1Manager {
    pub(super) fn new(root: &Path, rel: PathBuf) -> Self {
        V1Manager {
            root: root.to_path_buf(),
            rel,
        }
    }

    /// The cgroup's directory in `controller`'s hierarchy, if that hierarchy is mounted.
    fn dir(&self, controller: &str) -> Option<PathBuf> {
        let hierarchy = self.root.join(controller);
        hierarchy.is_dir().then(|| hierarchy.join(&self.rel))
    }

    /// One directory per mounted hierarchy; co-mounted controllers (`cpu` and `cpuacct`
    /// both linking to `cpu,cpuacct`) appear once. Told apart by device and inode: one
    /// stat per controller, where resolving each path would cost a readlink per component
    /// (every exec runs this).
    fn dirs(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut dirs = Vec::new();
        for controller in CONTROLLERS {
            let hierarchy = self.root.join(controller);
            let Ok(meta) = std::fs::metadata(&hierarchy) else {
                continue;
            };
            let key = (meta.dev(), meta.ino());
            if !meta.is_dir() || seen.contains(&key) {
                continue;
            }
            seen.push(key);
            dirs.push(hierarchy.join(&self.rel));
        }
        dirs
    }

    /// A new cpuset starts with empty cpus/mems, and adding a process to it fails; copy
    /// the parent's values into every level that is still empty.
    fn init_cpuset(&self) -> Result<(), CgroupError> {
        let Some(hierarchy) = self.dir("cpuset").map(|_| self.root.join("cpuset")) else {
            return Ok(());
        };
        let mut parent = hierarchy.clone();
        for component in self.rel.components() {
            let dir = parent.join(component);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let current = fs::read(&dir.join(file))?;
                if current.trim().is_empty() {
                    let value = fs::read(&parent.join(file))?;
                    fs::write(&dir.join(file), value.trim())?;
                }
            }
            parent = dir;
        }
        Ok(())
    }

    fn apply_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        if let Some(dir) = self.dir("cpu") {
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                fs::write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
            if let Some(period) = cpu.period() {
                fs::write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = cpu.quota() {
                // The kernel spells "no quota" -1 and rejects 0.
                let quota = if quota > 0 { quota } else { -1 };
                fs::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let Some(dir) = self.dir("cpuset") {
            if let Some(cpus) = cpu.cpus() {
                fs::write(&dir.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = cpu.mems() {
                fs::write(&dir.join("cpuset.mems"), mems)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let Some(dir) = self.dir("memory") else {
            return Ok(());
        };
        let limit_file = dir.join("memory.limit_in_bytes");
        let memsw_file = dir.join("memory.memsw.limit_in_bytes");
        let swap = memory.swap().filter(|s| *s != 0 && memsw_file.exists());
        // Zero is how an unset limit arrives from the CRI: leave the kernel's default.
        let limit = memory.limit().filter(|l| *l != 0);
        let write_limit = || match limit {
            Some(l) => fs::write(&limit_file, &l.to_string()),
            None => Ok(()),
        };
        let write_swap = || match swap {
            Some(s) => fs::write(&memsw_file, &s.to_string()),
            None => Ok(()),
        };
        // The kernel requires memsw >= limit at every moment: when raising both, memsw
        // must go first; when lowering, the limit must. Try one order, then the other.
        if write_limit().and_then(|()| write_swap()).is_err() {
            write_swap()?;
            write_limit()?;
        }
        Ok(())
    }
}

/// A devices cgroup rule line: "c 1:3 rwm", with '*' for a missing number.
fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = rule
        .typ()
        .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = rule.access().as_deref().unwrap_or("rwm");
    format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()))
}

impl V1Manager {
    /// Writes the spec's device rules in order (typically "deny all" then allows).
    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let Some(dir) = self.dir("devices") else {
            return Ok(());
        };
        for rule in rules {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            fs::write(&dir.join(file), &device_rule(rule))?;
        }
        Ok(())
    }
}

impl CgroupManager for V1Manager {
    fn create(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            fs::create_dir_all(&dir)?;
        }
        self.init_cpuset()
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(cpu) = resources.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(memory) = resources.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(rules) = resources.devices() {
            self.apply_devices(rules)?;
        }
        if let (Some(pids), Some(dir)) = (resources.pids(), self.dir("pids")) {
            fs::write(&dir.join("pids.max"), &super::v2::pids_max(pids.limit()))?;
        }
        if let Some(limits) = resources.hugepage_limits() {
            let dir = self.dir("hugetlb");
            super::apply_hugepages(dir.as_deref(), limits, "limit_in_bytes")?;
        }
        if let Some(keys) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            let mut names: Vec<&String> = keys.keys().collect();
            names.sort();
            return Err(CgroupError::Unsupported(format!(
                "cgroup v2 keys {names:?} on a cgroup v1 host"
            )));
        }
        Ok(())
    }

    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            fs::add_proc(&dir, pid)?;
        }
        Ok(())
    }

    fn open_self_join(&self) -> Result<Vec<std::fs::File>, CgroupError> {
        self.dirs()
            .iter()
            .map(|dir| fs::open_for_join(dir, "tasks"))
            .collect()
    }

    fn processes(&self) -> Result<Vec<Pid>, CgroupError> {
        let mut all = Vec::new();
        for dir in self.dirs() {
            for pid in fs::read_procs(&dir)? {
                if !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
        Ok(all)
    }

    fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self.dir("memory") {
            Some(dir) => super::oom_kill_count(&dir.join("memory.oom_control")),
            None => Ok(0),
        }
    }

    fn stats(&self) -> Result<Option<CgroupStats>, CgroupError> {
        let present = |c: &str| self.dir(c).filter(|d| d.is_dir());
        if !self.dirs().iter().any(|d| d.is_dir()) {
            return Ok(None);
        }
        let cpu = match present("cpuacct") {
            Some(acct) => stats::v1_cpu(&acct, present("cpu").as_deref())?,
            None => None,
        };
        Ok(Some(CgroupStats {
            cpu,
            memory: present("memory").map_or(Ok(None), |d| stats::v1_memory(&d))?,
            pids: present("pids").map_or(Ok(None), |d| stats::pids(&d))?,
        }))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            fs::kill_and_remove(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder};
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder};

    /// A v1 root with `cpu` and `cpuacct` linking to one co-mounted hierarchy, plus
    /// cpuset, memory (with memsw) and pids.
    fn fixture() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir(r.join("cpu,cpuacct")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpuacct")).unwrap();
        for c in ["cpuset", "memory", "pids"] {
            std::fs::create_dir(r.join(c)).unwrap();
        }
        std::fs::write(r.join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(r.join("cpuset/cpuset.mems"), "0\n").unwrap();
        root
    }

    /// What the kernel does on mkdir: new cgroups come with empty control files.
    fn populate(r: &Path, rel: &str) {
        let mut dir = r.join("cpuset");
        for part in rel.split('/') {
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cpuset.cpus"), "").unwrap();
            std::fs::write(dir.join("cpuset.mems"), "").unwrap();
        }
        std::fs::create_dir_all(r.join("memory").join(rel)).unwrap();
        std::fs::write(
            r.join("memory")
                .join(rel)
                .join("memory.memsw.limit_in_bytes"),
            "",
        )
        .unwrap();
    }

    #[test]
    fn create_copies_cpuset_and_apply_writes_limits() {
        let root = fixture();
        let r = root.path();
        populate(r, "crius/pod-1");
        let m = V1Manager::new(r, PathBuf::from("crius/pod-1"));
        m.create().unwrap();
        assert_eq!(m.dirs().len(), 4, "cpu,cpuacct counted once");
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("cpuset/crius/cpuset.cpus"), "0-1");
        assert_eq!(read("cpuset/crius/pod-1/cpuset.mems"), "0");

        let res = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .swap(2i64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        m.apply(&res).unwrap();
        assert_eq!(read("cpu,cpuacct/crius/pod-1/cpu.shares"), "512");
        assert_eq!(read("cpu/crius/pod-1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/crius/pod-1/cpu.cfs_period_us"), "100000");
        assert_eq!(read("memory/crius/pod-1/memory.limit_in_bytes"), "1048576");
        assert_eq!(
            read("memory/crius/pod-1/memory.memsw.limit_in_bytes"),
            "2097152"
        );
        assert_eq!(read("pids/crius/pod-1/pids.max"), "max");

        let rules = [
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(136i64)
                .access("rw")
                .build()
                .unwrap(),
        ];
        assert_eq!(device_rule(&rules[0]), "a *:* rwm");
        assert_eq!(device_rule(&rules[1]), "c 136:* rw");

        m.add_process(Pid::from_raw(42)).unwrap();
        assert_eq!(read("pids/crius/pod-1/cgroup.procs"), "42");
        assert_eq!(m.processes().unwrap(), vec![Pid::from_raw(42)]);
    }

    #[test]
    fn hugepages_written_and_v2_keys_refused() {
        use oci_spec::runtime::LinuxHugepageLimitBuilder;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("hugetlb/crius/c")).unwrap();
        let file = r.join("hugetlb/crius/c/hugetlb.2MB.limit_in_bytes");
        std::fs::write(&file, "0").unwrap();
        let m = V1Manager::new(r, PathBuf::from("crius/c"));
        let page = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(2i64 << 20)
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![page])
            .build()
            .unwrap();
        m.apply(&res).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            (2 << 20).to_string()
        );
        let res = LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "memory.high".to_string(),
                "1".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(matches!(m.apply(&res), Err(CgroupError::Unsupported(_))));
    }
}
