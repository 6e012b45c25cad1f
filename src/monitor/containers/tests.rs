//! Container bookkeeping without the runtime: entries are built by hand with real pipes.

use super::*;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

/// A running container as `create` + `start` would leave it, minus the runtime:
/// returns the write ends of its stdout and stderr.
fn fake(list: &mut Containers, dir: &Path, pid: i32) -> (OwnedFd, OwnedFd) {
    let f = fake_with_stdin(list, dir, pid, false);
    (f.stdout, f.stderr)
}

/// The container's ends of a fake container's stdio.
pub(super) struct Fake {
    pub(super) stdin: File,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// As [`fake`], with a stdin the monitor holds (stdin_once as asked).
pub(super) fn fake_with_stdin(
    list: &mut Containers,
    dir: &Path,
    pid: i32,
    stdin_once: bool,
) -> Fake {
    let mut opened = stdio::pipes(true).unwrap();
    let runtime::Stdio::Fds {
        stdin: Some(stdin),
        stdout,
        stderr,
    } = std::mem::replace(&mut opened.runtime, runtime::Stdio::Console)
    else {
        unreachable!("pipes with stdin");
    };
    let path = dir.join("logs/c1.log").to_str().unwrap().to_string();
    let opts = StdinOptions {
        stdin: true,
        stdin_once,
        max_line: super::super::log::MAX_LINE,
    };
    let file = stdio::open_log(&path).unwrap();
    let stdio = ContainerStdio::new(file, path, opened, &opts, None).unwrap();
    list.next_serial += 1;
    list.list.push(Container {
        id: "c1".into(),
        serial: list.next_serial,
        bundle: dir.join("bundle"),
        exit_file: Some(dir.join("exit.json")),
        pid: Pid::from_raw(pid),
        created: None,
        status: Status::Running,
        created_at: 1,
        started_at: 2,
        exit: None,
        exec_target: None,
        stdio,
    });
    Fake {
        stdin: File::from(stdin),
        stdout,
        stderr,
    }
}

/// The log without timestamps.
pub(super) fn log_lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("logs/c1.log")).unwrap();
    text.lines()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect()
}

#[test]
fn a_reopened_log_takes_what_comes_after_a_rotation() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let (out, _err) = fake(&mut cs, t.path(), 999_999);
    let mut buf = [0u8; 64];
    let mut out = File::from(out);
    out.write_all(b"one\n").unwrap();
    cs.on_output(1, Stream::Stdout, &mut buf);
    let log = t.path().join("logs/c1.log");
    std::fs::rename(&log, t.path().join("logs/c1.log.1")).unwrap();
    cs.reopen_log("c1").unwrap();
    out.write_all(b"two\n").unwrap();
    cs.on_output(1, Stream::Stdout, &mut buf);
    assert_eq!(log_lines(t.path()), ["stdout F two"]);
    assert!(matches!(
        cs.reopen_log("nope"),
        Err(MonitorError::NotFound(_))
    ));
}

#[test]
fn output_is_logged_as_it_arrives() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let (out, err) = fake(&mut cs, t.path(), 999_999);
    let mut buf = [0u8; 64];
    let (mut out, mut err) = (File::from(out), File::from(err));
    out.write_all(b"one\ntw").unwrap();
    cs.on_output(1, Stream::Stdout, &mut buf);
    err.write_all(b"oops\n").unwrap();
    cs.on_output(1, Stream::Stderr, &mut buf);
    out.write_all(b"o\n").unwrap();
    cs.on_output(1, Stream::Stdout, &mut buf);
    assert_eq!(
        log_lines(t.path()),
        ["stdout F one", "stderr F oops", "stdout F two"]
    );
    let mode = std::fs::metadata(t.path().join("logs/c1.log")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o640
    );
    // Writers closed: the pipes reach EOF and are no longer polled. (Retried: a
    // concurrent test's child may hold copies of the fds until it execs.)
    drop((out, err));
    for _ in 0..200 {
        cs.on_output(1, Stream::Stdout, &mut buf);
        cs.on_output(1, Stream::Stderr, &mut buf);
        if cs.output_fds().count() == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(cs.output_fds().count(), 0);
}

#[test]
fn exit_drains_output_then_records_the_status() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let (out, err) = fake(&mut cs, t.path(), 999_999);
    File::from(out).write_all(b"bye\nno newline").unwrap();
    drop(err);
    assert!(
        !cs.on_exit(Pid::from_raw(12345), 0, t.path()),
        "not a container's pid"
    );
    assert!(cs.on_exit(Pid::from_raw(999_999), 137, t.path()));
    assert_eq!(log_lines(t.path()), ["stdout F bye", "stdout P no newline"]);
    let rec: ExitRecord = crate::store::read_json(&t.path().join("exit.json"))
        .unwrap()
        .unwrap();
    assert_eq!((rec.exit_code, rec.reason.as_str()), (137, "Error"));
    let st = cs.state("c1").unwrap();
    assert_eq!(st.status, Status::Exited as i32);
    assert_eq!((st.exit_code, st.finished_at), (137, rec.finished_at));
    assert_eq!((st.created_at, st.started_at), (1, 2));
    assert_eq!(cs.output_fds().count(), 0);
    assert!(cs.all_exited());
    // Signals to an exited container are no-ops; exec is refused.
    cs.kill("c1", 9).unwrap();
    assert!(matches!(
        cs.exec_target("c1", t.path()),
        Err(MonitorError::FailedPrecondition(_))
    ));
    // A second exit of a reused pid does not overwrite the record.
    assert!(!cs.on_exit(Pid::from_raw(999_999), 0, t.path()));
}

#[test]
fn kill_checks_the_signal_and_start_the_state() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let _pipes = fake(&mut cs, t.path(), 999_999);
    assert!(matches!(
        cs.kill("c1", 4242),
        Err(MonitorError::InvalidArgument(_))
    ));
    // No such process: ESRCH is not an error.
    cs.kill("c1", 15).unwrap();
    assert!(matches!(
        cs.start("c1"),
        Err(MonitorError::FailedPrecondition(_))
    ));
    assert!(matches!(
        cs.delete("c1", t.path()),
        Err(MonitorError::FailedPrecondition(_))
    ));
    assert!(matches!(
        cs.create(
            proto::CreateContainer {
                id: "c1".into(),
                bundle: "/b".into(),
                ..Default::default()
            },
            t.path()
        ),
        Err(MonitorError::AlreadyExists(_))
    ));
}
