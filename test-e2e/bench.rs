//! Budget report (hack/bench.sh): memory and latency numbers, printed, never asserted,
//! each beside an anchor measured in the same run and given as a ratio to it. Ignored by
//! `cargo test`; hack/bench.sh runs it with `--ignored` on a release build.

use crate::fixtures::*;
use crate::harness::{BINARY, Daemon, preflight};
use k8s_cri::v1::PodSandboxConfig;
use std::process::Command;
use std::time::{Duration, Instant};

const EXEC_ROUNDS: usize = 20;
/// Pause between execs for the spaced ExecSync median: longer than an RCU grace period,
/// so that moving each exec into its cgroup (a write to cgroup.procs, which on cgroup v1
/// waits for a grace period unless another migration ran just before) is paid every time.
const EXEC_GAP: Duration = Duration::from_millis(200);

/// Proportional set size in KiB, from /proc/PID/smaps_rollup.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Monitor processes of this daemon: the crius binary re-executed as `monitor`.
pub(crate) fn monitors(d: &Daemon) -> Vec<u32> {
    let run_root = d.paths.run_root.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            exe.is_some_and(|e| e.to_string_lossy().trim_end_matches(" (deleted)") == BINARY)
                && cmd.contains("monitor")
                && cmd.contains(&run_root)
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Anchor for exec: a fork+exec+wait of `true` on the host, no namespaces, no RPC.
fn host_true() -> Duration {
    let t = Instant::now();
    let ok = Command::new("true").status().is_ok_and(|s| s.success());
    assert!(ok, "host `true` failed");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64().max(1e-9))
}

/// RunPodSandbox, CreateContainer, StartContainer of `sleep 1000`; returns the pod and
/// container ids and the three times.
async fn start_pod(
    rt: &mut crate::harness::Runtime,
    pod: &PodSandboxConfig,
) -> (String, String, [Duration; 3]) {
    let cfg = container_config("c", BUSYBOX, &["sleep", "1000"]);
    let t0 = Instant::now();
    let pod_id = run_pod(rt, pod).await;
    let t1 = Instant::now();
    let id = create(rt, &pod_id, pod, &cfg)
        .await
        .expect("CreateContainer");
    let t2 = Instant::now();
    start(rt, &id).await.expect("StartContainer");
    let t3 = Instant::now();
    (pod_id, id, [t1 - t0, t2 - t1, t3 - t2])
}

/// Median ExecSync `true` and host `true` over [`EXEC_ROUNDS`], `gap` apart. Back to
/// back, execs share one cgroup v1 migration grace period (see [`EXEC_GAP`]); spaced out,
/// each pays its own, as every crictl or kubelet probe exec does.
async fn exec_median(
    rt: &mut crate::harness::Runtime,
    id: &str,
    gap: Duration,
) -> (Duration, Duration) {
    let mut execs = Vec::with_capacity(EXEC_ROUNDS);
    let mut anchors = Vec::with_capacity(EXEC_ROUNDS);
    for _ in 0..EXEC_ROUNDS {
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        let r = exec(rt, id, &["true"], 0).await.expect("ExecSync true");
        execs.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
        anchors.push(host_true());
    }
    (median(execs), median(anchors))
}

#[tokio::test]
#[ignore = "benchmark: hack/bench.sh runs it on a release build"]
async fn bench_budgets() {
    if !preflight("bench_budgets", true) {
        return;
    }
    let d = Daemon::start().await;
    let pid = d.pid().expect("daemon running");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = pss_kib(pid);
    let mut images = d.images().await;
    let t = Instant::now();
    pull(&mut images, BUSYBOX).await;
    let pull_time = t.elapsed();
    let mut rt = d.runtime().await;

    let (_, _, host) = start_pod(&mut rt, &host_network_pod(&d, "bench-host")).await;
    let (pod_id, id, cni) = start_pod(&mut rt, &pod_config(&d, "bench")).await;

    let (exec_med, anchor_med) = exec_median(&mut rt, &id, Duration::ZERO).await;
    let (spaced_med, _) = exec_median(&mut rt, &id, EXEC_GAP).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("host sleep");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sleep_pss = pss_kib(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    println!("=== crius budgets ({BINARY})");
    println!(
        "daemon PSS idle at start        {:>8} KiB   (budget < 20480)",
        fmt_kib(idle)
    );
    println!(
        "daemon PSS with 2 pods          {:>8} KiB",
        fmt_kib(pss_kib(pid))
    );
    println!(
        "anchor: host `sleep` PSS        {:>8} KiB",
        fmt_kib(sleep_pss)
    );
    for m in monitors(&d) {
        let pss = pss_kib(m);
        let r = match (pss, sleep_pss) {
            (Some(a), Some(b)) if b > 0 => format!("{:.1}x sleep", a as f64 / b as f64),
            _ => "?".into(),
        };
        println!(
            "monitor {m:<7} PSS             {:>8} KiB   ({r}; budget < 1024)",
            fmt_kib(pss)
        );
    }
    println!("PullImage busybox               {:>12}", ms(pull_time));
    for (label, t) in [("host-network pod (no CNI)", host), ("CNI bridge pod", cni)] {
        let total = t[0] + t[1] + t[2];
        println!(
            "{label:<26} run {} + create {} + start {} = {}",
            ms(t[0]),
            ms(t[1]),
            ms(t[2]),
            ms(total)
        );
    }
    println!("  (budget: < 100 ms of daemon time excluding CNI = the host-network pod's total)");
    println!(
        "ExecSync true median {} vs host fork+exec `true` {} = {} (budget < 10 ms)",
        ms(exec_med),
        ms(anchor_med),
        ratio(exec_med, anchor_med)
    );
    println!(
        "ExecSync true median, {} ms apart: {} (what each spaced-out probe pays)",
        EXEC_GAP.as_millis(),
        ms(spaced_med)
    );
    crate::bench_client::report(&crate::bench_client::Target {
        socket: &d.paths.socket,
        pod: &pod_id,
        container: &id,
    });
    let endpoint = format!("unix://{}", d.paths.socket.display());
    crate::bench_exec::report(&endpoint, &id);
    d.teardown().await;
}

fn fmt_kib(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}
