//! Daemon configuration: one TOML file, every field defaulted and documented in
//! `DEFAULT_TOML` (what `crius config default` prints).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/crius/config.toml";

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// What follows `run_root` in a monitor socket path: `/pods/<64 hex id>/monitor.sock`.
const MONITOR_SOCKET_SUFFIX: usize = "/pods/".len() + 64 + "/monitor.sock".len();

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI socket.
    pub socket: PathBuf,
    /// Persistent state: images, pod and container records.
    pub root: PathBuf,
    /// Volatile state: namespace pins, bundles, monitor sockets.
    pub run_root: PathBuf,
    /// Cgroup under which every pod cgroup is created (relative to each hierarchy root).
    pub cgroup_parent: String,
    /// Where the cgroup hierarchies are mounted.
    pub cgroup_root: PathBuf,
    /// `tracing` filter for the daemon's stderr log.
    pub log_level: String,
    /// Longest CRI log line, in bytes; longer output lines are split into `P` pieces.
    pub max_container_log_line_size: u32,
    pub cni: CniConfig,
    pub registry: RegistryConfig,
    pub streaming: StreamingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// `host:port` of the streaming HTTP server; port 0 picks a free one.
    pub address: String,
    /// How long a URL returned by PortForward stays valid (it is also single use).
    pub token_ttl_seconds: u64,
    /// A streaming connection that moves no byte for this long is closed.
    pub idle_timeout_seconds: u64,
    /// Forwarded connections in flight at once, across all clients.
    pub max_streams: usize,
    /// PEM certificate chain for HTTPS; empty (with `tls_key_file`) for plain HTTP.
    pub tls_cert_file: PathBuf,
    /// PEM private key of the certificate's leaf.
    pub tls_key_file: PathBuf,
}

impl StreamingConfig {
    /// The certificate and key files, when the server is to speak TLS.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        (set(&self.tls_cert_file) && set(&self.tls_key_file))
            .then_some((&self.tls_cert_file, &self.tls_key_file))
    }

    fn validate(&self) -> Result<(), String> {
        if self.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "streaming.address must be ip:port, got {:?}",
                self.address
            ));
        }
        let set = [&self.tls_cert_file, &self.tls_key_file].map(|p| !p.as_os_str().is_empty());
        if set[0] != set[1] {
            return Err(
                "streaming.tls_cert_file and streaming.tls_key_file must be set together".into(),
            );
        }
        if set[0] && !(self.tls_cert_file.is_absolute() && self.tls_key_file.is_absolute()) {
            return Err("streaming.tls_cert_file and tls_key_file must be absolute paths".into());
        }
        if self.token_ttl_seconds == 0 || self.idle_timeout_seconds == 0 || self.max_streams == 0 {
            return Err("streaming timeouts and max_streams must be positive".into());
        }
        Ok(())
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".into(),
            token_ttl_seconds: 60,
            idle_timeout_seconds: 4 * 3600,
            max_streams: 128,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// The first network configuration (lexical order) in this directory is used.
    pub conf_dir: PathBuf,
    /// Directories searched for CNI plugin binaries.
    pub bin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// containerd `certs.d` layout: `<config_path>/<host>/hosts.toml`.
    pub config_path: PathBuf,
}

/// The longest log line a monitor buffers before it writes a partial line.
const MAX_LOG_LINE: u32 = 1 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: "/run/crius/crius.sock".into(),
            root: "/var/lib/crius".into(),
            run_root: "/run/crius".into(),
            cgroup_parent: "crius".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            log_level: "info".into(),
            max_container_log_line_size: 16 * 1024,
            cni: CniConfig::default(),
            registry: RegistryConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into()],
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: "/etc/crius/certs.d".into(),
        }
    }
}

/// The default configuration with a comment on every field. A unit test keeps it equal to
/// `Config::default()`.
pub const DEFAULT_TOML: &str = r#"# crius configuration. Every field is optional; shown are the defaults.

# The CRI gRPC socket (mode 0660, owner root).
socket = "/run/crius/crius.sock"
# Persistent state: image blobs and snapshots, pod and container records.
root = "/var/lib/crius"
# Volatile state: pinned namespaces, OCI bundles, monitor sockets. At most 24 bytes long,
# since per-pod monitor sockets under it must fit a Unix socket path.
run_root = "/run/crius"
# Cgroup under which pod cgroups are created, relative to each hierarchy root.
cgroup_parent = "crius"
# Where the cgroup hierarchies (v1 controllers or the v2 unified tree) are mounted.
cgroup_root = "/sys/fs/cgroup"
# Log filter for the daemon's stderr (tracing EnvFilter syntax; RUST_LOG overrides).
log_level = "info"
# Longest line of a container's CRI log, in bytes (containerd's setting of the same name);
# longer output is split into partial ("P") lines. Each monitor may buffer this much per
# container stream, so it is capped at 1 MiB.
max_container_log_line_size = 16384

[cni]
# The first network configuration (lexical order, .conflist/.conf/.json) is used.
conf_dir = "/etc/cni/net.d"
# Directories searched for CNI plugin binaries, in order.
bin_dirs = ["/opt/cni/bin"]

[registry]
# Registry host configuration in containerd's certs.d layout:
# <config_path>/<host>/hosts.toml with `server` and [host."<url>"] capabilities.
config_path = "/etc/crius/certs.d"

[streaming]
# The HTTP server that Exec/Attach/PortForward URLs point at: host:port, port 0 for a
# free one. Plain HTTP unless the TLS files below are set: keep it on localhost, where
# kubelet reaches it.
address = "127.0.0.1:0"
# A returned URL works once, and only for this long.
token_ttl_seconds = 60
# A streaming connection idle (no byte either way) this long is closed (kubelet's 4h).
idle_timeout_seconds = 14400
# Forwarded connections in flight at once; more are refused with an error message.
max_streams = 128
# HTTPS from a PEM certificate chain (leaf first) and its PEM private key (PKCS#8,
# PKCS#1 or SEC1); both or neither. The URLs are then https://. kubelet verifies the
# certificate against the host's trusted CAs and the address's IP or name; crictl
# verifies only when given --tls-ca.
tls_cert_file = ""
tls_key_file = ""
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; a missing file at the default location means all defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("socket", &self.socket),
            ("root", &self.root),
            ("run_root", &self.run_root),
            ("cgroup_root", &self.cgroup_root),
            ("cni.conf_dir", &self.cni.conf_dir),
            ("registry.config_path", &self.registry.config_path),
        ] {
            if !p.is_absolute() {
                return Err(format!("{name} must be an absolute path, got {p:?}"));
            }
        }
        let longest = self.run_root.as_os_str().len() + MONITOR_SOCKET_SUFFIX;
        if longest > MAX_SOCKET_PATH {
            return Err(format!(
                "run_root {:?} is too long: monitor sockets under it would need {longest} \
                 bytes, more than the {MAX_SOCKET_PATH} a Unix socket path may have",
                self.run_root
            ));
        }
        if !(64..=MAX_LOG_LINE).contains(&self.max_container_log_line_size) {
            return Err(format!(
                "max_container_log_line_size must be between 64 and {MAX_LOG_LINE} bytes"
            ));
        }
        self.streaming.validate()?;
        if self.cgroup_parent.split('/').any(|c| c == "..") {
            return Err("cgroup_parent must not contain '..'".into());
        }
        Ok(())
    }

    /// Directory layout derived from the roots; every module takes its paths from here.
    pub fn layout(&self) -> Layout {
        Layout {
            images: self.root.join("images"),
            pods: self.root.join("pods"),
            containers: self.root.join("containers"),
            pod_run: self.run_root.join("pods"),
            container_run: self.run_root.join("containers"),
            apparmor: self.run_root.join("apparmor"),
        }
    }
}

/// Where each kind of state lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Image store root (blobs, snapshots, image records).
    pub images: PathBuf,
    /// Persistent pod records: `<pods>/<id>/`.
    pub pods: PathBuf,
    /// Persistent container records, writable layers, exit records: `<containers>/<id>/`.
    pub containers: PathBuf,
    /// Volatile per-pod dir: namespace pins, monitor socket, resolv.conf, hosts.
    pub pod_run: PathBuf,
    /// Volatile per-container dir: the OCI bundle.
    pub container_run: PathBuf,
    /// The AppArmor profile crius generated and loaded: volatile, as the kernel's copy.
    pub apparmor: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_matches_defaults() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let parsed: Config = toml::from_str("root = \"/tmp/x\"\n[cni]\nbin_dirs=[\"/a\"]").unwrap();
        assert_eq!(parsed.root, PathBuf::from("/tmp/x"));
        assert_eq!(parsed.cni.bin_dirs, vec![PathBuf::from("/a")]);
        assert_eq!(parsed.cni.conf_dir, CniConfig::default().conf_dir);
        assert_eq!(parsed.socket, Config::default().socket);
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert!(toml::from_str::<Config>("sokcet = \"/x\"").is_err());
    }

    #[test]
    fn relative_paths_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "root = \"relative\"").unwrap();
        assert!(matches!(
            Config::load(&p, true),
            Err(ConfigError::Invalid { .. })
        ));
        std::fs::write(&p, format!("run_root = \"/{}\"", "r".repeat(30))).unwrap();
        assert!(matches!(
            Config::load(&p, true),
            Err(ConfigError::Invalid { .. })
        ));
        for bad in [
            "address = \"localhost\"",
            "max_streams = 0",
            "token_ttl_seconds = 0",
            "tls_cert_file = \"/etc/crius/tls.crt\"",
            "tls_key_file = \"/etc/crius/tls.key\"",
            "tls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"",
        ] {
            std::fs::write(&p, format!("[streaming]\n{bad}")).unwrap();
            assert!(matches!(
                Config::load(&p, true),
                Err(ConfigError::Invalid { .. })
            ));
        }
        std::fs::write(&p, "cgroup_parent = \"a/../b\"").unwrap();
        assert!(matches!(
            Config::load(&p, true),
            Err(ConfigError::Invalid { .. })
        ));
        for size in [0, 63, (1 << 20) + 1] {
            std::fs::write(&p, format!("max_container_log_line_size = {size}")).unwrap();
            assert!(matches!(
                Config::load(&p, true),
                Err(ConfigError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn missing_default_file_is_defaults_but_explicit_is_error() {
        let p = Path::new("/nonexistent/crius.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(matches!(
            Config::load(p, true),
            Err(ConfigError::Read { .. })
        ));
    }
}
