//! The identity a container process runs as: user, groups, capabilities and
//! no_new_privs, applied in the order the kernel requires.

use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::Process;

use super::capabilities::{self, CapSets};
use super::{RuntimeError, sys_err};

const DEFAULT_UMASK: u32 = 0o022;

/// Drops to the spec's user and capabilities. Bounding-set drops need CAP_SETPCAP, so
/// they come first; KEEPCAPS keeps the permitted set across setuid; the final sets are
/// installed last.
pub(super) fn apply_identity(process: &Process) -> Result<(), RuntimeError> {
    let caps = CapSets::from_spec(process.capabilities().as_ref());
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(sys_err("set no_new_privs"))?;
    }
    capabilities::drop_bounding(&caps)?;
    capabilities::keep_caps(true)?;
    let user = process.user();
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&groups).map_err(sys_err("setgroups"))?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(sys_err("setgid"))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(sys_err("setuid"))?;
    capabilities::keep_caps(false)?;
    capabilities::apply(&caps)?;
    // Not inherited from the monitor: 0022 unless the spec says otherwise, as runc does.
    let umask = user.umask().unwrap_or(DEFAULT_UMASK);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    Ok(())
}
