//! Linux capabilities from `process.capabilities`: the five sets as bitmasks, and
//! applying them with capset(2) and prctl(2) (no wrapper crate needed for five calls).
#![allow(unsafe_code)]

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use super::{RuntimeError, io_err};

/// Kernel capability numbers are the positions in this list (linux/capability.h).
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The five capability sets, bit N = capability N.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: &Option<Capabilities>) -> u64 {
    let Some(set) = set else { return 0 };
    set.iter()
        .filter_map(|cap| NAMES.iter().position(|n| *n == cap.to_string()))
        .fold(0, |m, bit| m | (1u64 << bit))
}

impl CapSets {
    /// No `capabilities` in the spec means no capabilities at all.
    pub(super) fn from_spec(caps: Option<&LinuxCapabilities>) -> Self {
        let Some(c) = caps else {
            return CapSets::default();
        };
        CapSets {
            bounding: mask(c.bounding()),
            effective: mask(c.effective()),
            permitted: mask(c.permitted()),
            inheritable: mask(c.inheritable()),
            ambient: mask(c.ambient()),
        }
    }
}

/// Highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

fn prctl(op: &'static str, option: libc::c_int, arg2: u64, arg3: u64) -> Result<(), RuntimeError> {
    // SAFETY: the capability prctls take integer arguments only; no memory is shared.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0u64, 0u64) };
    if rc < 0 {
        return Err(io_err(
            op,
            "prctl".as_ref(),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The names of the capabilities in the calling process's bounding set: the most that
/// any process it starts can hold.
pub fn bounding_names() -> Vec<&'static str> {
    let max = last_cap().min(NAMES.len() as u32 - 1);
    (0..=max)
        .filter(|&cap| {
            // SAFETY: PR_CAPBSET_READ takes an integer and shares no memory.
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, u64::from(cap), 0u64, 0u64, 0u64) == 1 }
        })
        .map(|cap| NAMES[cap as usize])
        .collect()
}

/// Drops every capability outside the bounding set. Needs CAP_SETPCAP, so it runs before
/// the user change.
pub(super) fn drop_bounding(sets: &CapSets) -> Result<(), RuntimeError> {
    for cap in 0..=last_cap().min(63) {
        if sets.bounding & (1 << cap) == 0 {
            prctl(
                "drop bounding capability",
                libc::PR_CAPBSET_DROP,
                cap.into(),
                0,
            )?;
        }
    }
    Ok(())
}

/// Sets the effective, permitted and inheritable sets, then the ambient set (whose
/// members must be permitted and inheritable by then).
pub(super) fn apply(sets: &CapSets) -> Result<(), RuntimeError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
    let data: [Data; 2] = [0, 1].map(|i| Data {
        effective: word(sets.effective, i),
        permitted: word(sets.permitted, i),
        inheritable: word(sets.inheritable, i),
    });
    // SAFETY: header and data are live, correctly laid out (repr(C), version 3 takes two
    // data words) and only read by the kernel.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(io_err("capset", "capabilities".as_ref(), e));
    }
    prctl(
        "clear ambient",
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
        0,
    )?;
    for cap in 0..64u64 {
        if sets.ambient & (1 << cap) != 0 {
            let raise = libc::PR_CAP_AMBIENT_RAISE as u64;
            prctl("raise ambient", libc::PR_CAP_AMBIENT, raise, cap)?;
        }
    }
    Ok(())
}

/// Keeps permitted capabilities across the setuid away from root.
pub(super) fn keep_caps(keep: bool) -> Result<(), RuntimeError> {
    prctl("PR_SET_KEEPCAPS", libc::PR_SET_KEEPCAPS, keep.into(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn sets_map_names_to_kernel_numbers() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(
                [Capability::Chown, Capability::NetBindService]
                    .into_iter()
                    .collect::<Capabilities>(),
            )
            .effective([Capability::SysAdmin].into_iter().collect::<Capabilities>())
            .ambient(
                [Capability::CheckpointRestore]
                    .into_iter()
                    .collect::<Capabilities>(),
            )
            .build()
            .unwrap();
        let sets = CapSets::from_spec(Some(&caps));
        assert_eq!(sets.bounding, (1 << 0) | (1 << 10));
        assert_eq!(sets.effective, 1 << 21);
        assert_eq!(sets.ambient, 1 << 40);
        // oci-spec's default set: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
        assert_eq!(sets.permitted, (1 << 29) | (1 << 5) | (1 << 10));
        assert_eq!(CapSets::from_spec(None), CapSets::default());
    }
}
