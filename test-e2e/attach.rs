//! Attach end to end: the RPC's checks; a stdin_once container over WebSocket (stdin
//! closes the container's, 10 MiB of output arrive whole, the log has it too, the URL
//! works once); a tty container (resize, detach without stopping it, two attachers at
//! once, still attachable after a daemon restart); and through crictl (client-go's SPDY
//! executor): stdin, and a tty whose size crictl sends from its own terminal.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1::*;

use crate::exec::upgrade_status;
use crate::fixtures::*;
use crate::harness::{
    CRICTL, Daemon, Runtime, crictl, crictl_endpoints, crictl_preflight, preflight,
};
use crate::ws_client::Session;

const WAIT: Duration = Duration::from_secs(30);

fn request(id: &str, stdin: bool, tty: bool) -> AttachRequest {
    AttachRequest {
        container_id: id.to_string(),
        stdin,
        tty,
        stdout: true,
        stderr: !tty,
    }
}

async fn attach_url(rt: &mut Runtime, req: AttachRequest) -> String {
    let r = rt
        .attach(req)
        .await
        .unwrap_or_else(|e| panic!("Attach: {e}"));
    r.into_inner().url
}

fn shell(name: &str, stdin_once: bool, tty: bool) -> ContainerConfig {
    let mut c = container_config(name, BUSYBOX, &["sh"]);
    c.stdin = true;
    c.stdin_once = stdin_once;
    c.tty = tty;
    c
}

#[tokio::test]
async fn attach_to_stdin_once_over_websocket() {
    if !preflight("attach_to_stdin_once_over_websocket", true) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "attach-once");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = shell("once", true, false);
    let id = create(&mut rt, &pod_id, &pod, &c).await.expect("create");

    let missing = rt.attach(request(&"0".repeat(64), true, false)).await;
    assert_eq!(code(&missing), tonic::Code::NotFound);
    let not_started = rt.attach(request(&id, true, false)).await;
    assert_eq!(code(&not_started), tonic::Code::FailedPrecondition);
    start(&mut rt, &id).await.expect("start");
    let mut silent = request(&id, false, false);
    (silent.stdout, silent.stderr) = (false, false);
    assert_eq!(code(&rt.attach(silent).await), tonic::Code::InvalidArgument);
    let mut tty_err = request(&id, true, true);
    tty_err.stderr = true;
    assert_eq!(
        code(&rt.attach(tty_err).await),
        tonic::Code::InvalidArgument
    );

    let url = attach_url(&mut rt, request(&id, true, false)).await;
    assert!(url.contains("/attach/"), "{url}");
    let mut s = Session::connect(&url).await;
    let total = 10 << 20;
    let script = format!("echo hi; echo err >&2; head -c {total} /dev/zero\n");
    s.stdin(script.as_bytes()).await;
    s.close_stdin().await;
    let got = s.finish(WAIT).await;
    assert_eq!(got.err_text(), "err\n");
    assert!(got.status.contains("Success"), "{}", got.status);
    assert_eq!(got.out.len(), 3 + total, "every byte");
    assert!(got.out.starts_with(b"hi\n") && got.out[3..].iter().all(|b| *b == 0));
    // stdin_once: the container's stdin closed with the attacher's, so sh is done.
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, WAIT).await;
    assert_eq!(st.exit_code, 0);
    let log = std::fs::read_to_string(log_path(&pod, &c)).unwrap();
    let lines = parse_log(&log);
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "stdout" && l.content == "hi")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "stderr" && l.content == "err")
    );
    let logged: usize = lines.iter().skip(1).map(|l| l.content.len()).sum();
    assert!(logged >= total, "the log has the output too: {logged}");
    assert_eq!(
        upgrade_status(&url, "v4.channel.k8s.io").await,
        404,
        "single use"
    );
    let exited = rt.attach(request(&id, true, false)).await;
    assert_eq!(code(&exited), tonic::Code::FailedPrecondition);
    d.teardown().await;
}

#[tokio::test]
async fn attach_to_a_tty_resize_detach_and_restart() {
    if !preflight("attach_to_a_tty_resize_detach_and_restart", true) {
        return;
    }
    let mut d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "attach-tty");
    let pod_id = run_pod(&mut rt, &pod).await;
    let id = create_and_start(&mut rt, &pod_id, &pod, &shell("tty", false, true)).await;

    let mut s = Session::connect(&attach_url(&mut rt, request(&id, true, true)).await).await;
    s.resize(100, 40).await;
    s.stdin(b"stty size; tty\n").await;
    let sized = |g: &crate::ws_client::Received| g.out_text().contains("40 100\r\n/dev/pts/0");
    assert!(s.read_until(WAIT, sized).await, "{}", s.got.out_text());
    // The attacher's stdin ends: it is detached, the container runs on.
    s.close_stdin().await;
    let got = s.finish(WAIT).await;
    assert!(got.status.contains("Success"), "{}", got.status);
    let st = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);

    // The monitor holds the terminal: a restarted daemon attaches to it again, and
    // two attachers see the same output.
    d.restart().await;
    let mut rt = d.runtime().await;
    let mut watcher = request(&id, false, true);
    watcher.stdin = false;
    let mut w = Session::connect(&attach_url(&mut rt, watcher).await).await;
    let mut s = Session::connect(&attach_url(&mut rt, request(&id, true, true)).await).await;
    s.stdin(b"echo both-$((40+2))\n").await;
    let both = |g: &crate::ws_client::Received| g.out_text().contains("both-42");
    assert!(s.read_until(WAIT, both).await, "{}", s.got.out_text());
    assert!(w.read_until(WAIT, both).await, "{}", w.got.out_text());
    drop(w);
    s.stdin(b"exit 7\n").await;
    let got = s.finish(WAIT).await;
    assert!(got.status.contains("Success"), "{}", got.status);
    let st = wait_state(&mut rt, &id, ContainerState::ContainerExited, WAIT).await;
    assert_eq!(st.exit_code, 7);
    d.teardown().await;
}

/// A command run under `script`, so it has a terminal: its output read as it comes.
struct Interactive {
    child: std::process::Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Interactive {
    fn spawn(cmd: &str) -> Interactive {
        let mut child = Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning script");
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut from = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Interactive { child, out }
    }

    fn send(&mut self, data: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn expect(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.text().contains(want) {
            assert!(
                Instant::now() < deadline,
                "no {want:?} in {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait(mut self) -> i32 {
        drop(self.child.stdin.take());
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

#[tokio::test]
async fn attach_and_tty_exec_over_spdy_with_crictl() {
    if !crictl_preflight("attach_and_tty_exec_over_spdy_with_crictl") {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "attach-crictl");
    let pod_id = run_pod(&mut rt, &pod).await;
    let once = create_and_start(&mut rt, &pod_id, &pod, &shell("once", true, false)).await;
    let tty = create_and_start(&mut rt, &pod_id, &pod, &shell("tty", false, true)).await;
    let crictl_line = format!("{CRICTL} {}", crictl_endpoints(&d).join(" "));

    let mut child = crictl(&d)
        .args(["attach", "-i", &once])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning crictl");
    let input = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let mut input = input;
        input.write_all(b"echo via-spdy; exit 5\n").unwrap();
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via-spdy\n");
    let st = wait_state(&mut rt, &once, ContainerState::ContainerExited, WAIT).await;
    assert_eq!(st.exit_code, 5);

    // crictl sends its own terminal's size: the exec's pty takes it.
    let cmd = format!("stty cols 91 rows 37; {crictl_line} exec -it {tty} sh -c 'stty size; tty'");
    let exec = Interactive::spawn(&cmd);
    exec.expect("37 91");
    exec.expect("/dev/pts/1");
    assert_eq!(exec.wait(), 0);

    let cmd = format!("stty cols 77 rows 33; {crictl_line} attach -it {tty}");
    let mut attached = Interactive::spawn(&cmd);
    attached.send(b"stty size\n");
    attached.expect("33 77");
    // crictl's detach keys (ctrl-p ctrl-q) end the attachment, not the container.
    attached.send(b"\x10\x11");
    attached.wait();
    let st = container_status(&mut rt, &tty).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    d.teardown().await;
}
