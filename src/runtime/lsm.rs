//! Linux security modules: whether the kernel has AppArmor or SELinux enabled, and the
//! AppArmor profile a container's process is confined by from its execve on.

use std::path::Path;

use super::{RuntimeError, io_err};

/// AppArmor is built in and enabled (`apparmor=1`, the module's `enabled` is `Y`).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// SELinux is enabled: selinuxfs is mounted where libselinux looks for it.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Asks AppArmor to confine this process by `profile` from its next execve, as runc does
/// (the LSM-specific attr file first, then the shared one older kernels have).
pub(super) fn apply_apparmor(profile: Option<&str>) -> Result<(), RuntimeError> {
    let Some(profile) = profile.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let value = format!("exec {profile}");
    let specific = Path::new("/proc/thread-self/attr/apparmor/exec");
    let path = if specific.exists() {
        specific
    } else {
        Path::new("/proc/thread-self/attr/exec")
    };
    std::fs::write(path, value).map_err(|e| io_err("apparmor profile", path, e))
}
