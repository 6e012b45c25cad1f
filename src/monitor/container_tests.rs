//! Containers through a real monitor and the real runtime: busybox rootfs, cgroups under
//! a test-only parent. Needs root, as CI runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

use super::proto::{self, state::Status};
use super::tests::{Running, gone, start_monitor_in};
use super::*;
use crate::error::{Classify, Kind};

const APPLETS: &[&str] = &["sh", "echo", "sleep", "cat", "tty"];

/// Everything a test container needs, under the monitor's tempdir.
pub(super) struct Fixture {
    root: PathBuf,
    cgroup_parent: String,
}

impl Fixture {
    pub(super) fn new(r: &Running) -> Self {
        let root = r.dir.path().to_path_buf();
        crate::testutil::busybox_rootfs(&root.join("rootfs"), APPLETS);
        Fixture {
            root,
            // One parent per monitor: the tests run in parallel and each removes its own.
            cgroup_parent: format!("crius-monitor-test-{}-{}", std::process::id(), r.pid),
        }
    }

    pub(super) fn bundle(&self, id: &str, args: &[&str]) -> proto::CreateContainer {
        let bundle = self.root.join("bundles").join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        let mut spec = Spec::default();
        let mut root = spec.root().clone().unwrap();
        root.set_path(self.root.join("rootfs"));
        spec.set_root(Some(root));
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_env(Some(vec!["PATH=/bin".into()]));
        spec.set_process(Some(process));
        let mut linux = spec.linux().clone().unwrap();
        let cgroup = format!("/{}/{id}", self.cgroup_parent);
        linux.set_cgroups_path(Some(PathBuf::from(cgroup)));
        spec.set_linux(Some(linux));
        spec.save(bundle.join("config.json")).unwrap();
        proto::CreateContainer {
            id: id.into(),
            bundle: bundle.to_string_lossy().into(),
            log_path: self.log(id).to_string_lossy().into(),
            exit_file: self.exit_file(id).to_string_lossy().into(),
            max_log_line: 0,
            ..Default::default()
        }
    }

    fn log(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(format!("{id}.log"))
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.root.join("exits").join(id)
    }

    /// The log without timestamps.
    fn log_lines(&self, id: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.log(id)).unwrap_or_default();
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect()
    }

    /// Removes the test cgroup parents the runtime's destroy leaves behind.
    pub(super) fn cleanup(&self) {
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = std::fs::remove_dir(entry.path().join(&self.cgroup_parent));
        }
    }
}

/// utime + stime of a process, in clock ticks (normally 10 ms).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

pub(super) async fn wait_exited(r: &Running, id: &str) -> proto::State {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = r.client.state(id).await.unwrap();
        if st.status == Status::Exited as i32 {
            return st;
        }
        assert!(Instant::now() < deadline, "{id} still {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn container_lifecycle_logs_and_exit_record() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    let script = "echo out; echo err >&2; printf partial; exit 3";
    r.client
        .create(fx.bundle("c1", &["sh", "-c", script]))
        .await
        .unwrap();
    let st = r.client.state("c1").await.unwrap();
    assert_eq!(st.status, Status::Created as i32);
    assert!(st.pid > 0 && st.created_at > 0 && st.started_at == 0);
    r.client.start("c1").await.unwrap();
    let st = wait_exited(&r, "c1").await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(st.finished_at >= st.started_at && st.started_at > 0);
    let mut lines = fx.log_lines("c1");
    lines.sort();
    assert_eq!(lines, ["stderr F err", "stdout F out", "stdout P partial"]);
    let rec: ExitRecord = crate::store::read_json(&fx.exit_file("c1"))
        .unwrap()
        .unwrap();
    assert_eq!((rec.exit_code, rec.finished_at), (3, st.finished_at));
    let again = r.client.start("c1").await.unwrap_err();
    assert_eq!(again.kind(), Kind::FailedPrecondition);
    r.client.delete("c1").await.unwrap();
    assert_eq!(
        r.client.state("c1").await.unwrap_err().kind(),
        Kind::NotFound
    );
    r.client.shutdown().await.unwrap();
    fx.cleanup();
}

#[tokio::test]
async fn exec_sync_output_timeout_and_hangup() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    r.client
        .create(fx.bundle("e1", &["sleep", "1000"]))
        .await
        .unwrap();
    r.client.start("e1").await.unwrap();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let script = args(&["sh", "-c", "echo hi; echo ho >&2; exit 4"]);
    let out = r
        .client
        .exec_sync("e1", script, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"hi\n"[..], &b"ho\n"[..])
    );
    assert_eq!((out.exit_code, out.timed_out), (4, false));
    // A slow exec times out while other requests are still answered.
    let slow = {
        let c = r.client.clone();
        let sleep = args(&["sleep", "30"]);
        tokio::spawn(async move { c.exec_sync("e1", sleep, Duration::from_millis(300)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.client.ping().await.unwrap(), r.pid);
    assert!(slow.await.unwrap().unwrap().timed_out);
    // A caller that gives up mid-exec: the monitor must not spin on the hung-up socket.
    let abandoned = r
        .client
        .exec_sync("e1", args(&["sleep", "1"]), Duration::ZERO);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), abandoned).await;
    assert!(gave_up.is_err());
    let before = cpu_ticks(r.pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cpu_ticks(r.pid) - before < 10,
        "monitor busy while an exec runs"
    );
    r.client.shutdown().await.unwrap();
    fx.cleanup();
}

#[tokio::test]
async fn kill_delete_and_shutdown_with_running_containers() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    for id in ["s1", "s2"] {
        r.client
            .create(fx.bundle(id, &["sleep", "1000"]))
            .await
            .unwrap();
        r.client.start(id).await.unwrap();
    }
    let no = r.client.delete("s1").await.unwrap_err();
    assert_eq!(no.kind(), Kind::FailedPrecondition);
    // Killed by signal: 128 + 9.
    r.client.kill("s2", 9).await.unwrap();
    assert_eq!(wait_exited(&r, "s2").await.exit_code, 137);
    r.client.delete("s2").await.unwrap();
    // Shutdown kills s1, records its exit and removes the socket.
    let s1_pid = r.client.state("s1").await.unwrap().pid;
    r.client.shutdown().await.unwrap();
    assert!(gone(s1_pid));
    assert!(!r.dir.path().join("pod").join(SOCKET_NAME).exists());
    let rec: ExitRecord = crate::store::read_json(&fx.exit_file("s1"))
        .unwrap()
        .unwrap();
    assert_eq!(rec.exit_code, 137);
    fx.cleanup();
}

/// The monitor blocks SIGCHLD (for its signalfd) and the Rust runtime ignores SIGPIPE;
/// neither may leak into containers: the runtime resets both before execve.
#[tokio::test]
async fn container_processes_start_with_default_signals() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    r.client
        .create(fx.bundle("g1", &["sleep", "1000"]))
        .await
        .unwrap();
    r.client.start("g1").await.unwrap();
    let args = vec![
        "cat".into(),
        "/proc/1/status".into(),
        "/proc/self/status".into(),
    ];
    let out = r
        .client
        .exec_sync("g1", args, Duration::ZERO)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let masks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
        .collect();
    r.client.shutdown().await.unwrap();
    fx.cleanup();
    assert_eq!(masks.len(), 4, "{text}");
    for m in masks {
        assert!(m.ends_with("0000000000000000"), "init and exec: {m}");
    }
}

/// Every subscriber hears of each reaped container, in order, and the feed ends when
/// the monitor does.
#[tokio::test]
async fn subscribers_hear_of_every_exit() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    let mut feeds = [
        r.client.subscribe().await.unwrap(),
        r.client.subscribe().await.unwrap(),
    ];
    for id in ["x1", "x2"] {
        r.client
            .create(fx.bundle(id, &["sleep", "1000"]))
            .await
            .unwrap();
        r.client.start(id).await.unwrap();
    }
    r.client.kill("x2", 9).await.unwrap();
    for feed in &mut feeds {
        assert_eq!(feed.next().await.unwrap().as_deref(), Some("x2"));
    }
    // The exit record is written before the feed hears of the exit.
    assert_eq!(r.client.state("x2").await.unwrap().exit_code, 137);
    r.client.shutdown().await.unwrap();
    for feed in &mut feeds {
        assert_eq!(feed.next().await.unwrap().as_deref(), Some("x1"));
        assert_eq!(feed.next().await.unwrap(), None, "the monitor exited");
    }
    fx.cleanup();
}
