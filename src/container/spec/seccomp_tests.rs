//! Profile selection from the CRI security context, Localhost loading errors, and the
//! RuntimeDefault profile resolved for a container's capabilities.

use k8s_cri::v1::SecurityProfile;
use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompOperator};

use super::*;

fn with_profile(typ: ProfileType, localhost_ref: &str) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: typ as i32,
            localhost_ref: localhost_ref.to_string(),
        }),
        ..Default::default()
    }
}

#[allow(deprecated)]
fn with_path(path: &str) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        seccomp_profile_path: path.to_string(),
        ..Default::default()
    }
}

#[test]
fn selection_follows_the_cri_fields() {
    use Selection::*;
    let local = |p: &str| Ok(Localhost(PathBuf::from(p)));
    let mut privileged = with_profile(ProfileType::RuntimeDefault, "");
    privileged.privileged = true;
    let mut both = with_path("unconfined");
    both.seccomp = with_profile(ProfileType::RuntimeDefault, "").seccomp;
    let cases: Vec<(LinuxContainerSecurityContext, Result<Selection, String>)> = vec![
        (Default::default(), Ok(Unconfined)),
        (privileged, Ok(Unconfined)),
        (
            with_profile(ProfileType::RuntimeDefault, ""),
            Ok(RuntimeDefault),
        ),
        (with_profile(ProfileType::Unconfined, ""), Ok(Unconfined)),
        (
            with_profile(ProfileType::Localhost, "/p.json"),
            local("/p.json"),
        ),
        (both, Ok(RuntimeDefault)),
        (with_path("runtime/default"), Ok(RuntimeDefault)),
        (with_path("docker/default"), Ok(RuntimeDefault)),
        (with_path("unconfined"), Ok(Unconfined)),
        (
            with_path("localhost//var/lib/p.json"),
            local("/var/lib/p.json"),
        ),
        (
            with_profile(ProfileType::Localhost, "p.json"),
            Err("seccomp localhost profile \"p.json\" is not an absolute path".into()),
        ),
        (
            with_profile(ProfileType::Localhost, ""),
            Err("seccomp localhost profile \"\" is not an absolute path".into()),
        ),
        (
            with_profile(ProfileType::Unconfined, "/p.json"),
            Err(
                "seccomp localhost_ref \"/p.json\" is only allowed with profile type Localhost"
                    .into(),
            ),
        ),
        (
            with_path("localhost/p.json"),
            Err("seccomp localhost profile \"p.json\" is not an absolute path".into()),
        ),
        (
            with_path("strict"),
            Err(
                "unknown seccomp profile \"strict\": expected runtime/default, \
                 docker/default, unconfined or localhost/<absolute path>"
                    .into(),
            ),
        ),
    ];
    for (sc, want) in cases {
        let got = select(Some(&sc)).map_err(|e| e.to_string());
        assert_eq!(got, want, "{sc:?}");
    }
    assert_eq!(select(None).unwrap(), Unconfined);
    let mut unknown = with_profile(ProfileType::Localhost, "");
    unknown.seccomp.as_mut().unwrap().profile_type = 7;
    assert_eq!(
        select(Some(&unknown)).unwrap_err().to_string(),
        "unknown seccomp profile type 7"
    );
}

#[test]
fn localhost_profiles_that_cannot_be_used_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let sc = with_profile(ProfileType::Localhost, missing.to_str().unwrap());
    assert!(matches!(load(Some(&sc)), Err(SeccompError::Read { path, .. }) if path == missing));
    for (name, text) in [
        ("syntax.json", "{\"defaultAction\": "),
        ("action.json", "{\"defaultAction\": \"SCMP_ACT_NOPE\"}"),
        ("no-default.json", "{\"syscalls\": []}"),
        (
            "arch.json",
            "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"architectures\": [\"x\"]}",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let sc = with_profile(ProfileType::Localhost, path.to_str().unwrap());
        let err = load(Some(&sc)).unwrap_err();
        assert!(
            matches!(&err, SeccompError::Parse { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("malformed seccomp profile"),
            "{err}"
        );
    }
    let path = dir.path().join("bad-cap.json");
    let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"],
        "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NOPE"]}}]}"#;
    std::fs::write(&path, text).unwrap();
    let sc = with_profile(ProfileType::Localhost, path.to_str().unwrap());
    let loaded = load(Some(&sc)).unwrap();
    let err = build(&loaded, &HashSet::new()).unwrap_err();
    assert!(
        err.to_string().contains("unknown capability \"CAP_NOPE\""),
        "{err}"
    );
}

fn runtime_default(caps: &[Capability]) -> LinuxSeccomp {
    let sc = with_profile(ProfileType::RuntimeDefault, "");
    let loaded = load(Some(&sc)).unwrap();
    build(&loaded, &caps.iter().copied().collect())
        .unwrap()
        .unwrap()
}

fn allowed(profile: &LinuxSeccomp, name: &str) -> bool {
    profile.syscalls().iter().flatten().any(|s| {
        s.action() == LinuxSeccompAction::ScmpActAllow
            && s.args().is_none()
            && s.names().iter().any(|n| n == name)
    })
}

#[test]
fn runtime_default_depends_on_capabilities() {
    let profile = runtime_default(super::super::capabilities::DEFAULT_CAPABILITIES);
    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(profile.default_errno_ret(), Some(1));
    if cfg!(target_arch = "x86_64") {
        let archs = [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
        assert_eq!(profile.architectures().as_deref(), Some(&archs[..]));
        assert!(allowed(&profile, "arch_prctl"));
    }
    assert!(allowed(&profile, "read") && allowed(&profile, "chroot"));
    // Since 4.8 ptrace cannot bypass seccomp, so moby allows it to everyone there.
    assert!(allowed(&profile, "ptrace"));
    for name in ["mount", "sethostname", "unshare", "setns", "reboot", "bpf"] {
        assert!(!allowed(&profile, name), "{name}");
    }
    // clone without namespace flags; clone3 answers ENOSYS so libcs fall back to clone.
    let rules = profile.syscalls().as_deref().unwrap();
    let clone = rules.iter().find(|s| s.names() == &["clone"]).unwrap();
    let arg = clone.args().as_ref().unwrap()[0];
    assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
    assert_eq!(arg.value(), 0x7E02_0000);
    let clone3 = rules.iter().find(|s| s.names() == &["clone3"]).unwrap();
    assert_eq!(clone3.errno_ret(), Some(38));
    let personality = rules.iter().filter(|s| s.names() == &["personality"]);
    assert_eq!(personality.count(), 5);

    let admin = runtime_default(&[Capability::SysAdmin, Capability::SysPtrace]);
    for name in [
        "mount",
        "sethostname",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "ptrace",
    ] {
        assert!(allowed(&admin, name), "{name}");
    }
    let rules = admin.syscalls().as_deref().unwrap();
    assert!(!rules.iter().any(|s| s.errno_ret() == Some(38)));
}

#[test]
fn generate_puts_the_profile_in_linux_seccomp() {
    let mut f = super::super::tests::Fixture::new();
    let sc = with_profile(ProfileType::RuntimeDefault, "");
    f.seccomp = load(Some(&sc)).unwrap();
    let spec = f.generate().unwrap();
    let profile = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert!(!allowed(profile, "mount"));
    // The rules follow the capabilities the spec grants.
    f.security().capabilities = Some(k8s_cri::v1::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let spec = f.generate().unwrap();
    let profile = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert!(allowed(profile, "mount"));
    f.seccomp = Loaded::unconfined();
    assert!(
        f.generate()
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .is_none()
    );
}

#[test]
fn runtime_default_compiles_for_any_capabilities() {
    // CreateContainer compiles only Localhost profiles ahead of init; the default one is
    // proven here, for the default set and for every capability.
    let sc = with_profile(ProfileType::RuntimeDefault, "");
    let loaded = load(Some(&sc)).unwrap();
    assert!(!loaded.is_localhost());
    let sets: [&[Capability]; 2] = [
        super::super::capabilities::DEFAULT_CAPABILITIES,
        &[Capability::SysAdmin],
    ];
    for caps in sets {
        crate::runtime::check_seccomp(&runtime_default(caps)).unwrap();
    }
}
