//! Which seccomp profile a container gets, from its CRI security context, as containerd
//! chooses it: `seccomp` (a `SecurityProfile`) wins over the deprecated
//! `seccomp_profile_path`; neither set means unconfined (kubelet sends RuntimeDefault
//! explicitly when a pod asks for it); a privileged container is never confined.
//!
//! [`load`] does the I/O (the Localhost file, the kernel version) before spec generation;
//! [`build`] turns what it loaded into the OCI `linux.seccomp` for the container's
//! capabilities. The pod's own `LinuxSandboxSecurityContext.seccomp` applies to a sandbox
//! container, which crius does not run (a pod is its namespaces and the monitor).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use k8s_cri::v1::LinuxContainerSecurityContext;
use k8s_cri::v1::security_profile::ProfileType;
use oci_spec::runtime::{Capability, LinuxSeccomp};

use super::seccomp_profile::{self, KernelVersion, Profile, Target};

/// The RuntimeDefault profile (derived from moby's, see the file's comment).
const DEFAULT_PROFILE: &[u8] = include_bytes!("seccomp_default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "unknown seccomp profile {0:?}: expected runtime/default, docker/default, unconfined \
         or localhost/<absolute path>"
    )]
    UnknownProfile(String),
    #[error("unknown seccomp profile type {0}")]
    UnknownType(i32),
    #[error("seccomp localhost profile {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("seccomp localhost_ref {0:?} is only allowed with profile type Localhost")]
    StrayRef(String),
    #[error("cannot read seccomp profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed seccomp profile {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid seccomp profile {profile}: {reason}")]
    Invalid { profile: String, reason: String },
}

/// What the security context asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Unconfined,
    RuntimeDefault,
    Localhost(PathBuf),
}

/// A profile read and parsed, ready for [`build`]; `None` is unconfined.
#[derive(Debug, Clone)]
pub struct Loaded {
    profile: Option<(String, Arc<Profile>)>,
    kernel: KernelVersion,
}

impl Loaded {
    /// No seccomp filter.
    pub fn unconfined() -> Self {
        Loaded {
            profile: None,
            kernel: (0, 0),
        }
    }

    /// Whether the profile came from the node (Localhost), not from crius's own tested
    /// RuntimeDefault data: only such a profile needs compiling at CreateContainer to
    /// find what libseccomp refuses.
    pub fn is_localhost(&self) -> bool {
        self.profile
            .as_ref()
            .is_some_and(|(name, _)| name != RUNTIME_DEFAULT)
    }
}

const RUNTIME_DEFAULT: &str = "runtime/default";

pub fn select(sc: Option<&LinuxContainerSecurityContext>) -> Result<Selection, SeccompError> {
    let Some(sc) = sc else {
        return Ok(Selection::Unconfined);
    };
    if sc.privileged {
        return Ok(Selection::Unconfined);
    }
    if let Some(p) = &sc.seccomp {
        let typ = ProfileType::try_from(p.profile_type)
            .map_err(|_| SeccompError::UnknownType(p.profile_type))?;
        if typ != ProfileType::Localhost && !p.localhost_ref.is_empty() {
            return Err(SeccompError::StrayRef(p.localhost_ref.clone()));
        }
        return match typ {
            ProfileType::RuntimeDefault => Ok(Selection::RuntimeDefault),
            ProfileType::Unconfined => Ok(Selection::Unconfined),
            ProfileType::Localhost => localhost(&p.localhost_ref),
        };
    }
    match deprecated_profile_path(sc) {
        "" | "unconfined" => Ok(Selection::Unconfined),
        "runtime/default" | "docker/default" => Ok(Selection::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(path) => localhost(path),
            None => Err(SeccompError::UnknownProfile(other.to_string())),
        },
    }
}

/// `seccomp_profile_path`: deprecated, still what older kubelets send.
#[allow(deprecated)]
fn deprecated_profile_path(sc: &LinuxContainerSecurityContext) -> &str {
    &sc.seccomp_profile_path
}

fn localhost(path: &str) -> Result<Selection, SeccompError> {
    if !Path::new(path).is_absolute() {
        return Err(SeccompError::NotAbsolute(path.to_string()));
    }
    Ok(Selection::Localhost(PathBuf::from(path)))
}

/// Reads what [`select`] chose (blocking: the Localhost file and the kernel version).
pub fn load(sc: Option<&LinuxContainerSecurityContext>) -> Result<Loaded, SeccompError> {
    let (name, profile) = match select(sc)? {
        Selection::Unconfined => return Ok(Loaded::unconfined()),
        Selection::RuntimeDefault => (RUNTIME_DEFAULT.to_string(), runtime_default()?),
        Selection::Localhost(path) => {
            let bytes = std::fs::read(&path).map_err(|source| SeccompError::Read {
                path: path.clone(),
                source,
            })?;
            let profile = Profile::parse(&bytes).map_err(|source| SeccompError::Parse {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), Arc::new(profile))
        }
    };
    Ok(Loaded {
        profile: Some((name, profile)),
        kernel: kernel_version(),
    })
}

/// The RuntimeDefault profile, parsed once: it is most pods' profile, and its JSON is
/// crius's own constant data.
fn runtime_default() -> Result<Arc<Profile>, SeccompError> {
    static PARSED: OnceLock<Arc<Profile>> = OnceLock::new();
    if let Some(p) = PARSED.get() {
        return Ok(p.clone());
    }
    let parsed = Profile::parse(DEFAULT_PROFILE).map_err(|source| SeccompError::Parse {
        path: PathBuf::from(RUNTIME_DEFAULT),
        source,
    })?;
    Ok(PARSED.get_or_init(|| Arc::new(parsed)).clone())
}

/// The running kernel's (major, minor); (0, 0) if unknown, which leaves out the rules that
/// need a minimum kernel.
fn kernel_version() -> KernelVersion {
    static VERSION: OnceLock<KernelVersion> = OnceLock::new();
    *VERSION.get_or_init(|| {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| seccomp_profile::parse_kernel_version(&u.release().to_string_lossy()))
            .unwrap_or((0, 0))
    })
}

/// The OCI `linux.seccomp` for a container with `caps` (its bounding set).
pub fn build(
    loaded: &Loaded,
    caps: &HashSet<Capability>,
) -> Result<Option<LinuxSeccomp>, SeccompError> {
    let Some((name, profile)) = &loaded.profile else {
        return Ok(None);
    };
    let target = Target {
        caps,
        kernel: loaded.kernel,
    };
    profile
        .to_oci(target)
        .map(Some)
        .map_err(|reason| SeccompError::Invalid {
            profile: name.clone(),
            reason,
        })
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
