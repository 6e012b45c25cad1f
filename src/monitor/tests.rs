//! Tests that run the real `crius monitor` binary (target/debug/crius, built by `cargo
//! test` for the e2e target) through `spawn` and `MonitorClient`. Container paths need
//! the runtime and are not exercised here.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame;
use super::proto::{self, request::Kind as Req, response::Kind as Resp};
use super::*;
use crate::error::{Classify, Kind};

pub(super) fn crius_bin() -> PathBuf {
    // The test binary is target/debug/deps/crius-<hash>; the crius binary sits in
    // target/debug.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("crius");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build` first",
        bin.display()
    );
    bin
}

/// A spawned monitor in a tempdir; shut down (or killed) when dropped.
pub(super) struct Running {
    pub dir: tempfile::TempDir,
    pub client: MonitorClient,
    pub pid: i32,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that failed before its own Shutdown: shut down synchronously so no
        // container, cgroup or process outlives it.
        let socket = self.dir.path().join("pod").join(SOCKET_NAME);
        if !socket.exists() {
            return;
        }
        let shutdown = proto::Request {
            kind: Some(Req::Shutdown(proto::Shutdown {})),
        };
        if let Ok(mut s) = UnixStream::connect(&socket) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
            let _ = s.write_all(&frame::encode(&shutdown));
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

/// A monitor whose cgroup root is an empty tempdir: no container can be made.
pub(super) async fn start_monitor() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let cgroup_root = dir.path().join("cgroup");
    start_monitor_in(dir, cgroup_root).await
}

pub(super) async fn start_monitor_in(dir: tempfile::TempDir, cgroup_root: PathBuf) -> Running {
    start_monitor_with(dir, cgroup_root, None).await
}

pub(super) async fn start_monitor_with(
    dir: tempfile::TempDir,
    cgroup_root: PathBuf,
    pod_init: Option<PodInitOptions>,
) -> Running {
    let opts = SpawnOptions {
        pod_id: "test-pod".into(),
        dir: dir.path().join("pod"),
        cgroup_root,
        exe: crius_bin(),
        pod_init,
    };
    spawn(&opts).await.unwrap();
    let client = MonitorClient::new(opts.dir.join(SOCKET_NAME));
    let pid = client.ping().await.unwrap();
    Running { dir, client, pid }
}

fn pod_dir(r: &Running) -> PathBuf {
    r.dir.path().join("pod")
}

/// Sends raw bytes on a fresh connection and reads until the monitor closes it.
fn send_raw(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    got
}

pub(super) fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie whose reaper is slow is gone for our purposes.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn spawned_monitor_is_detached_and_answers() {
    let r = start_monitor().await;
    let dir = pod_dir(&r);
    let pid_file = std::fs::read_to_string(dir.join(PID_NAME)).unwrap();
    assert_eq!(pid_file, r.pid.to_string());
    let mode = std::fs::metadata(dir.join(SOCKET_NAME))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(dir.join(LOG_NAME).exists());
    // Its own session, and not our child (the launcher was reaped, the monitor adopted).
    let pid = nix::unistd::Pid::from_raw(r.pid);
    assert_eq!(nix::unistd::getsid(Some(pid)).unwrap(), pid);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", r.pid)).unwrap();
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id());
    r.client.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_drops_the_connection_not_the_monitor() {
    let r = start_monitor().await;
    let socket = pod_dir(&r).join(SOCKET_NAME);
    // A length far over the limit.
    assert!(send_raw(&socket, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_empty());
    // A frame whose body is not a Request.
    assert!(send_raw(&socket, &[0, 0, 0, 3, 0xff, 0xff, 0xff]).is_empty());
    assert_eq!(r.client.ping().await.unwrap(), r.pid);
    r.client.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_on_one_connection_are_answered_in_order() {
    let r = start_monitor().await;
    let socket = pod_dir(&r).join(SOCKET_NAME);
    let ping = proto::Request {
        kind: Some(Req::Ping(proto::Ping {})),
    };
    let empty = proto::Request { kind: None };
    let mut bytes = frame::encode(&ping);
    bytes.extend(frame::encode(&empty));
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(&bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let mut reader = frame::FrameReader::new(frame::MAX_RESPONSE);
    reader.fill(&mut &got[..]).unwrap();
    let decode = |b: Vec<u8>| <proto::Response as prost::Message>::decode(&b[..]).unwrap();
    let first = decode(reader.next_frame().unwrap().unwrap());
    assert!(matches!(first.kind, Some(Resp::Pong(p)) if p.pid == r.pid));
    let second = decode(reader.next_frame().unwrap().unwrap());
    let Some(Resp::Error(e)) = second.kind else {
        panic!("{second:?}")
    };
    assert_eq!(e.code, proto::error::Code::InvalidArgument as i32);
    r.client.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_containers_are_not_found() {
    let r = start_monitor().await;
    let c = &r.client;
    let kinds = [
        c.state("nope").await.map(drop).unwrap_err().kind(),
        c.start("nope").await.unwrap_err().kind(),
        c.kill("nope", 15).await.unwrap_err().kind(),
        c.delete("nope").await.unwrap_err().kind(),
        c.exec_sync("nope", vec!["true".into()], Duration::ZERO)
            .await
            .map(drop)
            .unwrap_err()
            .kind(),
    ];
    assert_eq!(kinds, [Kind::NotFound; 5]);
    let bad = c
        .create(proto::CreateContainer::default())
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), Kind::InvalidArgument, "{bad}");
    r.client.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_exits_and_removes_the_socket() {
    let r = start_monitor().await;
    let dir = pod_dir(&r);
    r.client.shutdown().await.unwrap();
    assert!(!dir.join(SOCKET_NAME).exists());
    assert!(!dir.join(PID_NAME).exists());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(r.pid) {
        assert!(Instant::now() < deadline, "monitor {} still running", r.pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = r.client.ping().await.unwrap_err();
    assert_eq!(e.kind(), Kind::Unavailable, "{e}");
}

#[tokio::test]
async fn a_second_monitor_refuses_a_live_socket() {
    let r = start_monitor().await;
    let out = std::process::Command::new(crius_bin())
        .args(["monitor", "--pod-id", "test-pod", "--dir"])
        .arg(pod_dir(&r))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
    assert_eq!(r.client.ping().await.unwrap(), r.pid);
    r.client.shutdown().await.unwrap();
}

#[test]
fn exit_record_json_is_what_the_daemon_reads() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("exit.json");
    let rec = ExitRecord {
        exit_code: 137,
        finished_at: 1_795_336_200_123_456_789,
        reason: ExitRecord::reason_for(137).into(),
        message: String::new(),
    };
    crate::store::write_json(&path, &rec).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["exit_code"], 137);
    assert_eq!(v["finished_at"], 1_795_336_200_123_456_789_i64);
    assert_eq!(v["reason"], "Error");
    assert_eq!(v["message"], "");
    assert_eq!(
        crate::store::read_json::<ExitRecord>(&path).unwrap(),
        Some(rec)
    );
    assert_eq!(ExitRecord::reason_for(0), "Completed");
}
