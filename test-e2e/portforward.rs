//! PortForward end to end: a pod serving HTTP (busybox httpd, port 8080) and an echo
//! (busybox nc, port 9090) in its own network namespace, reached through the URL
//! PortForward returns: over WebSocket with tokio-tungstenite's client, and over SPDY,
//! plain and tunneled in a WebSocket, with crictl's (client-go), a client crius did not
//! write.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::exec::upgrade_status;
use crate::fixtures::*;
use crate::harness::{Daemon, Options, Runtime, crictl, crictl_preflight, preflight};

const WITHIN: Duration = Duration::from_secs(30);
const PAGE: &str = "hello-from-the-pod";
const SERVERS: &str = "mkdir -p /www; echo hello-from-the-pod > /www/index.html; \
                       nc -ll -p 9090 -e cat & exec httpd -f -p 8080 -h /www";
const GET: &[u8] = b"GET /index.html HTTP/1.0\r\n\r\n";

async fn port_forward(rt: &mut Runtime, pod: &str) -> Result<String, tonic::Status> {
    let req = PortForwardRequest {
        pod_sandbox_id: pod.to_string(),
        port: vec![8080],
    };
    rt.port_forward(req).await.map(|r| r.into_inner().url)
}

/// A pod whose container serves 8080 and 9090, both listening.
async fn serving_pod(d: &Daemon, rt: &mut Runtime, name: &str) -> String {
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(d, name);
    let pod_id = run_pod(rt, &pod).await;
    let c = container_config("servers", BUSYBOX, &["sh", "-c", SERVERS]);
    let id = create_and_start(rt, &pod_id, &pod, &c).await;
    let deadline = Instant::now() + WITHIN;
    loop {
        let (_, out) = sh(rt, &id, "netstat -ltn").await;
        if out.contains(":8080") && out.contains(":9090") {
            return pod_id;
        }
        assert!(
            Instant::now() < deadline,
            "the servers never listened: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens the WebSocket form of `url` for `ports`; the HTTP status if refused.
async fn websocket(url: &str, ports: &[u16]) -> Result<Ws, u16> {
    let query: Vec<String> = ports.iter().map(|p| format!("port={p}")).collect();
    let url = format!(
        "{}?{}",
        url.replacen("http://", "ws://", 1),
        query.join("&")
    );
    let mut req = url.as_str().into_client_request().unwrap();
    let proto = "v4.channel.k8s.io".parse().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
    let host = req.uri().authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

/// `len` bytes sent on channel `ch` while its echo is read back: all of it, in order.
async fn ws_bulk_echo(ws: Ws, ch: u8, len: usize) -> Ws {
    let (mut sink, mut stream) = ws.split();
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(64 * 1024) {
            let mut b = vec![ch];
            b.extend_from_slice(chunk);
            sink.send(Message::binary(b)).await.unwrap();
        }
        sink
    });
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let m = tokio::time::timeout(WITHIN, stream.next()).await;
        match m
            .expect("echo in time")
            .expect("the WebSocket open")
            .unwrap()
        {
            Message::Binary(b) if b.first() == Some(&ch) => got.extend_from_slice(&b[1..]),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got == data, "the echo differs from what was sent");
    writer.await.unwrap().reunite(stream).unwrap()
}

/// The stream protocol of port-forward over SPDY.
const PF: &str = "portforward.k8s.io";

/// The next data message: (channel, payload); `None` once the server closed.
async fn next(ws: &mut Ws) -> Option<(u8, Vec<u8>)> {
    loop {
        let m = tokio::time::timeout(WITHIN, ws.next())
            .await
            .expect("a message in time");
        match m? {
            Ok(Message::Binary(b)) if !b.is_empty() => return Some((b[0], b[1..].to_vec())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads channel `ch` until `want` shows in what it carried.
async fn read_until(ws: &mut Ws, ch: u8, want: &str) -> String {
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(want) {
        let Some((c, data)) = next(ws).await else {
            panic!(
                "closed before {want:?}; got {:?}",
                String::from_utf8_lossy(&got)
            )
        };
        if c == ch {
            got.extend(data);
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn send(ws: &mut Ws, ch: u8, data: &[u8]) {
    let mut b = vec![ch];
    b.extend_from_slice(data);
    ws.send(Message::binary(b)).await.unwrap();
}

/// Over WebSocket: both ports in one connection (each channel first carries its port),
/// HTTP on 8080 and an echo on 9090; the token then no longer works, a closed port
/// reports why on its error channel, and PortForward refuses absent and stopped pods.
#[tokio::test]
async fn port_forward_over_websocket() {
    if !preflight("port_forward_over_websocket", true) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let pod = serving_pod(&d, &mut rt, "pf-ws").await;
    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/portforward/"),
        "{url}"
    );
    let mut ws = websocket(&url, &[8080, 9090]).await.expect("the upgrade");
    let mut prefixes = Vec::new();
    for _ in 0..4 {
        prefixes.push(next(&mut ws).await.expect("a port prefix"));
    }
    let le = |p: u16| p.to_le_bytes().to_vec();
    let want = [(0, le(8080)), (1, le(8080)), (2, le(9090)), (3, le(9090))];
    assert_eq!(prefixes, want);
    send(&mut ws, 2, b"ping 9090\n").await;
    assert_eq!(read_until(&mut ws, 2, "ping 9090\n").await, "ping 9090\n");
    ws = ws_bulk_echo(ws, 2, 10 << 20).await;
    send(&mut ws, 0, GET).await;
    let page = read_until(&mut ws, 0, PAGE).await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(
        websocket(&url, &[8080]).await.err(),
        Some(404),
        "tokens are single use"
    );
    ws.close(None).await.unwrap();

    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    let mut ws = websocket(&url, &[7777]).await.expect("the upgrade");
    let error = read_until(&mut ws, 1, "refused").await;
    assert!(
        error.contains("port 7777") && error.contains(&pod),
        "{error}"
    );

    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    assert_eq!(
        upgrade_status(&url, "").await,
        403,
        "no stream protocol offered"
    );
    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    assert_eq!(upgrade_status(&url, PF).await, 101);
    assert_eq!(upgrade_status(&url, PF).await, 404, "tokens are single use");

    let missing = port_forward(&mut rt, &"0".repeat(64)).await;
    assert_eq!(code(&missing), tonic::Code::NotFound);
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    rt.stop_pod_sandbox(stop).await.expect("StopPodSandbox");
    let stopped = port_forward(&mut rt, &pod).await;
    assert_eq!(code(&stopped), tonic::Code::FailedPrecondition);
    d.teardown().await;
}

/// A token not used within its TTL is gone.
#[tokio::test]
async fn an_expired_port_forward_token_is_refused() {
    if !preflight("port_forward_token_expiry", true) {
        return;
    }
    let opts = Options {
        network: true,
        token_ttl: Some(1),
        ..Options::default()
    };
    let d = Daemon::start_with(opts).await;
    let mut rt = d.runtime().await;
    let pod = serving_pod(&d, &mut rt, "pf-ttl").await;
    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(websocket(&url, &[8080]).await.err(), Some(404));
    let url = port_forward(&mut rt, &pod).await.expect("PortForward");
    assert!(
        websocket(&url, &[8080]).await.is_ok(),
        "a fresh token works"
    );
    d.teardown().await;
}

/// A free local port (bound, then released for crictl).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `crictl port-forward`, its local ports listening.
async fn crictl_forward(d: &Daemon, pod: &str, transport: &str, pairs: &[(u16, u16)]) -> Child {
    let mut cmd = crictl(d);
    cmd.args(["port-forward", "--transport", transport, pod]);
    cmd.args(pairs.iter().map(|(l, r)| format!("{l}:{r}")));
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let child = child.expect("spawning crictl");
    let deadline = Instant::now() + WITHIN;
    for (local, _) in pairs {
        while tokio::net::TcpStream::connect(("127.0.0.1", *local))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "crictl never listened on {local}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    child
}

/// One request over a forwarded local port: what came back before EOF.
async fn exchange(port: u16, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(request).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(WITHIN, tcp.read_to_end(&mut out)).await;
    read.expect("the answer in time")
        .expect("reading the answer");
    String::from_utf8_lossy(&out).into_owned()
}

/// Over SPDY, driven by crictl (client-go's SPDY client): two ports at once and several
/// concurrent connections on each, every one a pair of streams on one SPDY connection;
/// 10 MiB echoed without loss; a closed port's error reaches crictl.
#[tokio::test]
async fn port_forward_over_spdy_with_crictl() {
    crictl_port_forward("port_forward_over_spdy_with_crictl", "spdy").await;
}

/// The same with `--transport websocket`: client-go tunnels SPDY in a WebSocket.
#[tokio::test]
async fn port_forward_over_spdy_in_websocket_with_crictl() {
    crictl_port_forward(
        "port_forward_over_spdy_in_websocket_with_crictl",
        "websocket",
    )
    .await;
}

async fn crictl_port_forward(test: &str, transport: &str) {
    if !crictl_preflight(test) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let pod = serving_pod(&d, &mut rt, "pf-crictl").await;
    let (http, echo) = (free_port(), free_port());
    let mut crictl = crictl_forward(&d, &pod, transport, &[(http, 8080), (echo, 9090)]).await;
    let mut calls = Vec::new();
    for i in 0..4 {
        calls.push(tokio::spawn(exchange(http, GET)));
        let line = format!("echo {i}\n").repeat(1000);
        calls.push(tokio::spawn(async move {
            exchange(echo, line.as_bytes()).await
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let got = call.await.unwrap();
        if i % 2 == 0 {
            assert!(
                got.starts_with("HTTP/1.1 200 OK") && got.contains(PAGE),
                "{got}"
            );
        } else {
            assert_eq!(got, format!("echo {}\n", i / 2).repeat(1000));
        }
    }
    bulk_echo(echo, 10 << 20).await;
    let _ = crictl.kill();
    let _ = crictl.wait();

    let closed = free_port();
    let mut crictl = crictl_forward(&d, &pod, transport, &[(closed, 7777)]).await;
    assert_eq!(
        exchange(closed, GET).await,
        "",
        "nothing from a closed port"
    );
    let _ = crictl.kill();
    let out = crictl.wait_with_output().expect("crictl's output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("port 7777") && err.contains("refused"),
        "{err}"
    );
    d.teardown().await;
}

/// `len` bytes through the echo, written and read at once: all come back, in order.
async fn bulk_echo(port: u16, len: usize) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut r, mut w) = tcp.into_split();
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(len);
    let read = tokio::time::timeout(Duration::from_secs(120), r.read_to_end(&mut got)).await;
    read.expect("the echo in time").expect("reading the echo");
    writer.await.unwrap();
    assert_eq!(got.len(), len);
    assert!(got == data, "the echo differs from what was sent");
}

/// A host-network pod's ports are the host's: the forward connects on the host.
#[tokio::test]
async fn port_forward_to_a_host_network_pod() {
    if !preflight("port_forward_to_a_host_network_pod", true) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut pod = pod_config(&d, "pf-host");
    let ns = pod.linux.as_mut().and_then(|l| l.security_context.as_mut());
    let ns = ns.and_then(|s| s.namespace_options.as_mut()).unwrap();
    ns.network = NamespaceMode::Node as i32;
    let pod_id = run_pod(&mut rt, &pod).await;
    let port = free_port();
    let script = format!("exec nc -ll -p {port} -e cat");
    let c = container_config("echo", BUSYBOX, &["sh", "-c", &script]);
    create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let deadline = Instant::now() + WITHIN;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the echo never listened on the host"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = port_forward(&mut rt, &pod_id).await.expect("PortForward");
    let mut ws = websocket(&url, &[port]).await.expect("the upgrade");
    let le = port.to_le_bytes().to_vec();
    for ch in [0, 1] {
        assert_eq!(
            next(&mut ws).await,
            Some((ch, le.clone())),
            "the port prefix"
        );
    }
    send(&mut ws, 0, b"via the host\n").await;
    assert_eq!(read_until(&mut ws, 0, "host\n").await, "via the host\n");
    d.teardown().await;
}
