//! Budget report (hack/bench.sh): memory and latency numbers, printed, never asserted.
//! Runs only with CRIUS_BENCH=1; build with --release for numbers that mean something.

use crate::fixtures::*;
use crate::harness::{BINARY, Daemon, preflight};
use std::time::{Duration, Instant};

const EXEC_ROUNDS: usize = 20;

/// Proportional set size in KiB, from /proc/PID/smaps_rollup.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Monitor processes of this daemon: the crius binary re-executed as `monitor`.
fn monitors(d: &Daemon) -> Vec<u32> {
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

#[tokio::test]
async fn bench_budgets() {
    if std::env::var("CRIUS_BENCH").as_deref() != Ok("1") {
        eprintln!("bench_budgets: set CRIUS_BENCH=1 to run (hack/bench.sh)");
        return;
    }
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

    let pod = pod_config(&d, "bench");
    let cfg = container_config("c", BUSYBOX, &["sleep", "1000"]);
    let t0 = Instant::now();
    let pod_id = run_pod(&mut rt, &pod).await;
    let t1 = Instant::now();
    let id = create(&mut rt, &pod_id, &pod, &cfg)
        .await
        .expect("CreateContainer");
    let t2 = Instant::now();
    start(&mut rt, &id).await.expect("StartContainer");
    let t3 = Instant::now();

    let mut execs = Vec::with_capacity(EXEC_ROUNDS);
    for _ in 0..EXEC_ROUNDS {
        let t = Instant::now();
        let r = exec(&mut rt, &id, &["true"], 0)
            .await
            .expect("ExecSync true");
        execs.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
    }
    execs.sort();
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("=== crius budgets ({BINARY})");
    println!("daemon PSS idle at start      {:>10} KiB", fmt_kib(idle));
    println!(
        "daemon PSS with 1 pod         {:>10} KiB",
        fmt_kib(pss_kib(pid))
    );
    for m in monitors(&d) {
        println!(
            "monitor {m:<7} PSS           {:>10} KiB",
            fmt_kib(pss_kib(m))
        );
    }
    println!("PullImage busybox             {:>13}", ms(pull_time));
    println!("RunPodSandbox                 {:>13}", ms(t1 - t0));
    println!("CreateContainer               {:>13}", ms(t2 - t1));
    println!("StartContainer                {:>13}", ms(t3 - t2));
    println!("pod + container start total   {:>13}", ms(t3 - t0));
    println!(
        "ExecSync true x{EXEC_ROUNDS}: min {} median {} max {}",
        ms(execs[0]),
        ms(execs[EXEC_ROUNDS / 2]),
        ms(execs[EXEC_ROUNDS - 1])
    );
    d.teardown().await;
}

fn fmt_kib(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}
