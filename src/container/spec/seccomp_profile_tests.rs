//! The docker format resolved for one container: archMap, includes and excludes.

use oci_spec::runtime::Arch;

use super::*;

fn resolve(text: &str, caps: &[Capability], kernel: KernelVersion) -> Result<LinuxSeccomp, String> {
    let caps: HashSet<Capability> = caps.iter().copied().collect();
    let profile = Profile::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    profile.to_oci(Target {
        caps: &caps,
        kernel,
    })
}

fn names(p: &LinuxSeccomp) -> Vec<String> {
    p.syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().clone())
        .collect()
}

#[test]
fn kernel_versions_parse_from_uname_and_min_kernel() {
    assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
    assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel_version("5"), Some((5, 0)));
    assert_eq!(parse_kernel_version("x"), None);
}

#[test]
fn includes_and_excludes_select_rules() {
    let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["kexec"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
        {"names": ["amd"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["notamd"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        {"names": ["admin"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["user"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["SYS_ADMIN"]}},
        {"name": "single", "action": "SCMP_ACT_ALLOW"}
    ]}"#;
    let old = resolve(text, &[], (4, 4)).unwrap();
    let native_amd = cfg!(target_arch = "x86_64");
    let arch = if native_amd { "amd" } else { "notamd" };
    assert_eq!(names(&old), ["kexec", arch, "user", "single"]);
    let new = resolve(text, &[Capability::SysAdmin], (6, 1)).unwrap();
    assert_eq!(names(&new), ["ptrace", arch, "admin", "single"]);
}

#[test]
fn architectures_come_from_the_profile_or_its_arch_map() {
    let plain = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}"#;
    let p = resolve(plain, &[], (6, 1)).unwrap();
    assert_eq!(p.architectures().as_deref(), Some(&[Arch::ScmpArchX86][..]));
    assert_eq!(p.syscalls().as_deref(), Some(&[][..]));
    let both = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": null}]}"#;
    assert_eq!(
        resolve(both, &[], (6, 1)).unwrap_err(),
        "both architectures and archMap are set"
    );
    let other = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_PPC", "subArchitectures": null}]}"#;
    assert_eq!(resolve(other, &[], (6, 1)).unwrap().architectures(), &None);
}

#[test]
fn broken_rules_are_errors() {
    let cases = [
        (
            r#"{"names": [], "action": "SCMP_ACT_ALLOW"}"#,
            "a syscall rule names no syscall",
        ),
        (
            r#"{"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}"#,
            "invalid minKernel \"new\"",
        ),
        (
            r#"{"names": ["x"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["NOPE"]}}"#,
            "unknown capability \"NOPE\"",
        ),
    ];
    for (rule, want) in cases {
        let text = format!(r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{rule}]}}"#);
        assert_eq!(resolve(&text, &[], (6, 1)).unwrap_err(), want, "{rule}");
    }
}
