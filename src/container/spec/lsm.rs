//! AppArmor and SELinux from the CRI security context, decided against what the host has.
//!
//! Like containerd: on a host without AppArmor any profile but Unconfined is an error
//! (kubelet sends none there), rather than a container silently running unconfined.
//! Where AppArmor is enabled, RuntimeDefault, and no profile at all (kubernetes#51746),
//! mean crius's own profile, loaded at daemon start; if that load failed they are
//! refused with its cause. Privileged containers and Unconfined get no profile. SELinux
//! labels are ignored where SELinux is disabled (kubelet sends them regardless of the
//! host) and refused where it is enabled, because crius does not label processes or
//! mounts yet.

use k8s_cri::v1::LinuxContainerSecurityContext;
use k8s_cri::v1::security_profile::ProfileType;

use super::{Host, SpecError};

/// The RuntimeDefault profile as the daemon found it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultProfile {
    /// Loaded in the kernel under this name.
    Loaded(String),
    /// Not usable, and why (AppArmor off, no apparmor_parser, the parser's complaint).
    Unavailable(String),
}

impl Default for DefaultProfile {
    fn default() -> Self {
        DefaultProfile::Unavailable("AppArmor is not enabled on this host".into())
    }
}

/// The profile the process runs under, or None for unconfined.
pub fn apparmor_profile(
    sc: Option<&LinuxContainerSecurityContext>,
    host: &Host,
) -> Result<Option<String>, SpecError> {
    let (kind, name) = match sc {
        Some(sc) => requested(sc)?,
        None => (None, String::new()),
    };
    let name = match kind {
        Some(ProfileType::Unconfined) => return Ok(None),
        None if !host.apparmor => return Ok(None),
        _ if !host.apparmor => {
            return Err(SpecError::invalid(
                "apparmor profile",
                name,
                "AppArmor is not enabled on this host",
            ));
        }
        _ if sc.is_some_and(|s| s.privileged) => return Ok(None),
        None | Some(ProfileType::RuntimeDefault) => return runtime_default(host).map(Some),
        Some(ProfileType::Localhost) => name,
    };
    if name.is_empty() {
        return Err(SpecError::invalid(
            "apparmor localhost_ref",
            name,
            "a Localhost profile needs a name",
        ));
    }
    Ok(Some(name))
}

fn runtime_default(host: &Host) -> Result<String, SpecError> {
    match &host.apparmor_default {
        DefaultProfile::Loaded(name) => Ok(name.clone()),
        DefaultProfile::Unavailable(reason) => Err(SpecError::Unavailable {
            what: "the RuntimeDefault AppArmor profile".into(),
            reason: format!("{reason} (see the daemon log from its start)"),
        }),
    }
}

/// The profile type and Localhost name, from `apparmor` or the deprecated
/// `apparmor_profile` ("runtime/default", "unconfined", "localhost/<name>"), which
/// clients older than kubelet 1.30 still send alone.
#[allow(deprecated)]
fn requested(
    sc: &LinuxContainerSecurityContext,
) -> Result<(Option<ProfileType>, String), SpecError> {
    if let Some(p) = &sc.apparmor {
        let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
            SpecError::invalid(
                "apparmor profile_type",
                p.profile_type.to_string(),
                "unknown profile type",
            )
        })?;
        if kind != ProfileType::Localhost && !p.localhost_ref.is_empty() {
            return Err(SpecError::invalid(
                "apparmor localhost_ref",
                &p.localhost_ref,
                "only a Localhost profile has a name",
            ));
        }
        let name = p.localhost_ref.trim_start_matches("localhost/").to_string();
        return Ok((Some(kind), name));
    }
    let old = sc.apparmor_profile.as_str();
    Ok(match old {
        "" => (None, String::new()),
        "runtime/default" => (Some(ProfileType::RuntimeDefault), String::new()),
        "unconfined" => (Some(ProfileType::Unconfined), String::new()),
        _ => match old.strip_prefix("localhost/") {
            Some(name) => (Some(ProfileType::Localhost), name.to_string()),
            None => {
                return Err(SpecError::invalid(
                    "apparmor_profile",
                    old,
                    "unknown AppArmor profile",
                ));
            }
        },
    })
}

/// SELinux options are only acceptable where they change nothing.
pub fn check_selinux(
    sc: Option<&LinuxContainerSecurityContext>,
    host: &Host,
) -> Result<(), SpecError> {
    let asked = sc
        .and_then(|s| s.selinux_options.as_ref())
        .is_some_and(|o| {
            !(o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty())
        });
    if asked && host.selinux {
        return Err(SpecError::unsupported("SELinux labels"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, Kind};
    use k8s_cri::v1::{SeLinuxOption, SecurityProfile};

    fn sc(kind: ProfileType, name: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: kind as i32,
                localhost_ref: name.into(),
            }),
            ..Default::default()
        }
    }

    #[allow(deprecated)]
    fn old(value: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            apparmor_profile: value.into(),
            ..Default::default()
        }
    }

    fn kind(r: Result<Option<String>, SpecError>) -> Kind {
        r.expect_err("refused").kind()
    }

    #[test]
    fn without_apparmor_only_unconfined_is_accepted() {
        let host = Host::default();
        let profile = |s: &LinuxContainerSecurityContext| apparmor_profile(Some(s), &host);
        assert_eq!(apparmor_profile(None, &host).unwrap(), None);
        assert_eq!(profile(&sc(ProfileType::Unconfined, "")).unwrap(), None);
        assert_eq!(profile(&old("unconfined")).unwrap(), None);
        assert_eq!(profile(&old("")).unwrap(), None);
        let unset = LinuxContainerSecurityContext::default();
        assert_eq!(profile(&unset).unwrap(), None);
        for bad in [
            sc(ProfileType::RuntimeDefault, ""),
            old("runtime/default"),
            sc(ProfileType::Localhost, "p"),
            old("localhost/p"),
        ] {
            assert_eq!(kind(profile(&bad)), Kind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(kind(profile(&old("bogus"))), Kind::InvalidArgument);
    }

    #[test]
    fn with_apparmor_localhost_profiles_apply() {
        let host = Host {
            apparmor: true,
            ..Default::default()
        };
        let profile = |s: &LinuxContainerSecurityContext| apparmor_profile(Some(s), &host);
        assert_eq!(
            profile(&sc(ProfileType::Localhost, "localhost/web"))
                .unwrap()
                .as_deref(),
            Some("web")
        );
        assert_eq!(
            profile(&old("localhost/web")).unwrap().as_deref(),
            Some("web")
        );
        let mut privileged = sc(ProfileType::Localhost, "web");
        privileged.privileged = true;
        assert_eq!(profile(&privileged).unwrap(), None);
        assert_eq!(
            kind(profile(&sc(ProfileType::RuntimeDefault, "web"))),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(profile(&sc(ProfileType::Localhost, ""))),
            Kind::InvalidArgument
        );
    }

    fn apparmor_host(default: DefaultProfile) -> Host {
        Host {
            apparmor: true,
            apparmor_default: default,
            ..Default::default()
        }
    }

    /// What needs no default profile works whatever became of it.
    fn unconfined_and_localhost_need_no_default(host: &Host) {
        let profile = |s: &LinuxContainerSecurityContext| apparmor_profile(Some(s), host);
        assert_eq!(profile(&sc(ProfileType::Unconfined, "")).unwrap(), None);
        let local = profile(&sc(ProfileType::Localhost, "web")).unwrap();
        assert_eq!(local.as_deref(), Some("web"));
    }

    #[test]
    fn runtime_default_and_unset_mean_the_loaded_profile() {
        let host = apparmor_host(DefaultProfile::Loaded("crius-default".into()));
        let profile = |s: &LinuxContainerSecurityContext| apparmor_profile(Some(s), &host);
        let ours = Some("crius-default".to_string());
        assert_eq!(apparmor_profile(None, &host).unwrap(), ours);
        for asked in [
            sc(ProfileType::RuntimeDefault, ""),
            old("runtime/default"),
            old(""),
            LinuxContainerSecurityContext::default(),
        ] {
            assert_eq!(profile(&asked).unwrap(), ours, "{asked:?}");
        }
        unconfined_and_localhost_need_no_default(&host);
        for mut privileged in [
            sc(ProfileType::RuntimeDefault, ""),
            LinuxContainerSecurityContext::default(),
        ] {
            privileged.privileged = true;
            assert_eq!(profile(&privileged).unwrap(), None, "{privileged:?}");
        }
    }

    #[test]
    fn runtime_default_is_refused_with_the_load_failure() {
        let why = "apparmor_parser not found on PATH, in /sbin or /usr/sbin";
        let host = apparmor_host(DefaultProfile::Unavailable(why.into()));
        let profile = |s: &LinuxContainerSecurityContext| apparmor_profile(Some(s), &host);
        for asked in [
            sc(ProfileType::RuntimeDefault, ""),
            old("runtime/default"),
            LinuxContainerSecurityContext::default(),
        ] {
            let err = profile(&asked).expect_err("refused");
            assert_eq!(err.kind(), Kind::FailedPrecondition, "{asked:?}");
            let msg = err.to_string();
            assert!(msg.contains("RuntimeDefault AppArmor profile"), "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
        let err = apparmor_profile(None, &host).expect_err("unset means the default");
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        // What needs no default profile still works.
        let mut privileged = sc(ProfileType::RuntimeDefault, "");
        privileged.privileged = true;
        assert_eq!(profile(&privileged).unwrap(), None);
        unconfined_and_localhost_need_no_default(&host);
    }

    #[test]
    fn selinux_labels_matter_only_where_selinux_runs() {
        let labelled = LinuxContainerSecurityContext {
            selinux_options: Some(SeLinuxOption {
                level: "s0:c1,c2".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        check_selinux(Some(&labelled), &Host::default()).expect("ignored without SELinux");
        let host = Host {
            selinux: true,
            ..Default::default()
        };
        assert_eq!(
            check_selinux(Some(&labelled), &host).unwrap_err().kind(),
            Kind::Unimplemented
        );
        check_selinux(Some(&LinuxContainerSecurityContext::default()), &host).expect("no labels");
    }
}
