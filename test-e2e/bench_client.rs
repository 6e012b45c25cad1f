//! User-visible latency (hack/bench.sh): each RPC timed through a real client process,
//! as crictl (or a restarted kubelet) makes it, net of that client's own start-up. The
//! in-process numbers of `bench_budgets` leave out what every CLI call pays again:
//! process start, connect, the connection-validating calls, and for crictl whatever extra
//! RPCs a command makes. Printed, never asserted.

use crate::harness::BINARY;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs per command; the median is reported.
const ROUNDS: usize = 21;
const CRICTL: &str = "/usr/local/bin/crictl";

/// The pod and container the timed calls address, on the daemon at `socket`.
pub struct Target<'a> {
    pub socket: &'a Path,
    pub pod: &'a str,
    pub container: &'a str,
}

/// `cri-call` (test-e2e/bin/cri_call.rs): CRIUS_BENCH_CLIENT, or the example cargo
/// builds next to the crius binary (`cargo build [--release] --example cri-call`).
fn client_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRIUS_BENCH_CLIENT") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(BINARY)
        .parent()?
        .join("examples")
        .join("cri-call");
    p.exists().then_some(p)
}

/// Median wall time of `program args`, after one untimed warm-up run; None (with the
/// reason printed) if a run fails.
pub fn median_run(program: &Path, args: &[&str]) -> Option<Duration> {
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let t = Instant::now();
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output();
        let took = t.elapsed();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                println!("  {} {args:?} failed: {}", program.display(), err.trim());
                return None;
            }
            Err(e) => {
                println!("  {} {args:?} failed to start: {e}", program.display());
                return None;
            }
        }
        if round > 0 {
            times.push(took);
        }
    }
    times.sort();
    Some(times[times.len() / 2])
}

/// Times each command and prints it with its median net of the first (the baseline).
pub fn print_table(program: &Path, rows: &[(&str, Vec<&str>)]) -> Vec<Option<Duration>> {
    let mut base = None;
    let mut out = Vec::with_capacity(rows.len());
    for (i, (label, args)) in rows.iter().enumerate() {
        let t = median_run(program, args);
        if i == 0 {
            base = t;
        }
        let net = match (i, t, base) {
            (0, Some(_), _) => "(baseline)".to_string(),
            (_, Some(t), Some(b)) => format!("net {:>7.2} ms", ms(t) - ms(b)),
            _ => String::new(),
        };
        let total = t.map_or_else(|| "?".to_string(), |t| format!("{:.2} ms", ms(t)));
        println!("  {label:<34} {total:>10}   {net}");
        out.push(t);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The cri-call table, then crictl's if it is installed.
pub fn report(t: &Target) {
    let sock = t.socket.to_string_lossy().into_owned();
    println!("=== through a client process: median of {ROUNDS} runs, net of the first row");
    match client_path() {
        Some(client) => {
            let row = |label, rpc, id: &'static str| {
                let id = match id {
                    "pod" => t.pod,
                    "ctr" => t.container,
                    _ => "",
                };
                let mut args = vec![sock.as_str(), rpc];
                if !id.is_empty() {
                    args.push(id);
                }
                (label, args)
            };
            let rows = [
                row("cri-call version (start+connect)", "version", ""),
                row("cri-call Status", "status", ""),
                row("cri-call ImageFsInfo", "imagefsinfo", ""),
                row("cri-call ListPodSandbox", "listpods", ""),
                row("cri-call PodSandboxStatus", "podstatus", "pod"),
                row("cri-call ListContainers", "listcontainers", ""),
                row("cri-call ContainerStatus", "containerstatus", "ctr"),
                row("cri-call ExecSync true", "exec", "ctr"),
            ];
            print_table(&client, &rows);
        }
        None => println!("  cri-call not built (cargo build --example cri-call); skipped"),
    }
    crictl_report(&format!("unix://{sock}"), t.container);
}

/// `crictl version` (baseline), inspect, exec -s, imagefsinfo against `endpoint`.
pub fn crictl_report(endpoint: &str, container: &str) -> Vec<Option<Duration>> {
    let crictl = Path::new(CRICTL);
    if !crictl.exists() {
        println!("  {CRICTL} not installed; crictl timings skipped");
        return Vec::new();
    }
    let base = ["-r", endpoint, "-i", endpoint];
    let with = |more: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(more);
        v
    };
    let rows = [
        ("crictl version", with(&["version"])),
        (
            "crictl inspect ID",
            [with(&["inspect"]), vec![container]].concat(),
        ),
        (
            "crictl exec -s ID true",
            [with(&["exec", "-s"]), vec![container, "true"]].concat(),
        ),
        ("crictl imagefsinfo", with(&["imagefsinfo"])),
    ];
    print_table(crictl, &rows)
}
