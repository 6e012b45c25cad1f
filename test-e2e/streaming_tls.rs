//! The streaming server over TLS (`streaming.tls_cert_file`, `tls_key_file`), with a
//! self-signed certificate for localhost and 127.0.0.1 that openssl makes (the harness's
//! `Options::tls`): Exec then returns an https URL; a client that trusts only that
//! certificate runs a command over WebSocket, plain HTTP gets no answer from the port,
//! and crictl (client-go) execs through it, both as it does by default (no verification)
//! and verifying the certificate as kubelet would. A daemon given a certificate that is
//! not one, or only a key, refuses to start and says why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::ServerName};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::fixtures::*;
use crate::harness::{CRICTL, Daemon, Options, preflight};

const OPENSSL: &str = "/usr/bin/openssl";

async fn exec_url(rt: &mut crate::harness::Runtime, id: &str, cmd: &[&str]) -> String {
    let req = ExecRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    };
    rt.exec(req).await.expect("Exec").into_inner().url
}

/// A TLS client that trusts only the certificate in `cert` (PEM).
fn client(cert: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("reading the test certificate") {
        roots.add(c.expect("a PEM certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Runs the exec at `url` over WebSocket (v5) through TLS verified against `cert`;
/// returns its stdout.
async fn wss_exec(url: &str, cert: &Path) -> String {
    let wss = url.replacen("https://", "wss://", 1);
    let mut req = wss.as_str().into_client_request().unwrap();
    let proto = "v5.channel.k8s.io".parse().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
    let host = req.uri().authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = client(cert)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake verified against the configured certificate");
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let mut out = String::new();
    let read = async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m
                && let Some((1, data)) = b.split_first()
            {
                out.push_str(&String::from_utf8_lossy(data));
            }
        }
        let _ = ws.close(None).await;
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the exec ended");
    out
}

/// What a plain-HTTP request to the TLS port reads back (rustls answers a record that
/// is no TLS with an alert, or closes): never an HTTP status line.
async fn plain_http(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("https://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tcp.read_to_end(&mut got);
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    got
}

fn crictl(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(CRICTL)
        .args(crate::harness::crictl_endpoints(d))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawning crictl");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn exec_over_tls() {
    if !preflight("exec_over_tls", true) {
        return;
    }
    if !Path::new(OPENSSL).exists() {
        eprintln!("skipping exec_over_tls: {OPENSSL} is not installed");
        return;
    }
    let d = Daemon::start_with(Options {
        network: true,
        tls: true,
        ..Options::default()
    })
    .await;
    let cert = d.paths.dir.join("tls.crt");
    let key = d.paths.dir.join("tls.key");
    let mut rt = d.runtime().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let pod = pod_config(&d, "exec-tls");
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("sleeper", BUSYBOX, &["sleep", "3600"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;

    let url = exec_url(&mut rt, &id, &["echo", "over tls"]).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(wss_exec(&url, &cert).await, "over tls\n");
    let url = exec_url(&mut rt, &id, &["echo", "unused"]).await;
    let got = plain_http(&url).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {got:?}"
    );

    if Path::new(CRICTL).exists() {
        let (ok, out, err) = crictl(&d, &["exec", &id, "echo", "insecure"]);
        assert!(ok && out == "insecure\n", "{out}{err}");
        // Verifying, as kubelet does; crictl wants a client pair whenever it gets a CA.
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let verify = ["--tls-ca", cert, "--tls-cert", cert, "--tls-key", key];
        let args = [
            &["exec"],
            &verify[..],
            &["--tls-sni", "localhost", &id, "echo", "ok"],
        ];
        let (ok, out, err) = crictl(&d, &args.concat());
        assert!(ok && out == "ok\n", "{out}{err}");
        let ws = [
            &["exec", "--transport", "websocket"],
            &verify[..],
            &[&id, "echo", "ws"],
        ];
        let (ok, out, err) = crictl(&d, &ws.concat());
        assert!(ok && out == "ws\n", "{out}{err}");
        // ...and it does verify: a CA that did not sign crius's certificate fails.
        let other = tempfile::tempdir().unwrap();
        let (other, _) = self_signed(other.path());
        let other = other.to_str().unwrap();
        let wrong = [
            "exec",
            "--tls-ca",
            other,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ];
        let (ok, out, err) = crictl(&d, &[&wrong[..], &[&id, "echo", "no"]].concat());
        assert!(!ok && out.is_empty(), "{out}{err}");
        assert!(err.contains("certificate"), "{err}");
    } else {
        eprintln!("exec_over_tls: {CRICTL} is not installed; crictl part skipped");
    }
    d.teardown().await;
}

/// Runs the daemon on a config whose `[streaming]` section is `streaming`, everything
/// else in `dir`; it must exit with an error: its stderr.
fn refused_start(dir: &Path, streaming: &str) -> String {
    let q = |name: &str| toml::Value::String(dir.join(name).display().to_string()).to_string();
    let config = format!(
        "socket = {}\nroot = {}\nrun_root = {}\ncgroup_parent = \"crius-e2e-tls\"\n\
         [streaming]\n{streaming}\n",
        q("crius.sock"),
        q("root"),
        q("run"),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(crate::harness::BINARY)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("running crius");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "crius started: {err}");
    err
}

#[test]
fn a_bad_tls_config_stops_the_daemon_with_the_reason() {
    if !preflight("a_bad_tls_config_stops_the_daemon_with_the_reason", false) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("ce2e-tls")
        .tempdir()
        .unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let file = |name: &str, p: &Path| format!("{name} = \"{}\"\n", p.display());
    let err = refused_start(dir.path(), &file("tls_cert_file", &cert));
    assert!(err.contains("must be set together"), "{err}");
    let both = file("tls_cert_file", &cert) + &file("tls_key_file", &key);
    let err = refused_start(dir.path(), &both);
    assert!(
        err.contains(&format!("{}: holds no PEM certificate", cert.display())),
        "{err}"
    );
    let missing = dir.path().join("missing.crt");
    let err = refused_start(
        dir.path(),
        &(file("tls_cert_file", &missing) + &file("tls_key_file", &key)),
    );
    assert!(err.contains("reading the streaming TLS file"), "{err}");
    assert!(
        !dir.path().join("root").exists(),
        "the daemon made its state first"
    );
}
