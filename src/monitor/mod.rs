//! The per-pod monitor: a re-executed crius (`crius monitor`), single-threaded and
//! without tokio, that owns the pod's containers. It is the child subreaper of every
//! container process, copies their output into CRI log files, records exit statuses and
//! answers the daemon over `<pod dir>/monitor.sock` (see `proto/monitor.proto`).
//!
//! Daemon side: [`spawn`] starts a detached monitor and waits until it answers;
//! [`MonitorClient`] talks to it.
//!
//! ```text
//!  daemon ──spawn──> crius monitor --detach ──Command──> crius monitor   (reparented to
//!     │                 (exits at once, reaped by daemon)       │          init/subreaper)
//!     └──────── MonitorClient: frames over monitor.sock ────────┘
//! ```

mod attach;
mod client;
mod conn;
#[cfg(test)]
mod container_tests;
mod containers;
mod exec;
mod exec_client;
mod exec_stream;
#[cfg(test)]
mod exec_stream_tests;
mod frame;
mod log;
mod podinit;
#[cfg(test)]
mod podinit_tests;
mod server;
mod spawn;
mod sys;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::{Classify, Kind};
use crate::runtime::RuntimeError;

pub use client::MonitorClient;
pub use exec_client::StreamingExec;
pub use podinit::PodInitOptions;
pub use spawn::{SpawnOptions, spawn};

pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/crius.monitor.v1.rs"));
}

/// File names inside the pod directory.
pub const SOCKET_NAME: &str = "monitor.sock";
pub const PID_NAME: &str = "monitor.pid";
pub const LOG_NAME: &str = "monitor.log";

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The socket is missing or refuses connections, or the connection broke mid-call:
    /// the monitor is dead (or not started yet).
    #[error("monitor at {socket} is unavailable: {source}")]
    Unavailable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("monitor at {socket} did not answer within {waited:?}")]
    Timeout { socket: PathBuf, waited: Duration },
    #[error("monitor frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge { len: usize, limit: usize },
    #[error("decoding monitor message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("monitor answered {got} to a {request} request")]
    UnexpectedResponse {
        request: &'static str,
        got: &'static str,
    },
    // Errors reported by the monitor, one variant per protocol code; the string is the
    // monitor's own message.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("monitor: {0}")]
    Internal(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: nix::Error,
    },
    #[error("another monitor is already serving {0}")]
    AlreadyRunning(PathBuf),
    /// The monitor exited before serving; `message` is the error it logged.
    #[error("monitor failed to start: {message} (log: {log})")]
    StartFailed { log: PathBuf, message: String },
    #[error("monitor launcher {exe} exited with {status}")]
    Launcher {
        exe: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl MonitorError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MonitorError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The monitor is gone (or not started): the daemon falls back to what it left on disk.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MonitorError::Unavailable { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, MonitorError::NotFound(_))
    }

    pub(crate) fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> Self {
        move |source| MonitorError::Sys { op, source }
    }
}

impl Classify for MonitorError {
    fn kind(&self) -> Kind {
        match self {
            MonitorError::Unavailable { .. } => Kind::Unavailable,
            MonitorError::Timeout { .. } => Kind::DeadlineExceeded,
            MonitorError::NotFound(_) => Kind::NotFound,
            MonitorError::InvalidArgument(_) => Kind::InvalidArgument,
            MonitorError::FailedPrecondition(_) => Kind::FailedPrecondition,
            MonitorError::AlreadyExists(_) => Kind::AlreadyExists,
            MonitorError::Runtime(e) => e.kind(),
            MonitorError::Store(e) => e.kind(),
            MonitorError::FrameTooLarge { .. }
            | MonitorError::Decode(_)
            | MonitorError::UnexpectedResponse { .. }
            | MonitorError::Internal(_)
            | MonitorError::Io { .. }
            | MonitorError::Sys { .. }
            | MonitorError::AlreadyRunning(_)
            | MonitorError::Launcher { .. }
            | MonitorError::StartFailed { .. } => Kind::Internal,
        }
    }
}

/// What the monitor writes to a container's `exit_file` when its init exits, so the
/// daemon can learn the exit status even after the monitor is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    /// Unix nanoseconds.
    pub finished_at: i64,
    /// "Completed", "Error" (and later "OOMKilled").
    pub reason: String,
    pub message: String,
}

impl ExitRecord {
    pub fn reason_for(exit_code: i32) -> &'static str {
        if exit_code == 0 { "Completed" } else { "Error" }
    }
}

/// `crius monitor --pod-id ID --dir DIR [--cgroup-root R] [--detach]
/// [--pod-init-pin PIN --pod-init-cgroup CG [--pod-init-join NS]... [--pod-init-userns U]]`. Parsed by hand,
/// not by clap: every page of code the monitor touches stays resident in each monitor,
/// and clap's parser was a large share of an idle monitor's footprint.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    /// Pod sandbox id.
    pub pod_id: String,
    /// The pod's volatile directory; the socket is <dir>/monitor.sock.
    pub dir: std::path::PathBuf,
    pub cgroup_root: std::path::PathBuf,
    /// Start the real monitor as a new process and exit at once, so the caller reaps
    /// this launcher and the monitor is reparented away from it.
    pub detach: bool,
    /// Start a pod init holding a PID namespace for the pod's containers.
    pub pod_init: Option<PodInitOptions>,
}

impl MonitorArgs {
    /// Parses the arguments after `monitor`.
    pub fn parse<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> Result<Self, String> {
        let (mut pod_id, mut dir, mut detach) = (None, None, false);
        let (mut pin, mut pod_cgroup, mut join, mut user) = (None, None, Vec::new(), None);
        let mut cgroup_root = std::path::PathBuf::from("/sys/fs/cgroup");
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag.to_string_lossy().into_owned();
            if flag == "--detach" {
                detach = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--pod-id" => pod_id = Some(value.to_string_lossy().into_owned()),
                "--dir" => dir = Some(value.into()),
                "--cgroup-root" => cgroup_root = value.into(),
                "--pod-init-pin" => pin = Some(value.into()),
                "--pod-init-cgroup" => pod_cgroup = Some(value.to_string_lossy().into_owned()),
                "--pod-init-join" => join.push(value.into()),
                "--pod-init-userns" => user = Some(value.into()),
                _ => return Err(format!("unknown monitor argument {flag:?}")),
            }
        }
        let pod_init = match (pin, pod_cgroup) {
            (Some(pin), Some(cgroup)) => Some(PodInitOptions {
                pin,
                join,
                cgroup,
                user,
            }),
            (None, None) if join.is_empty() && user.is_none() => None,
            _ => return Err("--pod-init-pin and --pod-init-cgroup go together".into()),
        };
        Ok(MonitorArgs {
            pod_id: pod_id.ok_or("--pod-id is required")?,
            dir: dir.ok_or("--dir is required")?,
            cgroup_root,
            detach,
            pod_init,
        })
    }
}

pub fn run(args: MonitorArgs) -> ExitCode {
    let result = if args.detach {
        spawn::launch(&args)
    } else {
        server::serve(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius monitor {}: {e}", args.pod_id);
            ExitCode::FAILURE
        }
    }
}

/// Current time in Unix nanoseconds (0 if the clock is before 1970).
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod args_tests {
    use super::MonitorArgs;

    fn parse(args: &[&str]) -> Result<MonitorArgs, String> {
        MonitorArgs::parse(args.iter().map(|a| a.into()))
    }

    #[test]
    fn monitor_args() {
        let a = parse(&["--pod-id", "p", "--dir", "/d", "--detach"]).unwrap();
        assert_eq!(a.pod_id, "p");
        assert_eq!(a.dir, std::path::PathBuf::from("/d"));
        assert_eq!(a.cgroup_root, std::path::PathBuf::from("/sys/fs/cgroup"));
        assert!(a.detach);
        let a = parse(&["--dir", "/d", "--cgroup-root", "/c", "--pod-id", "p"]).unwrap();
        assert_eq!(a.cgroup_root, std::path::PathBuf::from("/c"));
        assert!(!a.detach);
        assert!(parse(&["--dir", "/d"]).is_err());
        assert!(parse(&["--pod-id", "p"]).is_err());
        assert!(parse(&["--pod-id"]).is_err());
        assert!(parse(&["--pod-id", "p", "--dir", "/d", "--bogus", "x"]).is_err());
        assert_eq!(a.pod_init, None);
        let a = parse(&[
            "--pod-id",
            "p",
            "--dir",
            "/d",
            "--pod-init-pin",
            "/d/ns/pid",
            "--pod-init-join",
            "/d/ns/net",
            "--pod-init-cgroup",
            "c/pod-p",
            "--pod-init-join",
            "/d/ns/ipc",
            "--pod-init-userns",
            "/d/ns/user",
        ])
        .unwrap();
        let init = a.pod_init.expect("pod init");
        assert_eq!(init.pin, std::path::PathBuf::from("/d/ns/pid"));
        assert_eq!(init.cgroup, "c/pod-p");
        assert_eq!(
            init.join,
            ["/d/ns/net", "/d/ns/ipc"].map(std::path::PathBuf::from)
        );
        assert_eq!(init.user, Some(std::path::PathBuf::from("/d/ns/user")));
        assert!(parse(&["--pod-id", "p", "--dir", "/d", "--pod-init-pin", "/x"]).is_err());
        assert!(parse(&["--pod-id", "p", "--dir", "/d", "--pod-init-join", "/x"]).is_err());
    }
}
