//! A real crius daemon for one test: its own config, state dirs, socket, cgroup parent and
//! CNI network, started from the binary cargo built, and torn down with a leak check.
//!
//! Every daemon with a network takes an exclusive `flock` on [`NET_LOCK`] for its whole
//! life: they all share the bridge `criuse2e0` and the subnet 10.89.0.0/24, so only one may
//! exist at a time on the machine (other worktrees run these tests too). Daemons without a
//! network (image tests, the NetworkReady=false check) run in parallel.

use crate::leaks::{self, Scope};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Runtime = RuntimeServiceClient<Channel>;
pub type Images = ImageServiceClient<Channel>;

/// The crius binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_crius");
pub const BRIDGE: &str = "criuse2e0";
pub const SUBNET_PREFIX: &str = "10.89.0.";
pub const REGISTRY: &str = "127.0.0.1:5000";
const NET_LOCK: &str = "/run/crius-e2e.lock";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle daemon must exit this soon after SIGTERM, even with clients connected
/// (kubelet never closes its connection).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines of the daemon log a failing test prints.
const LOG_TAIL: usize = 200;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// What kind of daemon a test needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Write the test bridge network into the CNI conf dir (and take the network lock).
    pub network: bool,
    /// Failure injection: the daemon's `CRIUS_FAULTS` (src/fault.rs), e.g.
    /// `"overlay-mount:1"`.
    pub faults: &'static str,
    /// Add a plugin after the bridge that fails its first ADD (fixtures::FAILING_CNI).
    pub failing_cni: bool,
    /// `max_container_log_line_size`; `None` leaves the daemon's default.
    pub max_log_line: Option<u32>,
    /// `streaming.token_ttl_seconds`; `None` leaves the daemon's default.
    pub token_ttl: Option<u64>,
    /// Serve streaming over TLS with a self-signed certificate for localhost and
    /// 127.0.0.1 that openssl makes: `tls.crt` and `tls.key` in `Paths::dir`.
    pub tls: bool,
}

/// Where one daemon keeps everything.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The tempdir holding root, config, CNI and pod log dirs.
    pub dir: PathBuf,
    pub root: PathBuf,
    /// `/run/ce2e-<pid>-<n>`: short, because the monitor sockets under it
    /// (`<run_root>/pods/<64 hex>/monitor.sock`) must fit in a Unix socket path
    /// (107 bytes), which leaves 24 for run_root. The CRI socket is in it too.
    pub run_root: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    pub cni_conf_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

pub struct Daemon {
    pub paths: Paths,
    options: Options,
    child: Option<Child>,
    dir: Option<TempDir>,
    _net_lock: Option<Flock<File>>,
}

impl Daemon {
    /// A daemon with the test network.
    pub async fn start() -> Daemon {
        Daemon::start_with(Options {
            network: true,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Daemon {
        let net_lock = options.network.then(take_net_lock);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("crius-e2e-")
            .tempdir()
            .expect("creating the test tempdir");
        let paths = Paths::new(dir.path(), std::process::id(), n);
        write_config(&paths, options);
        let mut daemon = Daemon {
            paths,
            options,
            child: None,
            dir: Some(dir),
            _net_lock: net_lock,
        };
        daemon.spawn().await;
        daemon
    }

    async fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.log)
            .expect("opening the daemon log");
        let child = Command::new(BINARY)
            .env("CRIUS_FAULTS", self.options.faults)
            .arg("--config")
            .arg(&self.paths.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup of the daemon log"))
            .stderr(log)
            .spawn()
            .expect("spawning crius");
        self.child = Some(child);
        self.wait_for_socket().await;
    }

    async fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("crius exited during startup ({status})");
            }
            if tokio::net::UnixStream::connect(&self.paths.socket)
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "crius did not listen on {} within {START_TIMEOUT:?}",
                self.paths.socket.display(),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn channel(&self) -> Channel {
        let socket = self.paths.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .expect("static endpoint URI")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .expect("connecting to the crius socket")
    }

    pub async fn runtime(&self) -> Runtime {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn images(&self) -> Images {
        ImageServiceClient::new(self.channel().await)
    }

    /// SIGKILL the daemon (not its monitors), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the daemon again on the same config and state.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// SIGTERM, then SIGKILL if the daemon has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        if !self.stop_within(STOP_TIMEOUT) {
            eprintln!("crius ignored SIGTERM for {STOP_TIMEOUT:?}; killed it");
        }
    }

    /// SIGTERM, then SIGKILL after `limit`. True if SIGTERM alone stopped the daemon
    /// (or it was not running).
    pub fn stop_within(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.paths.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn scope(&self) -> Scope {
        Scope {
            dirs: vec![self.paths.dir.clone(), self.paths.run_root.clone()],
            root: self.paths.root.clone(),
            run_root: self.paths.run_root.clone(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: self.paths.cgroup_parent.clone(),
            bridge: self.options.network.then(|| BRIDGE.to_string()),
            binary: PathBuf::from(BINARY),
        }
    }

    /// The end of every test: remove every pod and container through CRI, stop the
    /// daemon gracefully, and assert that nothing was left behind.
    pub async fn teardown(mut self) {
        if self.child.is_some() {
            remove_everything(&mut self.runtime().await).await;
            self.stop();
        }
        // On failure, Drop prints the daemon log and cleans up by force.
        leaks::assert_no_leaks(&self.scope());
    }
}

impl Drop for Daemon {
    /// Whatever happened in the test, stop the daemon (gracefully, then by force) and
    /// leave the machine clean; the tempdir is deleted only when nothing is mounted under
    /// it any more.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!("--- crius log, last {} lines", tail.len());
            eprintln!("{}", tail.join("\n"));
        }
        self.stop();
        let clean = leaks::force_cleanup(&self.scope());
        let dir = self.dir.take();
        if clean {
            let _ = fs::remove_dir_all(&self.paths.run_root);
        } else if let Some(dir) = dir {
            // Deleting recursively would reach through what is still mounted.
            eprintln!(
                "mounts remain under {} or {}; keeping both",
                dir.keep().display(),
                self.paths.run_root.display()
            );
        }
    }
}

impl Paths {
    fn new(dir: &Path, pid: u32, n: usize) -> Paths {
        let run_root = PathBuf::from(format!("/run/ce2e-{pid}-{n}"));
        Paths {
            dir: dir.to_path_buf(),
            root: dir.join("root"),
            socket: run_root.join("crius.sock"),
            run_root,
            cgroup_parent: format!("crius-e2e-{pid}-{n}"),
            cni_conf_dir: dir.join("cni"),
            config: dir.join("config.toml"),
            log: dir.join("crius.log"),
        }
    }

    /// A pod log directory, created as kubelet would.
    pub fn pod_log_dir(&self, pod: &str) -> PathBuf {
        let dir = self.dir.join("logs").join(pod);
        fs::create_dir_all(&dir).expect("creating the pod log dir");
        dir
    }
}

fn take_net_lock() -> Flock<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(NET_LOCK)
        .expect("opening the e2e network lock");
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("locking the e2e network lock")
}

fn write_config(paths: &Paths, options: Options) {
    // A dir of the same name can only be a leftover of a crashed run with the same pid.
    let _ = fs::remove_dir_all(&paths.run_root);
    fs::create_dir_all(&paths.run_root).expect("creating run_root");
    fs::create_dir_all(&paths.cni_conf_dir).expect("creating the CNI conf dir");
    let certs = paths.dir.join("certs.d");
    write_mirrors(&certs);
    let cni_bin = paths.dir.join("cni-bin");
    if options.failing_cni {
        crate::fixtures::install_failing_cni(&cni_bin);
    }
    if options.network {
        let mut conflist = crate::fixtures::test_conflist(&paths.dir.join("ipam"));
        if options.failing_cni {
            conflist = crate::fixtures::with_failing_plugin(&conflist);
        }
        fs::write(paths.cni_conf_dir.join("10-e2e.conflist"), conflist)
            .expect("writing the test conflist");
    }
    let level = std::env::var("CRIUS_E2E_LOG").unwrap_or_else(|_| "info,crius=debug".into());
    let q = |p: &Path| toml::Value::String(path_str(p)).to_string();
    let config = format!(
        "socket = {}\nroot = {}\nrun_root = {}\ncgroup_parent = {}\n\
         cgroup_root = \"/sys/fs/cgroup\"\nlog_level = {}\n{}\n\
         [cni]\nconf_dir = {}\nbin_dirs = [\"/opt/cni/bin\", \"/usr/lib/cni\", {}]\n\n\
         [registry]\nconfig_path = {}\n{}",
        q(&paths.socket),
        q(&paths.root),
        q(&paths.run_root),
        toml::Value::String(paths.cgroup_parent.clone()),
        toml::Value::String(level),
        options.max_log_line.map_or(String::new(), |n| format!(
            "max_container_log_line_size = {n}\n"
        )),
        q(&paths.cni_conf_dir),
        q(&cni_bin),
        q(&certs),
        streaming_section(paths, options),
    );
    fs::write(&paths.config, config).expect("writing the test config");
}

/// `[streaming]`, when the options change it.
fn streaming_section(paths: &Paths, options: Options) -> String {
    let mut section = String::from("\n[streaming]\n");
    if let Some(n) = options.token_ttl {
        section += &format!("token_ttl_seconds = {n}\n");
    }
    if options.tls {
        let (cert, key) = crate::fixtures::self_signed(&paths.dir);
        let q = |p: &Path| toml::Value::String(path_str(p)).to_string();
        section += &format!("tls_cert_file = {}\ntls_key_file = {}\n", q(&cert), q(&key));
    }
    section
}

/// The same mirrors as hack/mirrors.sh, plus plain HTTP for the registry's own name.
fn write_mirrors(certs: &Path) {
    let mirror = format!("http://{REGISTRY}");
    for (host, server) in [
        ("docker.io", "https://registry-1.docker.io"),
        ("registry.k8s.io", "https://registry.k8s.io"),
        ("k8s.gcr.io", "https://k8s.gcr.io"),
        ("gcr.io", "https://gcr.io"),
        (REGISTRY, mirror.as_str()),
    ] {
        let dir = certs.join(host);
        fs::create_dir_all(&dir).expect("creating a certs.d host dir");
        let mut f = File::create(dir.join("hosts.toml")).expect("creating hosts.toml");
        writeln!(
            f,
            "server = \"{server}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]"
        )
        .expect("writing hosts.toml");
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

/// Stop and remove every pod and container the daemon knows, as kubelet would.
async fn remove_everything(rt: &mut Runtime) {
    use crate::fixtures::{list_containers, list_pods};
    use k8s_cri::v1::{RemoveContainerRequest, RemovePodSandboxRequest, StopPodSandboxRequest};
    for c in list_containers(rt).await {
        let container_id = c.id;
        rt.remove_container(RemoveContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer {container_id} during teardown: {e}"));
    }
    for p in list_pods(rt, None).await {
        let pod_sandbox_id = p.id;
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        };
        rt.stop_pod_sandbox(stop)
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {pod_sandbox_id} during teardown: {e}"));
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.clone(),
        };
        rt.remove_pod_sandbox(remove)
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {pod_sandbox_id} during teardown: {e}"));
    }
}

/// Whether the test can run here: root is needed, and so is the local registry when
/// `registry` is set. Outside CI a missing prerequisite skips the test with a message;
/// in CI (CI=true) it fails it.
pub fn preflight(test: &str, registry: bool) -> bool {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("not running as root".to_string())
    } else if registry && !registry_up() {
        Some(format!(
            "no registry on {REGISTRY} (run hack/registry.sh && hack/images.sh)"
        ))
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if in_ci => panic!("{test}: {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn registry_up() -> bool {
    let Ok(addr) = REGISTRY.parse() else {
        return false;
    };
    let Ok(mut conn) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// crictl, a client crius did not write (client-go's SPDY and WebSocket executors).
pub const CRICTL: &str = "/usr/local/bin/crictl";

/// [`preflight`] for a test that drives crictl; such tests are skipped, even in CI,
/// where crictl is not installed (it is not packaged in Debian 12).
pub fn crictl_preflight(test: &str) -> bool {
    if !preflight(test, true) {
        return false;
    }
    let present = Path::new(CRICTL).exists();
    if !present {
        eprintln!("skipping {test}: {CRICTL} is not installed");
    }
    present
}

/// A crictl command talking to `d` for both services (crictl checks the image
/// service too, and would otherwise take the machine's crictl.yaml or defaults).
pub fn crictl(d: &Daemon) -> Command {
    let mut cmd = Command::new(CRICTL);
    cmd.args(crictl_endpoints(d));
    cmd
}

/// crictl's endpoint flags for `d`.
pub fn crictl_endpoints(d: &Daemon) -> [String; 4] {
    let endpoint = format!("unix://{}", d.paths.socket.display());
    ["-r".into(), endpoint.clone(), "-i".into(), endpoint]
}
