//! CRI `LinuxContainerResources` → OCI `LinuxResources`: CPU, cpuset, memory and swap,
//! pids, hugepages and cgroup v2 `unified` keys.

use std::collections::HashMap;

use k8s_cri::v1::{HugepageLimit, LinuxContainerResources};
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxPids, LinuxResources};

use super::SpecError;

/// The limits of `r` as containerd maps them, without device rules: what both a new
/// container and UpdateContainerResources write. Swap equals the memory limit unless
/// set, so the container cannot swap by default.
pub(super) fn limits(r: &LinuxContainerResources) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResources::default();
    let non_negative = |field: &str, v: i64| {
        u64::try_from(v)
            .map_err(|_| SpecError::invalid(field, v.to_string(), "must not be negative"))
    };
    let mut cpu = LinuxCpu::default();
    let shares = non_negative("cpu_shares", r.cpu_shares)?;
    let period = non_negative("cpu_period", r.cpu_period)?;
    cpu.set_shares((shares != 0).then_some(shares));
    cpu.set_period((period != 0).then_some(period));
    cpu.set_quota((r.cpu_quota != 0).then_some(r.cpu_quota));
    cpu.set_cpus((!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()));
    cpu.set_mems((!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()));
    // Leave the section out when nothing is limited, as containerd's JSON does.
    out.set_cpu((cpu != LinuxCpu::default()).then_some(cpu));

    let limit = r.memory_limit_in_bytes;
    let swap = r.memory_swap_limit_in_bytes;
    non_negative("memory_limit_in_bytes", limit)?;
    let mut memory = LinuxMemory::default();
    memory.set_limit((limit != 0).then_some(limit));
    memory.set_swap(match (swap, limit) {
        (0, 0) => None,
        (0, limit) => Some(limit),
        (swap, _) => Some(swap),
    });
    out.set_memory((memory != LinuxMemory::default()).then_some(memory));
    out.set_pids(pids_limit(&r.unified)?);
    out.set_hugepage_limits(hugepage_limits(&r.hugepage_limits)?);
    out.set_unified(unified(&r.unified)?);
    Ok(out)
}

/// CRI has no pids field; a limit arrives as the cgroup v2 key `pids.max` in `unified`
/// (applied on v1 too, where the pids controller has the same file).
fn pids_limit(unified: &HashMap<String, String>) -> Result<Option<LinuxPids>, SpecError> {
    let Some(v) = unified.get("pids.max") else {
        return Ok(None);
    };
    if v.trim() == "max" {
        return Ok(None);
    }
    match v.trim().parse::<i64>() {
        Ok(n) if n > 0 => {
            let mut pids = LinuxPids::default();
            pids.set_limit(n);
            Ok(Some(pids))
        }
        _ => Err(SpecError::invalid(
            "unified[pids.max]",
            v.clone(),
            "must be a positive number or \"max\"",
        )),
    }
}

/// Hugepage limits by page size, as the kernel names its `hugetlb.<size>` files
/// ("2MB", "1GB"); whether the host has that size is the cgroup layer's to say.
fn hugepage_limits(limits: &[HugepageLimit]) -> Result<Option<Vec<LinuxHugepageLimit>>, SpecError> {
    let mut out = Vec::new();
    for l in limits {
        let size = &l.page_size;
        let digits = size.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'B']);
        let unit = &size[digits.len()..];
        let valid_unit = ["KB", "MB", "GB", "TB", "PB"].contains(&unit);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !valid_unit {
            let why = "must be a number and a unit such as 2MB or 1GB";
            return Err(SpecError::invalid("hugepage page_size", size.clone(), why));
        }
        let limit = i64::try_from(l.limit)
            .map_err(|_| SpecError::invalid("hugepage limit", l.limit.to_string(), "too big"))?;
        let mut h = LinuxHugepageLimit::default();
        h.set_page_size(size.clone());
        h.set_limit(limit);
        out.push(h);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// cgroup v2 files to write as they are (kubelet's memory QoS sends `memory.high`).
/// `pids.max` is mapped to the pids limit instead. Keys name a controller's file:
/// nothing with a path separator, and no `cgroup.*` core file, which would let a pod
/// move processes or change the hierarchy.
fn unified(keys: &HashMap<String, String>) -> Result<Option<HashMap<String, String>>, SpecError> {
    let mut out = HashMap::new();
    for (k, v) in keys.iter().filter(|(k, _)| k.as_str() != "pids.max") {
        let file_like = k
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        let (controller, file) = k.split_once('.').unwrap_or(("", ""));
        if !file_like || controller.is_empty() || file.is_empty() || controller == "cgroup" {
            let why = "must name a controller's file, such as memory.high";
            return Err(SpecError::invalid("unified key", k.clone(), why));
        }
        if v.contains('\n') {
            return Err(SpecError::invalid(
                "unified value",
                v.clone(),
                "must be one line",
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut LinuxContainerResources)) -> Result<LinuxResources, SpecError> {
        let mut r = LinuxContainerResources::default();
        f(&mut r);
        limits(&r)
    }

    #[test]
    fn hugepages_by_kernel_page_size_name() {
        let page = |size: &str| HugepageLimit {
            page_size: size.into(),
            limit: 4 << 20,
        };
        let r = with(|r| r.hugepage_limits = vec![page("2MB"), page("1GB")]).unwrap();
        let got: Vec<(String, i64)> = r
            .hugepage_limits()
            .iter()
            .flatten()
            .map(|h| (h.page_size().clone(), h.limit()))
            .collect();
        assert_eq!(got, [("2MB".into(), 4 << 20), ("1GB".into(), 4 << 20)]);
        for bad in ["", "MB", "2", "2mb", "2M", "1/GB", "2MBB"] {
            let r = with(|r| r.hugepage_limits = vec![page(bad)]);
            assert!(r.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unified_keys_are_controller_files_only() {
        let set = |k: &str, v: &str| {
            with(|r| {
                r.unified.insert(k.into(), v.into());
            })
        };
        let r = set("memory.high", "1000000").unwrap();
        let unified = r.unified().clone().unwrap();
        assert_eq!(unified["memory.high"], "1000000");
        let r = set("pids.max", "10").unwrap();
        assert_eq!(r.unified(), &None, "pids.max becomes the pids limit");
        assert_eq!(r.pids().map(|p| p.limit()), Some(10));
        for key in [
            "cgroup.procs",
            "../memory.high",
            "memory",
            ".high",
            "memory/high",
        ] {
            assert!(set(key, "1").is_err(), "{key:?} accepted");
        }
        assert!(set("memory.high", "1\n2").is_err());
    }
}
