//! Seccomp profiles in the docker/moby JSON format, the format of kubelet's Localhost
//! profiles and of the RuntimeDefault profile (`seccomp_default.json`): the OCI
//! `linux.seccomp` object plus `archMap` and per-rule `includes`/`excludes` by capability,
//! architecture and kernel version. [`Profile::to_oci`] resolves those for one container,
//! as moby's and containerd's `setupSeccomp` do; a plain OCI profile passes through.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSyscall,
};
use serde::Deserialize;

/// A parsed profile. Unknown fields (comments) are ignored, as docker and containerd do.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<std::path::PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    /// The old docker format's single name.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

/// When a rule applies (`includes`: all of these hold) or not (`excludes`: any holds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    /// Go's names: amd64, arm64, x86, ...
    #[serde(default)]
    arches: Option<Vec<String>>,
    /// "4.8": the running kernel is at least this version.
    #[serde(default)]
    min_kernel: Option<String>,
}

/// A kernel version as (major, minor).
pub type KernelVersion = (u32, u32);

/// What the resolved rules depend on: the container's capabilities, this machine's
/// architecture and kernel.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub caps: &'a HashSet<Capability>,
    pub kernel: KernelVersion,
}

/// Parses "6.1.0-18-amd64" or "4.8" into (major, minor).
pub fn parse_kernel_version(release: &str) -> Option<KernelVersion> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// This build's architecture as seccomp and Go name it.
fn native() -> (Arch, &'static str) {
    if cfg!(target_arch = "aarch64") {
        (Arch::ScmpArchAarch64, "arm64")
    } else if cfg!(target_arch = "s390x") {
        (Arch::ScmpArchS390x, "s390x")
    } else if cfg!(target_arch = "riscv64") {
        (Arch::ScmpArchRiscv64, "riscv64")
    } else {
        (Arch::ScmpArchX86_64, "amd64")
    }
}

impl Profile {
    pub fn parse(bytes: &[u8]) -> Result<Profile, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The OCI profile for one container. Errors name what is wrong with the profile.
    pub fn to_oci(&self, target: Target<'_>) -> Result<LinuxSeccomp, String> {
        let (arch, go_arch) = native();
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(self.architectures(arch)?);
        out.set_flags(self.flags.clone());
        out.set_listener_path(self.listener_path.clone());
        out.set_listener_metadata(self.listener_metadata.clone());
        let mut syscalls = Vec::new();
        for rule in self.syscalls.iter().flatten() {
            if rule.applies(go_arch, target)? {
                syscalls.push(rule.to_oci()?);
            }
        }
        out.set_syscalls(Some(syscalls));
        Ok(out)
    }

    /// `architectures`, or the `archMap` entry of this machine with its sub-architectures
    /// (x86_64 also runs x86 and x32 code); setting both is ambiguous (docker refuses it).
    fn architectures(&self, native: Arch) -> Result<Option<Vec<Arch>>, String> {
        let Some(map) = &self.arch_map else {
            return Ok(self.architectures.clone());
        };
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err("both architectures and archMap are set".into());
        }
        let entry = map.iter().find(|m| m.architecture == native);
        Ok(entry.map(|m| {
            std::iter::once(m.architecture)
                .chain(m.sub_architectures.iter().flatten().copied())
                .collect()
        }))
    }
}

impl Rule {
    fn applies(&self, go_arch: &str, target: Target<'_>) -> Result<bool, String> {
        let inc = &self.includes;
        if inc
            .arches
            .as_ref()
            .is_some_and(|a| !a.iter().any(|x| x == go_arch))
        {
            return Ok(false);
        }
        for cap in inc.caps.iter().flatten() {
            if !has_cap(target.caps, cap)? {
                return Ok(false);
            }
        }
        if let Some(min) = &inc.min_kernel
            && target.kernel < kernel_version(min)?
        {
            return Ok(false);
        }
        let exc = &self.excludes;
        if exc
            .arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == go_arch))
        {
            return Ok(false);
        }
        for cap in exc.caps.iter().flatten() {
            if has_cap(target.caps, cap)? {
                return Ok(false);
            }
        }
        if let Some(min) = &exc.min_kernel
            && target.kernel >= kernel_version(min)?
        {
            return Ok(false);
        }
        Ok(true)
    }

    fn to_oci(&self) -> Result<LinuxSyscall, String> {
        let names: Vec<String> = self
            .name
            .iter()
            .chain(self.names.iter().flatten())
            .cloned()
            .collect();
        if names.is_empty() {
            return Err("a syscall rule names no syscall".into());
        }
        let mut out = LinuxSyscall::default();
        out.set_names(names);
        out.set_action(self.action);
        out.set_errno_ret(self.errno_ret);
        out.set_args(self.args.clone());
        Ok(out)
    }
}

fn kernel_version(text: &str) -> Result<KernelVersion, String> {
    parse_kernel_version(text).ok_or_else(|| format!("invalid minKernel {text:?}"))
}

/// Whether `caps` holds `name` ("CAP_SYS_ADMIN" or "SYS_ADMIN").
fn has_cap(caps: &HashSet<Capability>, name: &str) -> Result<bool, String> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let cap: Capability = bare
        .parse()
        .map_err(|_| format!("unknown capability {name:?}"))?;
    Ok(caps.contains(&cap))
}

#[cfg(test)]
#[path = "seccomp_profile_tests.rs"]
mod tests;
