//! Seccomp: what a container sees from inside (`Seccomp:` in /proc/self/status, a
//! syscall a profile blocks failing with EPERM, in init and in exec'd processes), and
//! the profiles CreateContainer refuses with InvalidArgument, leaving nothing behind.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use crate::leaks;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::*;
use std::time::Duration;
use tonic::Code;

const SECONDS_10: Duration = Duration::from_secs(10);

/// A profile that allows everything but mkdir and mkdirat.
const NO_MKDIR: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
  ]
}"#;

/// A pod on the host network (no CNI needed), with busybox pulled.
async fn pod(name: &str) -> (Daemon, Runtime, PodSandboxConfig, String) {
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pod = pod_config(&d, name);
    let ns = pod
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("pod_config sets namespace options");
    ns.network = NamespaceMode::Node as i32;
    let pod_id = run_pod(&mut rt, &pod).await;
    (d, rt, pod, pod_id)
}

fn profile(typ: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: typ as i32,
        localhost_ref: localhost_ref.to_string(),
    })
}

fn security(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The container's `Seccomp:` mode (0 off, 2 filter) as an exec'd process sees it, and
/// as its init (pid 1) has it.
async fn seccomp_modes(rt: &mut Runtime, id: &str) -> (String, String) {
    let out = exec(
        rt,
        id,
        &["grep", "Seccomp:", "/proc/self/status", "/proc/1/status"],
        10,
    )
    .await
    .expect("ExecSync");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mode = |file: &str| {
        text.lines()
            .find(|l| l.starts_with(file))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    (mode("/proc/self/status"), mode("/proc/1/status"))
}

#[tokio::test]
async fn seccomp_runtime_default_and_unconfined() {
    if !preflight("seccomp_modes", true) {
        return;
    }
    let (d, mut rt, pod, pod_id) = pod("seccomp-modes").await;
    let sleep = ["sleep", "1000"];
    let mut default = container_config("default", BUSYBOX, &sleep);
    security(&mut default).seccomp = profile(ProfileType::RuntimeDefault, "");
    let mut unconfined = container_config("unconfined", BUSYBOX, &sleep);
    security(&mut unconfined).seccomp = profile(ProfileType::Unconfined, "");
    let mut legacy = container_config("legacy", BUSYBOX, &sleep);
    #[allow(deprecated)]
    {
        security(&mut legacy).seccomp_profile_path = "runtime/default".into();
    }
    let unset = container_config("unset", BUSYBOX, &sleep);
    // A privileged container gets no filter whatever its profile: covered by the spec's
    // unit tests, since privileged containers cannot start yet (capset fails for
    // capabilities this kernel lacks; the capabilities issue fixes that).
    let cases = [
        (&default, "2"),
        (&unconfined, "0"),
        (&legacy, "2"),
        (&unset, "0"),
    ];
    let mut ids = Vec::new();
    for (c, want) in cases {
        let id = create_and_start(&mut rt, &pod_id, &pod, c).await;
        let name = &c.metadata.as_ref().unwrap().name;
        let modes = seccomp_modes(&mut rt, &id).await;
        assert_eq!(modes, (want.to_string(), want.to_string()), "{name}");
        ids.push(id);
    }
    // Creating a user namespace needs CAP_SYS_ADMIN under the default profile; the
    // capabilities alone allow it (the container runs as root).
    let confined = exec(&mut rt, &ids[0], &["unshare", "-U", "true"], 10)
        .await
        .expect("ExecSync");
    assert_ne!(
        confined.exit_code, 0,
        "unshare under RuntimeDefault: {confined:?}"
    );
    let free = exec(&mut rt, &ids[1], &["unshare", "-U", "true"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(free.exit_code, 0, "unshare unconfined: {free:?}");
    d.teardown().await;
}

#[tokio::test]
async fn seccomp_localhost_profile_blocks_mkdir() {
    if !preflight("seccomp_localhost", true) {
        return;
    }
    let (d, mut rt, pod, pod_id) = pod("seccomp-local").await;
    let path = d.paths.dir.join("no-mkdir.json");
    std::fs::write(&path, NO_MKDIR).unwrap();
    let script = "mkdir /tmp/init-dir || echo init-mkdir-failed; exec sleep 1000";
    // Without no_new_privs the filter goes in before the capabilities drop, with it
    // right before execve: both must confine init and exec'd processes.
    for nnp in [false, true] {
        let name = format!("local-nnp-{nnp}");
        let mut c = container_config(&name, BUSYBOX, &["sh", "-c", script]);
        let sc = security(&mut c);
        sc.seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
        sc.no_new_privs = nnp;
        let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
        let log = log_path(&pod, &c);
        wait_log_line(&log, "stdout", "init-mkdir-failed", SECONDS_10).await;
        let out = exec(&mut rt, &id, &["mkdir", "/tmp/exec-dir"], 10)
            .await
            .expect("ExecSync");
        assert_ne!(out.exit_code, 0, "{name}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Operation not permitted"),
            "{name}: {stderr}"
        );
        assert_eq!(seccomp_modes(&mut rt, &id).await.0, "2", "{name}");
        // Everything else still works.
        let ok = exec(&mut rt, &id, &["touch", "/tmp/file"], 10)
            .await
            .expect("ExecSync");
        assert_eq!(ok.exit_code, 0, "{name}: {ok:?}");
    }
    d.teardown().await;
}

#[tokio::test]
async fn seccomp_bad_localhost_profiles_are_invalid_and_leave_nothing() {
    if !preflight("seccomp_invalid", true) {
        return;
    }
    let (d, mut rt, pod, pod_id) = pod("seccomp-bad").await;
    let malformed = d.paths.dir.join("malformed.json");
    std::fs::write(&malformed, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
    let missing = d.paths.dir.join("missing.json");
    // Valid JSON that libseccomp cannot turn into a filter here: refused after the
    // overlay is mounted, so the rollback runs.
    let notify = d.paths.dir.join("notify.json");
    let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#;
    std::fs::write(&notify, text).unwrap();
    let cases = [
        (
            ProfileType::Localhost,
            missing.to_str().unwrap(),
            "missing.json",
        ),
        (
            ProfileType::Localhost,
            malformed.to_str().unwrap(),
            "malformed.json",
        ),
        (
            ProfileType::Localhost,
            notify.to_str().unwrap(),
            "SCMP_ACT_NOTIFY",
        ),
        (ProfileType::Localhost, "relative.json", "absolute"),
        (ProfileType::Localhost, "", "absolute"),
        (ProfileType::RuntimeDefault, "/stray.json", "Localhost"),
    ];
    for (typ, localhost_ref, says) in cases {
        let mut c = container_config("bad", BUSYBOX, &["sleep", "1000"]);
        security(&mut c).seccomp = profile(typ, localhost_ref);
        let err = create(&mut rt, &pod_id, &pod, &c)
            .await
            .expect_err(localhost_ref);
        assert_eq!(err.code(), Code::InvalidArgument, "{localhost_ref}: {err}");
        assert!(err.message().contains(says), "{localhost_ref}: {err}");
        let left: Vec<String> = leaks::find(&d.scope())
            .into_iter()
            .filter(|l| !l.contains(&pod_id))
            .collect();
        assert!(left.is_empty(), "{localhost_ref}: left {left:?}");
        assert!(list_containers(&mut rt).await.is_empty());
    }
    // The name is free again: the same container with a good profile is created.
    let mut c = container_config("bad", BUSYBOX, &["sleep", "1000"]);
    security(&mut c).seccomp = profile(ProfileType::RuntimeDefault, "");
    create_and_start(&mut rt, &pod_id, &pod, &c).await;
    d.teardown().await;
}
