//! The daemon's side of the monitor protocol (tokio). One connection per call: calls are
//! rare and a fresh connection makes a dead monitor show at once as `Unavailable`.

use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::MonitorError;
use super::frame::{self, MAX_RESPONSE};
use super::proto::{self, request::Kind as Req, response::Kind as Resp};

/// Bound on calls other than exec (create mounts a rootfs; Shutdown waits up to 10 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Added to an exec's own timeout: the monitor replies only after killing and reaping.
const EXEC_SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct MonitorClient {
    socket: PathBuf,
}

impl MonitorClient {
    pub fn new(socket: PathBuf) -> Self {
        MonitorClient { socket }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The monitor's pid.
    pub async fn ping(&self) -> Result<i32, MonitorError> {
        match self
            .call("ping", Req::Ping(proto::Ping {}), Some(CALL_TIMEOUT))
            .await?
        {
            Resp::Pong(p) => Ok(p.pid),
            other => Err(unexpected("ping", &other)),
        }
    }

    pub async fn create(&self, req: proto::CreateContainer) -> Result<(), MonitorError> {
        self.call_ok("create", Req::Create(req)).await
    }

    pub async fn start(&self, id: &str) -> Result<(), MonitorError> {
        let req = Req::Start(proto::StartContainer { id: id.into() });
        self.call_ok("start", req).await
    }

    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), MonitorError> {
        let req = Req::Kill(proto::KillContainer {
            id: id.into(),
            signal,
        });
        self.call_ok("kill", req).await
    }

    pub async fn state(&self, id: &str) -> Result<proto::State, MonitorError> {
        let req = Req::State(proto::ContainerState { id: id.into() });
        match self.call("state", req, Some(CALL_TIMEOUT)).await? {
            Resp::State(s) => Ok(s),
            other => Err(unexpected("state", &other)),
        }
    }

    /// Runs `args` in the container; `timeout` zero means none. A timed-out exec is
    /// killed and reported with `timed_out` set, not as an error.
    pub async fn exec_sync(
        &self,
        id: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<proto::ExecResult, MonitorError> {
        let req = Req::ExecSync(proto::ExecSync {
            id: id.into(),
            args,
            timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
        });
        let limit = (!timeout.is_zero()).then(|| timeout + EXEC_SLACK);
        match self.call("exec_sync", req, limit).await? {
            Resp::Exec(r) => Ok(r),
            other => Err(unexpected("exec_sync", &other)),
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), MonitorError> {
        let req = Req::Delete(proto::DeleteContainer { id: id.into() });
        self.call_ok("delete", req).await
    }

    /// Reopens the container's log file at its path (after kubelet rotated it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), MonitorError> {
        let req = Req::ReopenLog(proto::ReopenLog { id: id.into() });
        self.call_ok("reopen log", req).await
    }

    /// Kills every container and makes the monitor exit.
    pub async fn shutdown(&self) -> Result<(), MonitorError> {
        self.call_ok("shutdown", Req::Shutdown(proto::Shutdown {}))
            .await
    }

    /// An exit feed: the ids of this pod's containers as the monitor reaps them.
    pub async fn subscribe(&self) -> Result<ExitFeed, MonitorError> {
        let req = proto::Request {
            kind: Some(Req::Subscribe(proto::Subscribe {})),
        };
        let connected = async {
            let mut stream = self.connect().await?;
            let resp = self.send_and_read(&mut stream, &req).await?;
            Ok::<_, MonitorError>((stream, resp))
        };
        let (stream, resp) = tokio::time::timeout(CALL_TIMEOUT, connected)
            .await
            .map_err(|_| MonitorError::Timeout {
                socket: self.socket.clone(),
                waited: CALL_TIMEOUT,
            })??;
        match resp.kind {
            Some(Resp::Ok(_)) => Ok(ExitFeed {
                stream,
                socket: self.socket.clone(),
            }),
            Some(Resp::Error(e)) => Err(remote_error(e)),
            Some(other) => Err(unexpected("subscribe", &other)),
            None => Err(MonitorError::UnexpectedResponse {
                request: "subscribe",
                got: "an empty response",
            }),
        }
    }

    async fn call_ok(&self, name: &'static str, req: Req) -> Result<(), MonitorError> {
        match self.call(name, req, Some(CALL_TIMEOUT)).await? {
            Resp::Ok(_) => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }

    /// One request/response exchange, with monitor-side errors turned into variants.
    async fn call(
        &self,
        name: &'static str,
        req: Req,
        limit: Option<Duration>,
    ) -> Result<Resp, MonitorError> {
        let exchange = self.exchange(proto::Request { kind: Some(req) });
        let resp =
            match limit {
                Some(t) => tokio::time::timeout(t, exchange).await.map_err(|_| {
                    MonitorError::Timeout {
                        socket: self.socket.clone(),
                        waited: t,
                    }
                })??,
                None => exchange.await?,
            };
        match resp.kind {
            Some(Resp::Error(e)) => Err(remote_error(e)),
            Some(kind) => Ok(kind),
            None => Err(MonitorError::UnexpectedResponse {
                request: name,
                got: "an empty response",
            }),
        }
    }

    async fn exchange(&self, req: proto::Request) -> Result<proto::Response, MonitorError> {
        let mut stream = self.connect().await?;
        self.send_and_read(&mut stream, &req).await
    }

    pub(super) async fn connect(&self) -> Result<UnixStream, MonitorError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| MonitorError::Unavailable {
                socket: self.socket.clone(),
                source,
            })
    }

    async fn send_and_read(
        &self,
        stream: &mut UnixStream,
        req: &proto::Request,
    ) -> Result<proto::Response, MonitorError> {
        stream
            .write_all(&frame::encode(req))
            .await
            .map_err(|source| MonitorError::Unavailable {
                socket: self.socket.clone(),
                source,
            })?;
        read_response(stream, &self.socket).await
    }
}

/// Reads one response frame.
pub(super) async fn read_response(
    stream: &mut UnixStream,
    socket: &std::path::Path,
) -> Result<proto::Response, MonitorError> {
    let unavailable = |source| MonitorError::Unavailable {
        socket: socket.to_owned(),
        source,
    };
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await.map_err(unavailable)?;
    let len = frame::body_len(header, MAX_RESPONSE).map_err(|t| MonitorError::FrameTooLarge {
        len: t.len,
        limit: t.limit,
    })?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.map_err(unavailable)?;
    Ok(proto::Response::decode(&body[..])?)
}

/// A subscription to a monitor's container exits (see `Subscribe` in monitor.proto).
#[derive(Debug)]
pub struct ExitFeed {
    stream: UnixStream,
    socket: PathBuf,
}

impl ExitFeed {
    /// The id of the next container that exited; `None` once the monitor closed the feed
    /// (it exited).
    pub async fn next(&mut self) -> Result<Option<String>, MonitorError> {
        let resp = match read_response(&mut self.stream, &self.socket).await {
            Ok(r) => r,
            Err(MonitorError::Unavailable { source, .. })
                if source.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match resp.kind {
            Some(Resp::Exited(e)) => Ok(Some(e.id)),
            Some(other) => Err(unexpected("subscribe", &other)),
            None => Err(MonitorError::UnexpectedResponse {
                request: "subscribe",
                got: "an empty response",
            }),
        }
    }
}

pub(super) fn remote_error(e: proto::Error) -> MonitorError {
    use proto::error::Code;
    match Code::try_from(e.code).unwrap_or(Code::Internal) {
        Code::NotFound => MonitorError::NotFound(e.message),
        Code::InvalidArgument => MonitorError::InvalidArgument(e.message),
        Code::FailedPrecondition => MonitorError::FailedPrecondition(e.message),
        Code::AlreadyExists => MonitorError::AlreadyExists(e.message),
        Code::Internal => MonitorError::Internal(e.message),
    }
}

pub(super) fn unexpected(request: &'static str, got: &Resp) -> MonitorError {
    let got = match got {
        Resp::Error(_) => "Error",
        Resp::Ok(_) => "Ok",
        Resp::Pong(_) => "Pong",
        Resp::State(_) => "State",
        Resp::Exec(_) => "ExecResult",
        Resp::Exited(_) => "ContainerExited",
        Resp::ExecStarted(_) => "ExecStarted",
        Resp::ExecExited(_) => "ExecExited",
        Resp::AttachStarted(_) => "AttachStarted",
        Resp::AttachEnded(_) => "AttachEnded",
    };
    MonitorError::UnexpectedResponse { request, got }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, Kind};

    #[test]
    fn remote_codes_map_to_kinds() {
        use proto::error::Code;
        let cases = [
            (Code::NotFound, Kind::NotFound),
            (Code::InvalidArgument, Kind::InvalidArgument),
            (Code::FailedPrecondition, Kind::FailedPrecondition),
            (Code::AlreadyExists, Kind::AlreadyExists),
            (Code::Internal, Kind::Internal),
        ];
        for (code, kind) in cases {
            let e = remote_error(proto::Error {
                code: code as i32,
                message: "m".into(),
            });
            assert_eq!(e.kind(), kind, "{code:?}");
        }
        let unknown = remote_error(proto::Error {
            code: 99,
            message: "m".into(),
        });
        assert_eq!(unknown.kind(), Kind::Internal);
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable() {
        let t = tempfile::tempdir().unwrap();
        let c = MonitorClient::new(t.path().join("monitor.sock"));
        let e = c.ping().await.unwrap_err();
        assert_eq!(e.kind(), Kind::Unavailable, "{e}");
    }
}
