//! User-visible latency (hack/bench.sh): each RPC timed through a real client process,
//! as crictl (or a restarted kubelet) makes it, net of that client's own start-up. The
//! in-process numbers of `bench_budgets` leave out what every CLI call pays again:
//! process start, connect, the connection-validating calls, and for crictl whatever extra
//! RPCs a command makes. Printed, never asserted.

use crate::harness::BINARY;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Rounds; each runs every command of a table once, so that load from other work on the
/// machine falls on all rows alike. The median is reported.
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

/// One command to time.
pub struct Row<'a> {
    pub label: &'static str,
    pub program: &'a Path,
    pub args: Vec<&'a str>,
}

fn run_once(row: &Row) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new(row.program)
        .args(&row.args)
        .stdin(Stdio::null())
        .output();
    let took = t.elapsed();
    match out {
        Ok(o) if o.status.success() => Ok(took),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot start {}: {e}", row.program.display())),
    }
}

/// Median wall time of each row over [`ROUNDS`] interleaved rounds, after one untimed
/// warm-up round; None (with the reason printed) for a row that failed.
pub fn medians(rows: &[Row]) -> Vec<Option<Duration>> {
    let mut times: Vec<Option<Vec<Duration>>> = rows.iter().map(|_| Some(Vec::new())).collect();
    for round in 0..=ROUNDS {
        // Each round starts one row further on, so no row always follows the same one
        // (an exec leaves work behind that slowed whichever row came next by ~1 ms).
        for i in (0..rows.len()).map(|i| (i + round) % rows.len()) {
            let (row, slot) = (&rows[i], &mut times[i]);
            let Some(v) = slot else { continue };
            match run_once(row) {
                Ok(t) if round > 0 => v.push(t),
                Ok(_) => {}
                Err(why) => {
                    println!("  {} failed: {why}", row.label);
                    *slot = None;
                }
            }
        }
    }
    times
        .into_iter()
        .map(|v| {
            let mut v = v?;
            v.sort();
            v.get(v.len() / 2).copied()
        })
        .collect()
}

/// Prints each row's median and its difference to the first row's (the baseline).
pub fn print_table(rows: &[Row], times: &[Option<Duration>]) {
    let base = first(times);
    for (i, (row, t)) in rows.iter().zip(times).enumerate() {
        let net = match (i, t, base) {
            (0, Some(_), _) => "(baseline)".to_string(),
            (_, Some(t), Some(b)) => format!("net {:>7.2} ms", ms(*t) - ms(b)),
            _ => String::new(),
        };
        let total = t.map_or_else(|| "?".to_string(), |t| format!("{:.2} ms", ms(t)));
        println!("  {:<34} {total:>10}   {net}", row.label);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The cri-call table, then crictl's if it is installed (and containerd's beside it).
pub fn report(t: &Target) {
    let sock = t.socket.to_string_lossy().into_owned();
    println!(
        "=== through a client process: median of {ROUNDS} rounds, net of each table's first row"
    );
    match client_path() {
        Some(client) => {
            let row = |label, rpc, id: &'static str| {
                let mut args = vec![sock.as_str(), rpc];
                match id {
                    "pod" => args.push(t.pod),
                    "ctr" => args.push(t.container),
                    _ => {}
                }
                Row {
                    label,
                    program: &client,
                    args,
                }
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
            print_table(&rows, &medians(&rows));
        }
        None => println!("  cri-call not built (cargo build --example cri-call); skipped"),
    }
    crictl_report(&format!("unix://{sock}"), t.container);
}

/// `crictl version` (the baseline), inspect, exec -s and imagefsinfo against crius and,
/// with CRIUS_BENCH_CONTAINERD="ENDPOINT CONTAINER_ID" (hack/containerd.sh start, run by
/// `BENCH_CONTAINERD=1 hack/bench.sh`), against Debian's containerd in the same rounds,
/// with crius's times as ratios to containerd's.
fn crictl_report(endpoint: &str, container: &str) {
    let crictl = Path::new(CRICTL);
    if !crictl.exists() {
        println!("  {CRICTL} not installed; crictl timings skipped");
        return;
    }
    let ctrd = std::env::var("CRIUS_BENCH_CONTAINERD").ok();
    let other = ctrd.as_deref().and_then(|s| s.split_once(' '));
    if let (Some(spec), None) = (&ctrd, other) {
        println!("  CRIUS_BENCH_CONTAINERD={spec:?} is not \"ENDPOINT CONTAINER_ID\"");
    }
    let mut rows = crictl_rows(crictl, endpoint, container);
    if let Some((ep, id)) = other {
        rows.extend(crictl_rows(crictl, ep, id));
    }
    let times = medians(&rows);
    let n = CRICTL_ROWS;
    print_table(&rows[..n], &times[..n]);
    if let Some((ep, _)) = other {
        println!("=== the same crictl commands against containerd ({ep}), same rounds");
        print_table(&rows[n..], &times[n..]);
        print_ratios(&rows[..n], &times[..n], &times[n..]);
    }
}

const CRICTL_ROWS: usize = 4;

fn crictl_rows<'a>(crictl: &'a Path, endpoint: &'a str, container: &'a str) -> Vec<Row<'a>> {
    let row = |label, more: &[&'a str]| {
        let mut args = vec!["-r", endpoint, "-i", endpoint];
        args.extend_from_slice(more);
        Row {
            label,
            program: crictl,
            args,
        }
    };
    vec![
        row("crictl version", &["version"]),
        row("crictl inspect ID", &["inspect", container]),
        row("crictl exec -s ID true", &["exec", "-s", container, "true"]),
        row("crictl imagefsinfo", &["imagefsinfo"]),
    ]
}

/// crius's medians over containerd's, total and net of each one's `crictl version`.
fn print_ratios(rows: &[Row], crius: &[Option<Duration>], ctrd: &[Option<Duration>]) {
    println!("=== crius / containerd (below 1.0: crius is faster)");
    let (base_a, base_b) = (first(crius), first(ctrd));
    for (i, row) in rows.iter().enumerate() {
        let (a, b) = (nth(crius, i), nth(ctrd, i));
        let net = match (a, b, base_a, base_b) {
            (Some(a), Some(b), Some(x), Some(y)) if i > 0 => {
                format!(
                    "net {}",
                    ratio(Some(a.saturating_sub(x)), Some(b.saturating_sub(y)))
                )
            }
            _ => String::new(),
        };
        println!("  {:<34} total {:>6}   {net}", row.label, ratio(a, b));
    }
}

fn first(v: &[Option<Duration>]) -> Option<Duration> {
    nth(v, 0)
}

fn nth(v: &[Option<Duration>], i: usize) -> Option<Duration> {
    v.get(i).copied().flatten()
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "?".into(),
    }
}
