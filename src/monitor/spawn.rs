//! Starting a monitor from the (multithreaded, tokio) daemon without fork tricks:
//!
//! ```text
//! daemon ── tokio Command ──> crius monitor --detach   (the launcher)
//!   waits for the launcher       └── std Command ──> crius monitor   (the monitor)
//!   (it exits at once), then         exits 0            setsid, subreaper, serve
//!   pings monitor.sock until it answers
//! ```
//!
//! The launcher's exit orphans the monitor, which init (or the nearest subreaper) adopts,
//! so the daemon never holds a zombie and its death never takes the monitor along. The
//! monitor calls `setsid` itself, leaving the daemon's session and process group.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{LOG_NAME, MonitorArgs, MonitorClient, MonitorError, PodInitOptions, SOCKET_NAME};
use crate::error::{Classify, Kind};

/// How long [`spawn`] waits for the new monitor to answer Ping.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const READY_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub pod_id: String,
    /// The pod's volatile dir: monitor.sock, monitor.pid and monitor.log go here.
    pub dir: PathBuf,
    pub cgroup_root: PathBuf,
    /// The crius binary (the daemon's `std::env::current_exe()`).
    pub exe: PathBuf,
    /// A pod-wide PID namespace held by a pod init (`podinit.rs`).
    pub pod_init: Option<PodInitOptions>,
}

/// Starts the pod's monitor and returns once it answers on `<dir>/monitor.sock`.
/// Async: call it from the daemon's tokio runtime.
pub async fn spawn(opts: &SpawnOptions) -> Result<(), MonitorError> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| MonitorError::io("creating", &opts.dir, e))?;
    let log_path = opts.dir.join(LOG_NAME);
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(|e| MonitorError::io("opening", &log_path, e))?;
    let startup = StartupLog {
        offset: log.metadata().map_or(0, |m| m.len()),
        path: log_path,
        prefix: format!("crius monitor {}: ", opts.pod_id),
    };
    let status = tokio::process::Command::new(&opts.exe)
        .arg("monitor")
        .arg("--detach")
        .args(monitor_args(&opts.pod_id, &opts.dir, &opts.cgroup_root))
        .args(pod_init_args(opts.pod_init.as_ref()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .status()
        .await
        .map_err(|e| MonitorError::io("running", &opts.exe, e))?;
    if !status.success() {
        return Err(MonitorError::Launcher {
            exe: opts.exe.clone(),
            status,
        });
    }
    wait_ready(&MonitorClient::new(opts.dir.join(SOCKET_NAME)), &startup).await
}

/// The part of monitor.log this start writes. A monitor that fails to start prints
/// `crius monitor <pod id>: <error>` there (`run`) and exits.
struct StartupLog {
    path: PathBuf,
    offset: u64,
    prefix: String,
}

impl StartupLog {
    async fn failure(&self) -> Option<MonitorError> {
        let text = tokio::fs::read(&self.path).await.ok()?;
        let new = text.get(usize::try_from(self.offset).ok()?..)?;
        let line = String::from_utf8_lossy(new)
            .lines()
            .filter_map(|l| l.strip_prefix(&self.prefix))
            .find(|rest| !rest.starts_with("serving "))?
            .to_string();
        Some(MonitorError::StartFailed {
            log: self.path.clone(),
            message: line,
        })
    }
}

fn monitor_args<'a>(
    pod_id: &'a str,
    dir: &'a Path,
    cgroup_root: &'a Path,
) -> [&'a std::ffi::OsStr; 6] {
    [
        "--pod-id".as_ref(),
        pod_id.as_ref(),
        "--dir".as_ref(),
        dir.as_os_str(),
        "--cgroup-root".as_ref(),
        cgroup_root.as_os_str(),
    ]
}

fn pod_init_args(opts: Option<&PodInitOptions>) -> Vec<std::ffi::OsString> {
    let Some(o) = opts else {
        return Vec::new();
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "--pod-init-pin".into(),
        o.pin.clone().into(),
        "--pod-init-cgroup".into(),
        o.cgroup.clone().into(),
    ];
    for ns in &o.join {
        args.extend(["--pod-init-join".into(), ns.clone().into()]);
    }
    if let Some(user) = &o.user {
        args.extend(["--pod-init-userns".into(), user.clone().into()]);
    }
    args
}

/// Pings until the monitor answers; "unavailable" is expected while it binds, unless
/// the monitor has already logged why it could not start.
async fn wait_ready(client: &MonitorClient, log: &StartupLog) -> Result<(), MonitorError> {
    let start = Instant::now();
    loop {
        match client.ping().await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == Kind::Unavailable && start.elapsed() < READY_TIMEOUT => {
                if let Some(failed) = log.failure().await {
                    return Err(failed);
                }
                tokio::time::sleep(READY_POLL).await;
            }
            Err(e) if e.kind() == Kind::Unavailable => {
                return Err(MonitorError::Timeout {
                    socket: client.socket().to_path_buf(),
                    waited: READY_TIMEOUT,
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// The launcher (`crius monitor --detach`): starts the real monitor and exits without
/// waiting for it. Its stdio (null, null, monitor.log) is inherited.
pub fn launch(args: &MonitorArgs) -> Result<(), MonitorError> {
    // /proc/self/exe still works if the binary was replaced on disk by an upgrade.
    let exe = Path::new("/proc/self/exe");
    // argv[0] as the daemon gave it, so `ps` shows crius rather than /proc/self/exe.
    let argv0 = std::env::args_os().next().unwrap_or_else(|| "crius".into());
    std::process::Command::new(exe)
        .arg0(argv0)
        .arg("monitor")
        .args(monitor_args(&args.pod_id, &args.dir, &args.cgroup_root))
        .args(pod_init_args(args.pod_init.as_ref()))
        .spawn()
        .map_err(|e| MonitorError::io("starting monitor", exe, e))?;
    // Dropping the Child neither waits for nor kills it: it is orphaned when we exit.
    Ok(())
}
