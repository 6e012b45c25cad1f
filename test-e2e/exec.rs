//! Exec end to end: the RPC's checks (absent container, one not running, an empty
//! command, no stream asked for) and the URL it returns, whose token works once
//! and negotiates the stream protocol; over WebSocket (v5 channels) output, exit codes
//! and stdin; then crictl (client-go's SPDY executor) runs
//! commands: output, exit codes, stdin, and a killed client kills its process (tty:
//! crictl -it needs a terminal of its own; the monitor test and critest cover it).

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::*;
use crate::harness::{Daemon, crictl, crictl_preflight, preflight};
use crate::ws_client::Session;

const V4: &str = "v4.channel.k8s.io";

fn request(id: &str, cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    }
}

/// The HTTP status the streaming server answers a SPDY upgrade of `url` with, as
/// client-go sends it, offering stream protocol `proto` (none for "").
pub(crate) async fn upgrade_status(url: &str, proto: &str) -> u16 {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let offer = match proto {
        "" => String::new(),
        p => format!("X-Stream-Protocol-Version: {p}\r\n"),
    };
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\n{offer}Content-Length: 0\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    status
        .parse()
        .unwrap_or_else(|_| panic!("a status line: {head:?}"))
}

/// Runs an exec over WebSocket (v5), sending `input` messages (channel byte first):
/// (stdout, stderr, the error channel's Status).
async fn ws_exec(url: &str, input: &[&[u8]]) -> (String, String, String) {
    let mut s = Session::connect(url).await;
    for m in input {
        s.send(m[0], &m[1..]).await;
    }
    let got = s.finish(Duration::from_secs(20)).await;
    (got.out_text(), got.err_text(), got.status)
}

#[tokio::test]
async fn exec_checks_its_request_and_issues_a_single_use_url() {
    if !preflight("exec_checks_its_request", true) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "exec-rpc");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("sleeper", BUSYBOX, &["sleep", "3600"]);
    let created = create(&mut rt, &pod_id, &pod, &c).await.expect("create");

    let missing = rt.exec(request(&"0".repeat(64), &["true"])).await;
    assert_eq!(code(&missing), tonic::Code::NotFound);
    let not_started = rt.exec(request(&created, &["true"])).await;
    assert_eq!(code(&not_started), tonic::Code::FailedPrecondition);
    start(&mut rt, &created).await.expect("start");
    let empty = rt.exec(request(&created, &[])).await;
    assert_eq!(code(&empty), tonic::Code::InvalidArgument);
    let mut silent = request(&created, &["true"]);
    silent.stdout = false;
    assert_eq!(code(&rt.exec(silent).await), tonic::Code::InvalidArgument);

    let url = rt
        .exec(request(&created, &["echo", "hi"]))
        .await
        .expect("Exec");
    let url = url.into_inner().url;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
        "{url}"
    );
    assert_eq!(upgrade_status(&url, V4).await, 101, "SPDY with v4 accepted");
    assert_eq!(upgrade_status(&url, V4).await, 404, "tokens are single use");
    let url = rt.exec(request(&created, &["true"])).await.expect("Exec");
    let pf_of_exec = url.into_inner().url.replacen("/exec/", "/portforward/", 1);
    assert_eq!(
        upgrade_status(&pf_of_exec, V4).await,
        404,
        "an exec token is not a port-forward one"
    );

    let url = rt.exec(request(&created, &["true"])).await.expect("Exec");
    let url = url.into_inner().url;
    let refused = upgrade_status(&url, "portforward.k8s.io").await;
    assert_eq!(refused, 403, "no remotecommand protocol offered");

    let script = ["sh", "-c", "echo hi; echo err >&2; exit 3"];
    let mut req = request(&created, &script);
    req.stderr = true;
    let url = rt.exec(req).await.expect("Exec").into_inner().url;
    let (out, err, status) = ws_exec(&url, &[]).await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", "err\n"));
    assert!(
        status.contains("NonZeroExitCode") && status.contains(r#""message":"3""#),
        "{status}"
    );
    let mut req = request(&created, &["cat"]);
    req.stdin = true;
    let url = rt.exec(req).await.expect("Exec").into_inner().url;
    let (out, _, status) = ws_exec(&url, &[b"\x00data\n", b"\xff\x00"]).await;
    assert_eq!(out, "data\n");
    assert!(status.contains("Success"), "{status}");
    // The older and the base64 protocols, and none offered (binary, as the oldest):
    // the same channels; before v4 the error channel carries only a failure's text.
    for (proto, status) in [
        ("v4.base64.channel.k8s.io", "Success"),
        ("base64.channel.k8s.io", ""),
        ("channel.k8s.io", ""),
        ("", ""),
    ] {
        let mut req = request(&created, &["sh", "-c", "cat; echo err >&2"]);
        (req.stdin, req.stderr) = (true, true);
        let url = rt.exec(req).await.expect("Exec").into_inner().url;
        let mut s = Session::connect_with(&url, proto).await;
        s.stdin(b"in \x00\xff\n").await;
        let echoed = |g: &crate::ws_client::Received| g.out.ends_with(b"\xff\n");
        assert!(
            s.read_until(Duration::from_secs(20), echoed).await,
            "{proto}"
        );
        drop(s);
        let mut req = request(&created, &["sh", "-c", "echo out; exit 2"]);
        req.stderr = true;
        let url = rt.exec(req).await.expect("Exec").into_inner().url;
        let got = Session::connect_with(&url, proto).await;
        let got = got.finish(Duration::from_secs(20)).await;
        assert_eq!(got.out_text(), "out\n", "{proto}");
        let failed = got.status.contains("exit status 2") || got.status.contains("NonZeroExitCode");
        assert!(failed, "{proto}: {}", got.status);
        let mut ok = request(&created, &["true"]);
        ok.stderr = true;
        let url = rt.exec(ok).await.expect("Exec").into_inner().url;
        let got = Session::connect_with(&url, proto).await;
        let got = got.finish(Duration::from_secs(20)).await;
        assert!(got.status.contains(status), "{proto}: {}", got.status);
        assert_eq!(status.is_empty(), got.status.is_empty(), "{proto}");
    }
    let total = 10 << 20;
    let big = format!("head -c {total} /dev/zero");
    let url = rt.exec(request(&created, &["sh", "-c", &big])).await;
    let (out, _, status) = ws_exec(&url.expect("Exec").into_inner().url, &[]).await;
    assert_eq!(out.len(), total, "10 MiB over WebSocket, whole");
    assert!(out.bytes().all(|b| b == 0) && status.contains("Success"));

    let mut tty = request(&created, &["sh"]);
    tty.tty = true;
    assert!(rt.exec(tty).await.is_ok(), "a tty exec gets its URL");

    let stop = StopContainerRequest {
        container_id: created.clone(),
        timeout: 0,
    };
    rt.stop_container(stop).await.expect("StopContainer");
    let stopped = rt.exec(request(&created, &["true"])).await;
    assert_eq!(code(&stopped), tonic::Code::FailedPrecondition);
    d.teardown().await;
}

/// `crictl exec` with `args` and `stdin` on its stdin: (exit code, stdout, stderr).
fn crictl_exec(d: &Daemon, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = crictl(d)
        .arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning crictl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[tokio::test]
async fn exec_over_spdy_with_crictl() {
    if !crictl_preflight("exec_over_spdy_with_crictl") {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "exec-crictl");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("sleeper", BUSYBOX, &["sleep", "3600"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;

    let (rc, out, err) = crictl_exec(&d, &[&id, "echo", "hi"], b"");
    assert_eq!((rc, out.as_str()), (0, "hi\n"), "{err}");
    let script = "echo out; echo err >&2; exit 3";
    let (rc, out, err) = crictl_exec(&d, &[&id, "sh", "-c", script], b"");
    // client-go turned v4's Status back into the code: "command terminated with exit
    // code 3" (crictl itself exits 1 on any failure).
    assert_eq!((rc, out.as_str()), (1, "out\n"), "{err}");
    assert!(
        err.contains("err\n") && err.contains("exit code 3"),
        "{err}"
    );
    let (rc, out, err) = crictl_exec(&d, &["-i", &id, "cat"], b"data\n");
    assert_eq!((rc, out.as_str()), (0, "data\n"), "{err}");
    // 10 MiB through SPDY's flow control, whole.
    let total = 10 << 20;
    let big = format!("head -c {total} /dev/zero");
    let (rc, out, err) = crictl_exec(&d, &[&id, "sh", "-c", &big], b"");
    assert_eq!((rc, out.len()), (0, total), "{err}");
    assert!(out.bytes().all(|b| b == 0));
    // client-go's WebSocket executor (v5 channels).
    let ws = [
        "--transport",
        "websocket",
        "-i",
        &id,
        "sh",
        "-c",
        "cat; exit 4",
    ];
    let (rc, out, err) = crictl_exec(&d, &ws, b"more\n");
    assert_eq!((rc, out.as_str()), (1, "more\n"), "{err}");
    assert!(err.contains("exit code 4"), "{err}");

    let mut sleeper = crictl(&d)
        .args(["exec", &id, "sleep", "4321"])
        .spawn()
        .expect("spawning crictl");
    let running = |rt: &mut crate::harness::Runtime| {
        let mut rt = rt.clone();
        let id = id.clone();
        async move { sh(&mut rt, &id, "ps").await.1.contains("sleep 4321") }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running(&mut rt).await {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&mut rt).await {
        assert!(Instant::now() < deadline, "the exec outlived its client");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.teardown().await;
}
