//! The per-pod monitor: a re-executed crius, single-threaded, that owns the pod's
//! containers. (Placeholder: the monitor helper fills this module.)

use crate::error::{Classify, Kind};

pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/crius.monitor.v1.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("placeholder")]
    Placeholder,
}

impl Classify for MonitorError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Pod sandbox id.
    #[arg(long)]
    pub pod_id: String,
    /// The pod's volatile directory; the socket is <dir>/monitor.sock.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: std::path::PathBuf,
}

pub fn run(_args: MonitorArgs) -> std::process::ExitCode {
    todo!("monitor::run")
}
