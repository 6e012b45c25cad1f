//! What a cgroup has used, read from its v1 or v2 files into one shape. The shape holds
//! what the CRI stats and kubelet's cadvisor metric names need; each version's reader
//! fills what its kernel files offer and leaves the rest zero.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::Path;

use super::CgroupError;
use super::fs::io_err;

/// A limit above this is the kernel's "unlimited" (v1 spells it as a page-rounded
/// `i64::MAX`); containerd uses the same bound.
const UNLIMITED: u64 = 1 << 62;

/// USER_HZ: the unit of v1 `cpuacct.stat`, fixed at 100 for user space on Linux.
const TICK_NS: u64 = 10_000_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
}

/// Cumulative CPU time (nanoseconds) and CFS throttling.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CpuStats {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory in bytes, hierarchical (children included), and fault counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage: u64,
    pub max_usage: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
    pub rss: u64,
    pub cache: u64,
    pub mapped_file: u64,
    pub active_file: u64,
    pub inactive_file: u64,
    pub kernel: u64,
    pub swap: u64,
    pub pgfault: u64,
    pub pgmajfault: u64,
    /// Times usage hit the limit (v1 only).
    pub failcnt: u64,
    pub oom_kills: u64,
}

impl MemoryStats {
    /// What kubelet and cadvisor call the working set: usage less inactive file pages,
    /// which the kernel reclaims first.
    pub fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }

    /// Room left under the limit, if there is one.
    pub fn available(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.working_set()))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PidsStats {
    /// Tasks (threads included) in the cgroup and its children.
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`); unparsable lines are
/// skipped.
pub(super) fn flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?.parse().ok()?);
            Some((k, v))
        })
        .collect()
}

/// A single-value file: a number, or "max" (v2's unlimited) as `None`.
pub(super) fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn limit(v: Option<u64>) -> Option<u64> {
    v.filter(|l| *l <= UNLIMITED)
}

/// The file's text; `None` if it does not exist (a controller not mounted, a kernel
/// without the file).
pub(super) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

fn read_value(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    Ok(read_opt(&dir.join(file))?.as_deref().and_then(single))
}

fn read_keyed(dir: &Path, file: &str) -> Result<HashMap<String, u64>, CgroupError> {
    let text = read_opt(&dir.join(file))?.unwrap_or_default();
    Ok(flat_keyed(&text)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

fn get(m: &HashMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// v1: `cpuacct` for time, `cpu` for throttling. `None` without a cpuacct hierarchy.
pub(super) fn v1_cpu(cpuacct: &Path, cpu: Option<&Path>) -> Result<Option<CpuStats>, CgroupError> {
    let Some(usage_ns) = read_value(cpuacct, "cpuacct.usage")? else {
        return Ok(None);
    };
    // usage_user/usage_sys are nanoseconds; older kernels only have ticks in `stat`.
    let (user_ns, system_ns) = match (
        read_value(cpuacct, "cpuacct.usage_user")?,
        read_value(cpuacct, "cpuacct.usage_sys")?,
    ) {
        (Some(u), Some(s)) => (u, s),
        _ => {
            let stat = read_keyed(cpuacct, "cpuacct.stat")?;
            (get(&stat, "user") * TICK_NS, get(&stat, "system") * TICK_NS)
        }
    };
    let throttle = match cpu {
        Some(dir) => read_keyed(dir, "cpu.stat")?,
        None => HashMap::new(),
    };
    Ok(Some(CpuStats {
        usage_ns,
        user_ns,
        system_ns,
        periods: get(&throttle, "nr_periods"),
        throttled_periods: get(&throttle, "nr_throttled"),
        throttled_ns: get(&throttle, "throttled_time"),
    }))
}

/// v1 `memory`: `memory.stat`'s `total_*` lines are the hierarchical ones.
pub(super) fn v1_memory(dir: &Path) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(usage) = read_value(dir, "memory.usage_in_bytes")? else {
        return Ok(None);
    };
    let stat = read_keyed(dir, "memory.stat")?;
    let memsw = read_value(dir, "memory.memsw.usage_in_bytes")?;
    let oom = read_keyed(dir, "memory.oom_control")?;
    Ok(Some(MemoryStats {
        usage,
        max_usage: read_value(dir, "memory.max_usage_in_bytes")?.unwrap_or(0),
        limit: limit(read_value(dir, "memory.limit_in_bytes")?),
        rss: get(&stat, "total_rss"),
        cache: get(&stat, "total_cache"),
        mapped_file: get(&stat, "total_mapped_file"),
        active_file: get(&stat, "total_active_file"),
        inactive_file: get(&stat, "total_inactive_file"),
        kernel: read_value(dir, "memory.kmem.usage_in_bytes")?.unwrap_or(0),
        swap: memsw.map_or(0, |m| m.saturating_sub(usage)),
        pgfault: get(&stat, "total_pgfault"),
        pgmajfault: get(&stat, "total_pgmajfault"),
        failcnt: read_value(dir, "memory.failcnt")?.unwrap_or(0),
        oom_kills: get(&oom, "oom_kill"),
    }))
}

/// `pids.current` and `pids.max`, the same files in v1 and v2.
pub(super) fn pids(dir: &Path) -> Result<Option<PidsStats>, CgroupError> {
    let Some(current) = read_value(dir, "pids.current")? else {
        return Ok(None);
    };
    Ok(Some(PidsStats {
        current,
        limit: read_value(dir, "pids.max")?,
    }))
}

/// v2 `cpu.stat` (microseconds).
pub(super) fn v2_cpu(dir: &Path) -> Result<Option<CpuStats>, CgroupError> {
    let Some(text) = read_opt(&dir.join("cpu.stat"))? else {
        return Ok(None);
    };
    let s = flat_keyed(&text);
    let us = |k: &str| s.get(k).copied().unwrap_or(0) * 1000;
    Ok(Some(CpuStats {
        usage_ns: us("usage_usec"),
        user_ns: us("user_usec"),
        system_ns: us("system_usec"),
        periods: s.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
        throttled_ns: us("throttled_usec"),
    }))
}

/// v2 memory: `memory.stat` is hierarchical already; v2 has no failcnt.
pub(super) fn v2_memory(dir: &Path) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(usage) = read_value(dir, "memory.current")? else {
        return Ok(None);
    };
    let stat = read_keyed(dir, "memory.stat")?;
    let events = read_keyed(dir, "memory.events")?;
    Ok(Some(MemoryStats {
        usage,
        // memory.peak exists from Linux 5.19.
        max_usage: read_value(dir, "memory.peak")?.unwrap_or(0),
        limit: limit(read_value(dir, "memory.max")?),
        rss: get(&stat, "anon"),
        cache: get(&stat, "file"),
        mapped_file: get(&stat, "file_mapped"),
        active_file: get(&stat, "active_file"),
        inactive_file: get(&stat, "inactive_file"),
        kernel: get(&stat, "kernel").max(get(&stat, "kernel_stack")),
        swap: read_value(dir, "memory.swap.current")?.unwrap_or(0),
        pgfault: get(&stat, "pgfault"),
        pgmajfault: get(&stat, "pgmajfault"),
        failcnt: 0,
        oom_kills: get(&events, "oom_kill"),
    }))
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
