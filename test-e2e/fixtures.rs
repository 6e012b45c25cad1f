//! Kubelet-like requests and the small waits and checks the tests share.

use crate::harness::{Daemon, Images, Runtime};
use k8s_cri::v1::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

/// Kubelet-style image names and what the mirrors turn them into.
pub const BUSYBOX: &str = "busybox";
pub const BUSYBOX_FULL: &str = "docker.io/library/busybox:latest";
pub const E2E_BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
pub const PAUSE: &str = "registry.k8s.io/pause:3.10";
/// Two layers; the second whites out `/etc/layer1-only` and `/layer1-dir`, adds
/// `/data/added`; `/data/kept` comes from the first.
pub const LAYERS: &str = "docker.io/crius-test/layers:1";

/// The bridge network every networked test daemon uses (see harness.rs).
pub fn test_conflist(ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "crius-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": crate::harness::BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.89.0.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
    .to_string()
}

/// A CNI plugin that fails its first ADD (with a CNI error object, after the bridge
/// has already attached the pod) and passes the previous result through after that.
pub const FAILING_CNI: &str = "crius-e2e-fail";

pub fn install_failing_cni(bin_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin_dir).expect("creating the test CNI bin dir");
    let marker = bin_dir.join("failed-once");
    let script = format!(
        r#"#!/usr/bin/env python3
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}}))
elif cmd == "ADD":
    if not os.path.exists("{marker}"):
        open("{marker}", "w").close()
        print(json.dumps({{"cniVersion": "1.0.0", "code": 999, "msg": "injected ADD failure"}}))
        sys.exit(1)
    print(json.dumps(conf.get("prevResult", {{}})))
"#,
        marker = marker.display()
    );
    let path = bin_dir.join(FAILING_CNI);
    std::fs::write(&path, script).expect("writing the failing CNI plugin");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod of the failing CNI plugin");
}

/// `conflist` with the failing plugin right after the bridge.
pub fn with_failing_plugin(conflist: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(conflist).expect("test conflist");
    let plugins = v["plugins"].as_array_mut().expect("plugins");
    plugins.insert(1, serde_json::json!({"type": FAILING_CNI}));
    v.to_string()
}

pub fn image(name: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: name.to_string(),
        ..Default::default()
    })
}

pub async fn pull(images: &mut Images, name: &str) -> String {
    images
        .pull_image(PullImageRequest {
            image: image(name),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage {name}: {e}"))
        .into_inner()
        .image_ref
}

pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pod as kubelet asks for one: own network, IPC and UTS, a PID namespace per
/// container, logs under the daemon's tempdir.
pub fn pod_config(d: &Daemon, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: d.paths.pod_log_dir(name).to_string_lossy().into_owned(),
        labels: labels(&[("app", name), ("suite", "e2e")]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod on the host's network: it needs no CNI, and leaves no veth that the leak check
/// could not tell apart from a container's.
pub fn host_network_pod(d: &Daemon, name: &str) -> PodSandboxConfig {
    let mut pod = pod_config(d, name);
    host_network(&mut pod);
    pod
}

pub fn host_network(pod: &mut PodSandboxConfig) {
    let linux = pod.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    });
}

/// A container running `command` in `image`, logging to `<name>.log` in the pod's log dir.
pub fn container_config(name: &str, image_name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: image(image_name),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: labels(&[("container", name)]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

pub fn log_path(pod: &PodSandboxConfig, c: &ContainerConfig) -> PathBuf {
    Path::new(&pod.log_directory).join(&c.log_path)
}

pub async fn run_pod(rt: &mut Runtime, config: &PodSandboxConfig) -> String {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"))
    .into_inner()
    .pod_sandbox_id
}

pub async fn create(
    rt: &mut Runtime,
    pod_id: &str,
    pod: &PodSandboxConfig,
    c: &ContainerConfig,
) -> Result<String, tonic::Status> {
    rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod_id.to_string(),
        config: Some(c.clone()),
        sandbox_config: Some(pod.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

pub async fn start(rt: &mut Runtime, id: &str) -> Result<(), tonic::Status> {
    rt.start_container(StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

pub async fn create_and_start(
    rt: &mut Runtime,
    pod_id: &str,
    pod: &PodSandboxConfig,
    c: &ContainerConfig,
) -> String {
    let id = create(rt, pod_id, pod, c)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}"));
    start(rt, &id)
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}"));
    id
}

pub async fn pod_status(rt: &mut Runtime, id: &str) -> PodSandboxStatus {
    rt.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"))
    .into_inner()
    .status
    .expect("PodSandboxStatus without status")
}

pub async fn container_status(rt: &mut Runtime, id: &str) -> ContainerStatus {
    rt.container_status(ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
    .into_inner()
    .status
    .expect("ContainerStatus without status")
}

pub async fn wait_state(
    rt: &mut Runtime,
    id: &str,
    state: ContainerState,
    within: Duration,
) -> ContainerStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = container_status(rt, id).await;
        if status.state == state as i32 {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} not {state:?} within {within:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn exec(
    rt: &mut Runtime,
    id: &str,
    cmd: &[&str],
    timeout_s: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    rt.exec_sync(ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: timeout_s,
    })
    .await
    .map(|r| r.into_inner())
}

/// `sh -c script` in the container: its exit code and stdout+stderr.
pub async fn sh(rt: &mut Runtime, id: &str, script: &str) -> (i32, String) {
    let r = exec(rt, id, &["sh", "-c", script], 10)
        .await
        .expect("ExecSync");
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, out)
}

pub async fn list_pods(rt: &mut Runtime, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
    rt.list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

pub async fn list_containers(rt: &mut Runtime) -> Vec<Container> {
    rt.list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// The gRPC code of a result, `Code::Ok` for success.
pub fn code<T>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// One line of a CRI log file: `<RFC 3339 time> <stdout|stderr> <F|P> <content>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub stream: String,
    pub full: bool,
    pub content: String,
}

/// Parses a CRI-format log, failing the test on any malformed line.
pub fn parse_log(text: &str) -> Vec<LogLine> {
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (time, stream, tag) = (parts.next(), parts.next(), parts.next());
            let content = parts.next().unwrap_or("");
            let time = time.unwrap_or("");
            assert!(
                chrono::DateTime::parse_from_rfc3339(time).is_ok(),
                "bad timestamp in log line {line:?}"
            );
            let stream = stream.unwrap_or("").to_string();
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream in log line {line:?}"
            );
            let tag = tag.unwrap_or("");
            assert!(tag == "F" || tag == "P", "bad tag in log line {line:?}");
            LogLine {
                stream,
                full: tag == "F",
                content: content.to_string(),
            }
        })
        .collect()
}

/// Waits until the log at `path` has a full line equal to `want` on `stream`.
pub async fn wait_log_line(path: &Path, stream: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = parse_log(&text);
        if lines
            .iter()
            .any(|l| l.stream == stream && l.full && l.content == want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {stream} line {want:?} in {} within {within:?}; log:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A self-signed P-256 certificate for localhost and 127.0.0.1, and its key, in `dir`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // An end-entity certificate: webpki refuses a CA's as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "openssl could not make a test certificate");
    (cert, key)
}
