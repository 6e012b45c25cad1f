//! The readers against fixture files shaped like the kernel's, through the managers.

use std::path::Path;

use super::super::manager;
use super::*;

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
}

/// A v1 root: `cpu` and `cpuacct` co-mounted, plus memory and pids, with the cgroup
/// `crius/pod-1` in each.
fn v1_fixture() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir(r.join("cpu,cpuacct")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpuacct")).unwrap();
    let cpu = r.join("cpu,cpuacct/crius/pod-1");
    write(&cpu, "cpuacct.usage", "2500000000\n");
    write(&cpu, "cpuacct.usage_user", "2000000000\n");
    write(&cpu, "cpuacct.usage_sys", "500000000\n");
    write(
        &cpu,
        "cpu.stat",
        "nr_periods 40\nnr_throttled 3\nthrottled_time 7000\n",
    );
    let mem = r.join("memory/crius/pod-1");
    write(&mem, "memory.usage_in_bytes", "10485760\n");
    write(&mem, "memory.max_usage_in_bytes", "20971520\n");
    write(&mem, "memory.limit_in_bytes", "67108864\n");
    write(&mem, "memory.memsw.usage_in_bytes", "11534336\n");
    write(&mem, "memory.failcnt", "2\n");
    write(&mem, "memory.kmem.usage_in_bytes", "4096\n");
    write(
        &mem,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    let stat = "cache 1\nrss 2\ntotal_cache 3145728\ntotal_rss 6291456\n\
                total_mapped_file 8192\ntotal_inactive_file 1048576\n\
                total_active_file 2097152\ntotal_pgfault 900\ntotal_pgmajfault 9\n\
                hierarchical_memory_limit 9223372036854771712\n";
    write(&mem, "memory.stat", stat);
    let pids = r.join("pids/crius/pod-1");
    write(&pids, "pids.current", "5\n");
    write(&pids, "pids.max", "max\n");
    root
}

#[test]
fn v1_reads_cpu_memory_and_pids() {
    let root = v1_fixture();
    let s = manager(root.path(), "crius/pod-1")
        .unwrap()
        .stats()
        .unwrap();
    let s = s.expect("the cgroup exists");
    let cpu = s.cpu.unwrap();
    assert_eq!(
        (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
        (2_500_000_000, 2_000_000_000, 500_000_000)
    );
    assert_eq!(
        (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
        (40, 3, 7000)
    );
    let m = s.memory.unwrap();
    assert_eq!(m.usage, 10 << 20);
    assert_eq!(m.working_set(), 9 << 20, "usage less total_inactive_file");
    assert_eq!(m.available(), Some((64 << 20) - (9 << 20)));
    assert_eq!((m.rss, m.cache, m.mapped_file), (6 << 20, 3 << 20, 8192));
    assert_eq!((m.pgfault, m.pgmajfault), (900, 9), "the total_ lines");
    assert_eq!(
        (m.swap, m.failcnt, m.kernel, m.oom_kills),
        (1 << 20, 2, 4096, 1)
    );
    assert_eq!(m.max_usage, 20 << 20);
    let p = s.pids.unwrap();
    assert_eq!((p.current, p.limit), (5, None));
}

#[test]
fn v1_without_split_usage_counts_stat_ticks_and_unlimited_memory_has_no_limit() {
    let root = v1_fixture();
    let cpu = root.path().join("cpu,cpuacct/crius/pod-1");
    std::fs::remove_file(cpu.join("cpuacct.usage_user")).unwrap();
    std::fs::remove_file(cpu.join("cpuacct.usage_sys")).unwrap();
    write(&cpu, "cpuacct.stat", "user 150\nsystem 25\n");
    let mem = root.path().join("memory/crius/pod-1");
    write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
    let s = manager(root.path(), "crius/pod-1")
        .unwrap()
        .stats()
        .unwrap()
        .unwrap();
    let cpu = s.cpu.unwrap();
    assert_eq!((cpu.user_ns, cpu.system_ns), (1_500_000_000, 250_000_000));
    let m = s.memory.unwrap();
    assert_eq!((m.limit, m.available()), (None, None));
}

#[test]
fn an_absent_cgroup_has_no_stats() {
    let root = v1_fixture();
    let m = manager(root.path(), "crius/pod-2").unwrap();
    assert_eq!(m.stats().unwrap(), None);
    std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
    assert_eq!(
        manager(root.path(), "crius/x").unwrap().stats().unwrap(),
        None
    );
}

#[test]
fn v2_reads_cpu_memory_and_pids() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    let dir = r.join("crius/pod-1");
    let cpu = "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 8\n\
               nr_throttled 2\nthrottled_usec 500\n";
    write(&dir, "cpu.stat", cpu);
    write(&dir, "memory.current", "8388608\n");
    write(&dir, "memory.max", "max\n");
    write(&dir, "memory.peak", "9000000\n");
    write(&dir, "memory.swap.current", "4096\n");
    write(
        &dir,
        "memory.events",
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    );
    let stat = "anon 4194304\nfile 2097152\nkernel 65536\nfile_mapped 4096\n\
                active_file 1048576\ninactive_file 524288\npgfault 77\npgmajfault 3\n";
    write(&dir, "memory.stat", stat);
    write(&dir, "pids.current", "3\n");
    write(&dir, "pids.max", "100\n");
    let s = manager(r, "crius/pod-1").unwrap().stats().unwrap().unwrap();
    let cpu = s.cpu.unwrap();
    assert_eq!(
        (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
        (3_000_000, 2_000_000, 1_000_000)
    );
    assert_eq!(
        (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
        (8, 2, 500_000)
    );
    let m = s.memory.unwrap();
    assert_eq!(m.working_set(), 8388608 - 524288);
    assert_eq!((m.limit, m.available()), (None, None));
    assert_eq!(
        (m.rss, m.cache, m.kernel, m.mapped_file),
        (4194304, 2097152, 65536, 4096)
    );
    assert_eq!(
        (m.pgfault, m.pgmajfault, m.swap, m.oom_kills),
        (77, 3, 4096, 1)
    );
    assert_eq!((m.max_usage, m.failcnt), (9_000_000, 0));
    assert_eq!(
        s.pids.unwrap(),
        PidsStats {
            current: 3,
            limit: Some(100)
        }
    );
}

#[test]
fn v2_memory_limit_and_missing_controllers() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("cgroup.controllers"), "memory\n").unwrap();
    let dir = r.join("crius/pod-1");
    write(&dir, "memory.current", "1000\n");
    write(&dir, "memory.max", "4000\n");
    let s = manager(r, "crius/pod-1").unwrap().stats().unwrap().unwrap();
    assert_eq!(s.cpu, None, "no cpu controller enabled: no cpu.stat");
    assert_eq!(s.pids, None);
    let m = s.memory.unwrap();
    assert_eq!(
        (m.limit, m.available(), m.working_set()),
        (Some(4000), Some(3000), 1000)
    );
}

#[test]
fn keyed_files_skip_garbage() {
    let m = flat_keyed("a 1\nbroken\nb x\nc 3 extra\n");
    assert_eq!(m.len(), 2);
    assert_eq!((m["a"], m["c"]), (1, 3));
    assert_eq!(single("max\n"), None);
    assert_eq!(single(" 42\n"), Some(42));
}
