//! Exec with streams (hack/bench.sh): `crictl exec ID true` without `-s` (Exec, then the
//! streaming URL, then SPDY or WebSocket) and the stdout throughput of one exec, for
//! crius and, with CRIUS_BENCH_CONTAINERD (see `bench_client::crictl_report`), for
//! containerd in the same rounds, with crius's numbers as ratios to containerd's.
//! Printed, never asserted.

use crate::bench_client::{Row, medians, print_table};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRICTL: &str = "/usr/local/bin/crictl";
/// Bytes of stdout per throughput run: `dd` writes them in pipe-sized blocks, so that the
/// producer costs little next to the relay measured.
const BLOCK: u64 = 64 * 1024;
const BLOCKS: u64 = 3200;
const BYTES: u64 = BLOCK * BLOCKS;
/// Throughput rounds (each moves [`BYTES`] through every runtime and transport once).
const ROUNDS: usize = 5;

/// One runtime's endpoint and container.
struct Side<'a> {
    name: &'static str,
    endpoint: &'a str,
    container: &'a str,
}

/// The round-trip and throughput tables for crius at `endpoint` (and containerd's).
pub fn report(endpoint: &str, container: &str) {
    let crictl = Path::new(CRICTL);
    if !crictl.exists() {
        println!("  {CRICTL} not installed; exec timings skipped");
        return;
    }
    let ctrd = std::env::var("CRIUS_BENCH_CONTAINERD").ok();
    let mut sides = vec![Side {
        name: "crius",
        endpoint,
        container,
    }];
    if let Some((ep, id)) = ctrd.as_deref().and_then(|s| s.split_once(' ')) {
        sides.push(Side {
            name: "containerd",
            endpoint: ep,
            container: id,
        });
    }
    let trips = round_trips(crictl, &sides);
    throughput(crictl, &sides, &trips);
}

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

/// Median `crictl exec ID true` per side and transport, and net of `crictl version`;
/// returns the medians, [side][0 = version, 1.. = transports].
fn round_trips(crictl: &Path, sides: &[Side]) -> Vec<Vec<Option<Duration>>> {
    let mut rows = Vec::new();
    for s in sides {
        let base = ["-r", s.endpoint, "-i", s.endpoint];
        rows.push(Row {
            label: "crictl version",
            program: crictl,
            args: [&base[..], &["version"]].concat(),
        });
        for t in TRANSPORTS {
            let exec = ["exec", "--transport", t, s.container, "true"];
            rows.push(Row {
                label: if t == "spdy" {
                    "crictl exec ID true (SPDY)"
                } else {
                    "crictl exec ID true (WebSocket)"
                },
                program: crictl,
                args: [&base[..], &exec[..]].concat(),
            });
        }
    }
    let times = medians(&rows);
    let per = TRANSPORTS.len() + 1;
    let split: Vec<Vec<Option<Duration>>> = times.chunks(per).map(<[_]>::to_vec).collect();
    for (i, s) in sides.iter().enumerate() {
        println!(
            "=== exec with streams, {}: median, net of crictl version",
            s.name
        );
        print_table(&rows[i * per..(i + 1) * per], &split[i]);
    }
    if let [a, b] = &split[..] {
        println!("=== exec round trip, crius / containerd (target: net <= 0.2)");
        for (k, t) in TRANSPORTS.iter().enumerate() {
            let (x, y) = (a[k + 1], b[k + 1]);
            let net = |v: Option<Duration>, base: Option<Duration>| Some(v?.saturating_sub(base?));
            println!(
                "  {t:<10} total {:>6}   net {:>6}",
                ratio(x, y),
                ratio(net(x, a[0]), net(y, b[0]))
            );
        }
    }
    split
}

/// `dd` of [`BYTES`] zeros to stdout through `crictl exec`, stdout discarded; MB/s per
/// side and transport, gross and net of that side's `exec true` round trip.
fn throughput(crictl: &Path, sides: &[Side], trips: &[Vec<Option<Duration>>]) {
    let (bs, count) = (format!("bs={BLOCK}"), format!("count={BLOCKS}"));
    let mut runs: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for (i, s) in sides.iter().enumerate() {
        for (k, t) in TRANSPORTS.iter().enumerate() {
            let args = [
                "-r",
                s.endpoint,
                "-i",
                s.endpoint,
                "exec",
                "--transport",
                t,
                s.container,
                "dd",
                "if=/dev/zero",
                &bs,
                &count,
            ];
            runs.push((i, k, args.iter().map(|a| a.to_string()).collect()));
        }
    }
    let mut times: Vec<Option<Vec<Duration>>> = runs.iter().map(|_| Some(Vec::new())).collect();
    for round in 0..=ROUNDS {
        for (j, (i, k, args)) in runs.iter().enumerate() {
            let Some(v) = &mut times[j] else { continue };
            // The untimed first round counts the bytes: a run that moved fewer is no
            // measurement of throughput.
            match if round == 0 {
                counted(crictl, args)
            } else {
                discarded(crictl, args)
            } {
                Ok(t) if round > 0 => v.push(t),
                Ok(_) => {}
                Err(why) => {
                    println!("  {} {} dd failed: {why}", sides[*i].name, TRANSPORTS[*k]);
                    times[j] = None;
                }
            }
        }
    }
    println!("=== exec stdout throughput: {BYTES} bytes, median of {ROUNDS}, MB/s (10^6 B/s)");
    let mut mbps = vec![vec![(None, None); TRANSPORTS.len()]; sides.len()];
    for ((i, k, _), t) in runs.iter().zip(times) {
        let t = t.map(|mut v| {
            v.sort();
            v[v.len() / 2]
        });
        let net = t.zip(trips[*i][k + 1]).map(|(t, rt)| t.saturating_sub(rt));
        mbps[*i][*k] = (t.map(rate), net.map(rate));
        println!(
            "  {:<10} {:<10} {:>10}   {:>8} MB/s   net of exec true {:>8} MB/s",
            sides[*i].name,
            TRANSPORTS[*k],
            t.map_or_else(
                || "?".into(),
                |t| format!("{:.0} ms", t.as_secs_f64() * 1e3)
            ),
            fmt(mbps[*i][*k].0),
            fmt(mbps[*i][*k].1),
        );
    }
    if let [a, b] = &mbps[..] {
        println!("=== exec throughput, crius / containerd (target: >= 2.0)");
        for (k, t) in TRANSPORTS.iter().enumerate() {
            let r = |x: Option<f64>, y: Option<f64>| match (x, y) {
                (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
                _ => "?".into(),
            };
            println!(
                "  {t:<10} total {:>6}   net {:>6}",
                r(a[k].0, b[k].0),
                r(a[k].1, b[k].1)
            );
        }
    }
}

fn rate(t: Duration) -> f64 {
    BYTES as f64 / t.as_secs_f64().max(1e-9) / 1e6
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.0}"))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "?".into(),
    }
}

/// One timed run, stdout to /dev/null.
fn discarded(crictl: &Path, args: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new(crictl)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start crictl: {e}"))?;
    let took = t.elapsed();
    match out.status.success() {
        true => Ok(took),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

/// One run whose stdout is counted; an error unless it is [`BYTES`] long.
fn counted(crictl: &Path, args: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let mut child = Command::new(crictl)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start crictl: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while let Ok(k @ 1..) = stdout.read(&mut buf) {
        n += k as u64;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let took = t.elapsed();
    match (out.status.success(), n) {
        (true, BYTES) => Ok(took),
        (true, n) => Err(format!("{n} bytes of stdout, not {BYTES}")),
        (false, _) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}
