//! Attachers without the runtime: a fake container's real pipes, and the daemon's ends
//! of an attacher's pipes read and written as the daemon would.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use super::super::attach::Watch;
use super::super::log::Stream;
use super::super::proto;
use super::tests::{fake_with_stdin, log_lines};
use super::*;

const CONN: u64 = 7;

/// Attaches CONN to c1 with every stream; the daemon's (stdin, stdout, stderr).
fn attach_all(cs: &mut Containers) -> (File, File, File) {
    attach_all_on(cs, CONN)
}

fn attach_all_on(cs: &mut Containers, conn: u64) -> (File, File, File) {
    let req = proto::Attach {
        id: "c1".into(),
        stdin: true,
        stdout: true,
        stderr: true,
    };
    let (started, fds) = cs.attach(conn, &req).unwrap();
    assert!(started.stdin && started.stdout && started.stderr && !started.resize);
    let [i, o, e]: [OwnedFd; 3] = fds.try_into().unwrap();
    (File::from(i), File::from(o), File::from(e))
}

/// Runs the event loop's steps for c1 (serial 1) until `done` or a bound of rounds.
fn pump(cs: &mut Containers, mut done: impl FnMut(&mut Containers) -> bool) {
    let mut buf = [0u8; 8192];
    for _ in 0..500 {
        let watches: Vec<Watch> = cs.attach_fds().map(|(_, f)| f.watch).collect();
        for w in watches {
            cs.on_attach(1, w, &mut buf);
        }
        let outputs: Vec<Stream> = cs.output_fds().map(|o| o.stream).collect();
        for s in outputs {
            cs.on_output(1, s, &mut buf);
        }
        if done(cs) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("the attachment never got there");
}

#[test]
fn an_attacher_gets_the_output_the_log_gets_and_feeds_stdin() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, false);
    let (mut to_stdin, mut from_out, mut from_err) = attach_all(&mut cs);
    File::from(f.stdout).write_all(b"out\n").unwrap();
    File::from(f.stderr).write_all(b"err\n").unwrap();
    to_stdin.write_all(b"typed\n").unwrap();
    let mut got = [0u8; 6];
    let mut stdin = f.stdin;
    pump(&mut cs, |_| true);
    stdin.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"typed\n");
    // The container's outputs are closed (dropped above): the attachment ends after
    // delivering them, and the log has them too.
    pump(&mut cs, |cs| cs.ended_attaches() == [CONN]);
    let (mut out, mut err) = (String::new(), String::new());
    from_out.read_to_string(&mut out).unwrap();
    from_err.read_to_string(&mut err).unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(log_lines(t.path()), ["stdout F out", "stderr F err"]);
}

#[test]
fn stdin_once_closes_the_container_stdin_when_the_attacher_stdin_ends() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, true);
    let (to_stdin, _out, _err) = attach_all(&mut cs);
    drop(to_stdin);
    pump(&mut cs, |cs| cs.attach_fds().count() == 0);
    // EOF on the container's stdin, and the attacher stays for the output.
    let mut rest = Vec::new();
    let mut stdin = f.stdin;
    stdin.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(cs.ended_attaches().is_empty());
    drop((f.stdout, f.stderr));
    pump(&mut cs, |cs| cs.ended_attaches() == [CONN]);
}

#[test]
fn without_stdin_once_an_attacher_whose_stdin_ends_is_detached() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, false);
    let (to_stdin, mut from_out, _err) = attach_all(&mut cs);
    drop(to_stdin);
    pump(&mut cs, |cs| cs.ended_attaches() == [CONN]);
    // Detached: its stdout is closed, the container runs on with stdin open.
    let mut out = Vec::new();
    from_out.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    let mut stdin = f.stdin;
    crate::monitor::sys::set_nonblocking(&stdin).unwrap();
    let mut byte = [0u8; 1];
    let err = stdin.read(&mut byte).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    drop((f.stdout, f.stderr));
}

#[test]
fn a_slow_attacher_holds_the_output_back_and_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, false);
    let (_in, mut from_out, _err) = attach_all(&mut cs);
    // More than a pipe holds, written by a thread as a container would.
    let total = 1 << 20;
    let writer = std::thread::spawn(move || {
        let mut out = File::from(f.stdout);
        out.write_all(&vec![b'x'; total]).unwrap();
    });
    // Nobody reads the attacher's pipe yet: the container's output stops being read.
    pump(&mut cs, |cs| cs.output_fds().count() == 0);
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        from_out.read_exact(&mut got).unwrap();
        got.iter().all(|b| *b == b'x')
    });
    pump(&mut cs, |_| reader.is_finished());
    assert!(reader.join().unwrap(), "every byte, in order");
    writer.join().unwrap();
    drop(f.stderr);
}

#[test]
fn a_dropped_connection_removes_its_attacher() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let _f = fake_with_stdin(&mut cs, t.path(), 999_999, false);
    let _daemon_ends = attach_all(&mut cs);
    assert!(cs.attach_fds().count() > 0);
    cs.detach(CONN);
    assert_eq!(cs.attach_fds().count(), 0);
    assert!(cs.ended_attaches().is_empty());
    let missing = proto::Attach {
        id: "nope".into(),
        stdout: true,
        ..Default::default()
    };
    assert!(matches!(
        cs.attach(CONN, &missing),
        Err(MonitorError::NotFound(_))
    ));
}

#[test]
fn a_stdin_once_attacher_that_goes_away_closes_the_container_stdin() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, true);
    let _daemon_ends = attach_all(&mut cs);
    assert!(cs.detach(CONN), "it had an attacher");
    assert!(!cs.detach(CONN), "and has none now");
    let mut rest = Vec::new();
    let mut stdin = f.stdin;
    stdin.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "EOF on the container's stdin");
    drop((f.stdout, f.stderr));
}

#[test]
fn a_stdin_only_attacher_of_a_stdin_once_container_ends_with_its_stdin() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, true);
    let req = proto::Attach {
        id: "c1".into(),
        stdin: true,
        ..Default::default()
    };
    let (started, fds) = cs.attach(CONN, &req).unwrap();
    assert!(started.stdin && !started.stdout && !started.stderr);
    drop(fds);
    pump(&mut cs, |cs| cs.ended_attaches() == [CONN]);
    drop((f.stdin, f.stdout, f.stderr));
}

#[test]
fn the_end_of_the_output_keeps_a_pipe_stdin_and_ends_later_attachers_at_once() {
    let t = tempfile::tempdir().unwrap();
    let mut cs = Containers::default();
    let f = fake_with_stdin(&mut cs, t.path(), 999_999, false);
    drop((f.stdout, f.stderr));
    pump(&mut cs, |cs| cs.output_fds().count() == 0);
    // Still running, and still reading its stdin (say it sent its output to a file).
    let (mut to_stdin, _out, _err) = attach_all(&mut cs);
    assert_eq!(cs.ended_attaches(), [CONN], "nothing to wait for");
    assert!(
        to_stdin.write_all(b"late\n").is_err(),
        "an ended attacher's pipe"
    );
    let mut stdin = f.stdin;
    crate::monitor::sys::set_nonblocking(&stdin).unwrap();
    let mut byte = [0u8; 1];
    let open = stdin.read(&mut byte).unwrap_err();
    assert_eq!(
        open.kind(),
        std::io::ErrorKind::WouldBlock,
        "stdin stays open"
    );
    // An attacher still on it when it is deleted (its end not yet collected) is owed
    // AttachEnded by the delete.
    let _ends = attach_all_on(&mut cs, CONN + 1);
    assert!(cs.on_exit(Pid::from_raw(999_999), 0, t.path()));
    assert_eq!(stdin.read(&mut byte).unwrap(), 0, "closed at the exit");
    assert_eq!(cs.delete("c1", t.path()).unwrap(), [CONN + 1]);
}
