//! The CRI streaming server: `PortForward`, `Exec` and `Attach` answer with a URL on
//! this HTTP server, and kubelet or crictl connect to it. It shares nothing with
//! `grpc/` but [`Streaming`]: the RPC layer validates the pod, then stores the request
//! under a single-use token (`tokens`) and returns the URL naming it. `server` accepts
//! HTTP/1.1 and upgrades a request to SPDY/3.1 (`spdy/`) or WebSocket; `portforward/`
//! speaks kubelet's port-forward protocol over either and connects inside the pod's
//! network namespace. It listens on localhost by default, as kubelet expects of a local
//! runtime, in plain HTTP unless a certificate and key are configured (`tls`).

mod activity;
mod exec;
mod exec_ws;
mod portforward;
mod remotecommand;
mod server;
pub mod spdy;
mod tls;
mod tokens;
mod wschannel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
pub use tokio_rustls::TlsAcceptor;

use crate::config::StreamingConfig;
use crate::error::{Classify, Kind};

/// Where a pod's ports are: its own network namespace, or the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Host,
    Namespace(PathBuf),
}

/// A PortForward request waiting for its client.
#[derive(Debug, Clone)]
pub struct PortForward {
    pub pod_id: String,
    pub network: Network,
}

/// What a remote-command session does: run a command in the container, or attach to
/// the container's own stdio (both speak the same protocol).
#[derive(Debug, Clone)]
pub enum Command {
    Run(Vec<String>),
    Attach,
}

/// An Exec or Attach request waiting for its client: the RPC layer checked that the
/// container runs and that the command and the streams asked for make sense.
#[derive(Debug, Clone)]
pub struct Exec {
    /// The monitor of the container's pod, which runs the process or holds the stdio.
    pub monitor: crate::monitor::MonitorClient,
    pub container_id: String,
    pub command: Command,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Exec {
    /// Starts the command, or attaches, through the pod's monitor; the error is what
    /// the client reads on its error stream.
    async fn start(&self) -> Result<crate::monitor::StreamingExec, String> {
        let id = &self.container_id;
        match &self.command {
            Command::Run(cmd) => self
                .monitor
                .exec_stream(id, cmd.clone(), self.stdin, self.tty)
                .await
                .map_err(|e| format!("starting the command: {e}")),
            Command::Attach => self
                .monitor
                .attach(id, self.stdin, self.stdout, self.stderr)
                .await
                .map_err(|e| format!("attaching to the container: {e}")),
        }
    }

    /// The URL path's first part.
    fn endpoint(&self) -> &'static str {
        match self.command {
            Command::Run(_) => "exec",
            Command::Attach => "attach",
        }
    }
}

/// What a token stands for.
#[derive(Debug, Clone)]
enum Pending {
    PortForward(PortForward),
    Exec(Exec),
}

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("binding the streaming server to {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("too many streaming requests wait for their client ({0} at most)")]
    TooManyRequests(usize),
    #[error("drawing a random token: {0}")]
    Random(String),
    #[error("opening the pod's network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("joining the pod's network namespace {path}: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("connecting to port {port} on the pod's localhost: {source}")]
    Connect { port: u16, source: std::io::Error },
    #[error("the port-forward connect thread: {0}")]
    Thread(String),
    #[error("reading the streaming TLS file {path}: {source}")]
    TlsRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the streaming TLS file {path}: {message}")]
    Tls { path: PathBuf, message: String },
}

impl Classify for StreamingError {
    fn kind(&self) -> Kind {
        match self {
            StreamingError::TooManyRequests(_) => Kind::ResourceExhausted,
            StreamingError::Connect { .. } | StreamingError::Netns { .. } => Kind::Unavailable,
            _ => Kind::Internal,
        }
    }
}

/// What every connection of the server shares.
struct Shared {
    tokens: tokens::Tokens<Pending>,
    /// Forwarded connections in flight, across all clients.
    streams: Arc<Semaphore>,
    max_streams: usize,
    idle: Duration,
}

/// The handle the RPC layer holds: it issues URLs; the server runs on its own task.
pub struct Streaming {
    addr: SocketAddr,
    /// `https` when the server speaks TLS.
    scheme: &'static str,
    shared: Arc<Shared>,
}

/// The TLS acceptor for the configured certificate and key, or `None` for plain HTTP.
/// The daemon loads it before anything else, so that a bad file stops it at once.
pub async fn load_tls(cfg: &StreamingConfig) -> Result<Option<TlsAcceptor>, StreamingError> {
    match cfg.tls() {
        Some((cert, key)) => tls::acceptor(cert, key).await.map(Some),
        None => Ok(None),
    }
}

/// Requests waiting for their client at once.
const MAX_WAITING: usize = 1000;

impl Streaming {
    /// Binds the configured address and serves until the runtime stops, over TLS with
    /// `tls` (see [`load_tls`]).
    pub async fn start(
        cfg: &StreamingConfig,
        tls: Option<TlsAcceptor>,
    ) -> Result<Streaming, StreamingError> {
        let listener = tokio::net::TcpListener::bind(&cfg.address)
            .await
            .map_err(|source| StreamingError::Bind {
                addr: cfg.address.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StreamingError::Bind {
                addr: cfg.address.clone(),
                source,
            })?;
        let shared = Arc::new(Shared {
            tokens: tokens::Tokens::new(Duration::from_secs(cfg.token_ttl_seconds), MAX_WAITING),
            streams: Arc::new(Semaphore::new(cfg.max_streams)),
            max_streams: cfg.max_streams,
            idle: Duration::from_secs(cfg.idle_timeout_seconds),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(server::run(listener, shared.clone(), tls));
        tracing::info!(%addr, scheme, "serving CRI streaming");
        Ok(Streaming {
            addr,
            scheme,
            shared,
        })
    }

    /// The URL a client connects to for this port-forward, valid once.
    pub fn port_forward_url(&self, request: PortForward) -> Result<String, StreamingError> {
        let token = self.shared.tokens.insert(Pending::PortForward(request))?;
        Ok(format!(
            "{}://{}/portforward/{token}",
            self.scheme, self.addr
        ))
    }

    /// The URL a client connects to for this exec or attach, valid once.
    pub fn exec_url(&self, request: Exec) -> Result<String, StreamingError> {
        let endpoint = request.endpoint();
        let token = self.shared.tokens.insert(Pending::Exec(request))?;
        Ok(format!(
            "{}://{}/{endpoint}/{token}",
            self.scheme, self.addr
        ))
    }
}
