//! Streaming exec through a real monitor: the daemon gets the process's stdio fds and
//! its exit code, and the process dies when the daemon hangs up.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::container_tests::Fixture;
use super::tests::{gone, start_monitor_in};
use crate::error::{Classify, Kind};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Everything left in a pipe whose writers are gone, read without blocking forever.
fn drain(fd: std::os::fd::OwnedFd) -> String {
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the pipe never closed");
                std::thread::sleep(Duration::from_millis(10));
            }
            // A pty master reads EIO once the slave's last holder is gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                return String::from_utf8_lossy(&out).into_owned();
            }
            Err(e) => panic!("reading a pipe: {e}"),
        }
    }
}

#[tokio::test]
async fn exec_stream_hands_over_stdio_reports_the_exit_and_dies_with_its_client() {
    let r = start_monitor_in(tempfile::tempdir().unwrap(), "/sys/fs/cgroup".into()).await;
    let fx = Fixture::new(&r);
    r.client
        .create(fx.bundle("x1", &["sleep", "1000"]))
        .await
        .unwrap();
    r.client.start("x1").await.unwrap();
    let script = args(&["sh", "-c", "read x; echo got $x; echo err >&2; exit 3"]);
    let mut exec = r
        .client
        .exec_stream("x1", script, true, false)
        .await
        .unwrap();
    let mut stdin = std::fs::File::from(exec.stdin.take().expect("a stdin pipe"));
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    assert_eq!(exec.wait().await.unwrap(), 3);
    let out = exec.stdout.as_ref().unwrap().try_clone().unwrap();
    let err = exec.stderr.as_ref().unwrap().try_clone().unwrap();
    drop(exec);
    assert_eq!(drain(out), "got hello\n");
    assert_eq!(drain(err), "err\n");

    // No stdin asked for: only stdout and stderr come back.
    let exec = r
        .client
        .exec_stream("x1", args(&["sleep", "100"]), false, false);
    let exec = exec.await.unwrap();
    assert!(exec.stdin.is_none());
    let pid = exec.pid;
    assert!(!gone(pid), "the exec runs");
    drop(exec);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "the exec outlived its client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let none = r
        .client
        .exec_stream("x9", args(&["true"]), false, false)
        .await;
    assert_eq!(none.unwrap_err().kind(), Kind::NotFound);
    let empty = r.client.exec_stream("x1", Vec::new(), false, false).await;
    assert_eq!(empty.unwrap_err().kind(), Kind::InvalidArgument);
    assert_eq!(
        r.client.ping().await.unwrap(),
        r.pid,
        "the monitor still serves"
    );
    r.client.shutdown().await.unwrap();
    fx.cleanup();
}
