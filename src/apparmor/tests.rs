use std::os::unix::fs::PermissionsExt;

use super::*;

const LISTING: &str = "\
/usr/bin/man (enforce)
crius-default-old (complain)
docker-default (enforce)
a name with spaces (enforce)
lsb_release (kill)
";

#[test]
fn the_kernel_listing_names_whole_profiles() {
    assert!(is_loaded(LISTING, "docker-default"));
    assert!(is_loaded(LISTING, "/usr/bin/man"));
    assert!(is_loaded(LISTING, "a name with spaces"));
    assert!(is_loaded(LISTING, "lsb_release"));
    // Neither a prefix, nor a profile of which the name is a prefix.
    assert!(!is_loaded(LISTING, "crius-default"));
    assert!(!is_loaded(LISTING, "docker"));
    assert!(!is_loaded(LISTING, "a name"));
    assert!(!is_loaded("", "crius-default"));
    // A line without a mode is not a listing entry.
    assert!(!is_loaded("crius-default\n", "crius-default"));
    assert!(is_loaded("crius-default (enforce)", "crius-default"));
}

#[test]
fn the_parser_replaces_without_writing_a_cache() {
    let cmd = parser_command(
        Path::new("/usr/sbin/apparmor_parser"),
        Path::new("/run/crius/apparmor/crius-default"),
    );
    assert_eq!(cmd.get_program(), "/usr/sbin/apparmor_parser");
    let args: Vec<&OsStr> = cmd.get_args().collect();
    assert_eq!(args, ["-Kr", "/run/crius/apparmor/crius-default"]);
}

#[test]
fn the_parser_is_found_on_path_then_in_sbin() {
    let only = |want: &'static str| move |p: &Path| p == Path::new(want);
    let path = OsStr::new("/usr/local/bin:relative:/opt/aa/bin");
    assert_eq!(
        find_parser(Some(path), only("/opt/aa/bin/apparmor_parser")),
        Some(PathBuf::from("/opt/aa/bin/apparmor_parser"))
    );
    assert_eq!(
        find_parser(None, only("/usr/sbin/apparmor_parser")),
        Some(PathBuf::from("/usr/sbin/apparmor_parser"))
    );
    assert_eq!(
        find_parser(Some(path), only("relative/apparmor_parser")),
        None
    );
    assert_eq!(find_parser(Some(path), |_| false), None);
    // PATH wins over sbin.
    let both = |p: &Path| p.starts_with("/opt/aa/bin") || p.starts_with("/sbin");
    assert_eq!(
        find_parser(Some(path), both),
        Some(PathBuf::from("/opt/aa/bin/apparmor_parser"))
    );
}

#[test]
fn the_daemon_label_loses_its_mode() {
    assert_eq!(current_profile("unconfined\n"), "unconfined");
    assert_eq!(current_profile("crius (enforce)\n"), "crius");
    assert_eq!(current_profile("odd (name) (complain)\0"), "odd (name)");
    assert_eq!(current_profile(""), "unconfined");
}

fn env() -> Environment {
    Environment {
        abi_3: false,
        tunables_global: true,
        abstractions_base: true,
        daemon_profile: "unconfined".into(),
    }
}

fn listing(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("profiles");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_listed_profile_is_written_but_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let list = listing(tmp.path(), "crius-default (enforce)\n");
    let dir = tmp.path().join("apparmor");
    let got = load(
        "crius-default",
        &dir,
        &list,
        || panic!("no parser is needed"),
        env,
    );
    assert_eq!(got.unwrap(), Loaded::Already);
    assert_eq!(
        std::fs::read_to_string(dir.join("crius-default")).unwrap(),
        render("crius-default", &env())
    );
}

/// `/bin/true` and `/bin/false` stand in for the parser: the flow around it runs, and
/// no profile reaches a kernel.
#[test]
fn a_missing_profile_is_written_root_only_then_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let list = listing(tmp.path(), LISTING);
    let dir = tmp.path().join("apparmor");
    let got = load(
        "crius-default",
        &dir,
        &list,
        || Some("/bin/true".into()),
        env,
    )
    .unwrap();
    let file = dir.join("crius-default");
    assert_eq!(got, Loaded::From(file.clone()));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        render("crius-default", &env())
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
}

#[test]
fn load_failures_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let list = listing(tmp.path(), "");
    let dir = tmp.path().join("apparmor");
    let err = load("p", &dir, &list, || None, env).unwrap_err();
    assert!(matches!(err, AppArmorError::NoParser), "{err}");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(
        err.to_string().contains("apparmor_parser not found"),
        "{err}"
    );

    let err = load("p", &dir, &list, || Some("/bin/false".into()), env).unwrap_err();
    assert!(matches!(err, AppArmorError::Parser { .. }), "{err}");
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(err.to_string().contains("/bin/false -Kr "), "{err}");

    let gone = tmp.path().join("no-securityfs");
    let err = load("p", &dir, &gone, || None, env).unwrap_err();
    assert!(matches!(err, AppArmorError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-securityfs"), "{err}");
}
