//! AppArmor and SELinux from the CRI security context, decided against what the host has.
//!
//! Like containerd: on a host without AppArmor any profile but Unconfined is an error
//! (kubelet sends none there), rather than a container silently running unconfined.
//! Privileged containers and Unconfined get no profile. SELinux labels are ignored where
//! SELinux is disabled (kubelet sends them regardless of the host) and refused where it
//! is enabled, because crius does not label processes or mounts yet.

use k8s_cri::v1::LinuxContainerSecurityContext;
use k8s_cri::v1::security_profile::ProfileType;

use super::{Host, SpecError};

/// The profile the process runs under, or None for unconfined.
pub fn apparmor_profile(
    sc: Option<&LinuxContainerSecurityContext>,
    host: &Host,
) -> Result<Option<String>, SpecError> {
    let Some(sc) = sc else { return Ok(None) };
    let (kind, name) = requested(sc)?;
    let name = match kind {
        None | Some(ProfileType::Unconfined) => return Ok(None),
        _ if !host.apparmor => {
            return Err(SpecError::invalid(
                "apparmor profile",
                name,
                "AppArmor is not enabled on this host",
            ));
        }
        _ if sc.privileged => return Ok(None),
        Some(ProfileType::RuntimeDefault) => {
            return Err(SpecError::unsupported(
                "the RuntimeDefault AppArmor profile (crius loads no profile of its own yet)",
            ));
        }
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
        for bad in [
            sc(ProfileType::RuntimeDefault, ""),
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
            kind(profile(&sc(ProfileType::RuntimeDefault, ""))),
            Kind::Unimplemented
        );
        assert_eq!(
            kind(profile(&sc(ProfileType::RuntimeDefault, "web"))),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(profile(&sc(ProfileType::Localhost, ""))),
            Kind::InvalidArgument
        );
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
