//! Resource limits and the OOM score of the container's processes.

use std::io::ErrorKind;
use std::path::Path;

use nix::sys::resource::{Resource, setrlimit};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::{RuntimeError, io_err, sys_err};

fn resource(typ: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match typ {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub(super) fn apply(limits: &[PosixRlimit]) -> Result<(), RuntimeError> {
    for l in limits {
        setrlimit(resource(l.typ()), l.soft(), l.hard()).map_err(sys_err("setrlimit"))?;
    }
    Ok(())
}

/// Writes `oom_score_adj`. Lowering it needs CAP_SYS_RESOURCE; without it the kernel
/// refuses and the current value is kept (clamped rather than failing the container).
pub(super) fn set_oom_score_adj(value: i32) -> Result<(), RuntimeError> {
    let path = Path::new("/proc/self/oom_score_adj");
    match std::fs::write(path, value.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied) => Ok(()),
        Err(e) => Err(io_err("write", path, e)),
    }
}
