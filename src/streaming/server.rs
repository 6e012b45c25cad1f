//! The HTTP/1.1 side: the accept loop (and TLS handshake), `/portforward/<token>` and `/exec/<token>` routing, and the upgrade
//! to SPDY/3.1 or WebSocket. Everything after the upgrade belongs to `portforward`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::portforward::{self, Forwarder};
use super::{Exec, Pending, Shared, TlsAcceptor, exec_ws, remotecommand};

/// A client must send its request head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

pub async fn run(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "streaming accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Frames are small and each is written whole: Nagle would hold the last ones of
        // an exec (its stdout's end, then the exit) for the client's delayed ACK, ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY");
        }
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve(tcp, peer, shared).await;
            };
            // The handshake counts against the time a client has for its request head.
            match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => serve(stream, peer, shared).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until it ends or is upgraded.
async fn serve<IO>(io: IO, peer: SocketAddr, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| route(req, shared.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection ended");
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<String> {
    let mut r = Response::new(text.into());
    *r.status_mut() = status;
    r
}

async fn route(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<String>, Infallible> {
    let path = req.uri().path();
    let Some((kind, token)) = ["portforward", "exec", "attach"].into_iter().find_map(|k| {
        let rest = path.strip_prefix('/')?.strip_prefix(k)?.strip_prefix('/')?;
        Some((k, rest))
    }) else {
        return Ok(plain(StatusCode::NOT_FOUND, "no such streaming endpoint\n"));
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n"));
    }
    let request = match shared.tokens.take(token) {
        Some(Pending::PortForward(pf)) if kind == "portforward" => pf,
        Some(Pending::Exec(exec)) if kind == exec.endpoint() => {
            return Ok(exec_spdy(req, exec, &shared));
        }
        _ => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "unknown or expired streaming token\n",
            ));
        }
    };
    let fwd = Forwarder::new(request, &shared);
    if is_websocket(req.headers()) {
        return Ok(websocket(req, fwd));
    }
    Ok(spdy(req, fwd))
}

/// Exec over SPDY/3.1, its stream protocol negotiated as kubelet does (403 and the
/// protocols crius speaks when none fits). WebSocket is not served yet (501).
fn exec_spdy(mut req: Request<Incoming>, exec: Exec, shared: &Shared) -> Response<String> {
    if is_websocket(req.headers()) {
        return exec_websocket(req, exec, shared);
    }
    let offered = req
        .headers()
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(protocol) = remotecommand::negotiate(offered) else {
        let names: Vec<&str> = remotecommand::SPDY_PROTOCOLS.map(|p| p.name()).into();
        let msg = format!(
            "no supported stream protocol offered; supported: {}\n",
            names.join(", ")
        );
        let mut r = plain(StatusCode::FORBIDDEN, msg);
        for name in names {
            r.headers_mut()
                .append(ACCEPTED_PROTOCOLS_HEADER, HeaderValue::from_static(name));
        }
        return r;
    };
    if !has_token(req.headers(), header::UPGRADE, "SPDY/3.1") {
        return plain(StatusCode::BAD_REQUEST, "expected an upgrade to SPDY/3.1\n");
    }
    let idle = shared.idle;
    switch_to_spdy(&mut req, protocol.name(), move |io| {
        super::exec::run(io, exec, protocol, idle)
    })
}

/// Answers 101 with the chosen stream protocol and serves the upgraded connection with
/// `serve` on its own task.
fn switch_to_spdy<F, Fut>(
    req: &mut Request<Incoming>,
    protocol: &'static str,
    serve: F,
) -> Response<String>
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => serve(TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    r
}

/// Exec or attach over WebSocket, in one of `exec_ws::PROTOCOLS` (403 otherwise).
fn exec_websocket(mut req: Request<Incoming>, exec: Exec, shared: &Shared) -> Response<String> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = exec_ws::choose(&offered) else {
        let names: Vec<&str> = exec_ws::PROTOCOLS.iter().map(|p| p.name).collect();
        let msg = format!("supported: {}\n", names.join(", "));
        return plain(StatusCode::FORBIDDEN, msg);
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let idle = shared.idle;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => {
                exec_ws::run(TokioIo::new(io), exec, protocol, idle).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    switching(accept, Some(protocol.name).filter(|n| !n.is_empty()))
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, want: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(want))
    })
}

fn is_websocket(h: &HeaderMap) -> bool {
    has_token(h, header::CONNECTION, "upgrade") && has_token(h, header::UPGRADE, "websocket")
}

/// Switches to SPDY/3.1 with the `portforward.k8s.io` stream protocol (kubelet answers
/// 403 when the client offers no protocol it supports).
fn spdy(mut req: Request<Incoming>, fwd: Forwarder) -> Response<String> {
    if !has_token(req.headers(), header::UPGRADE, "SPDY/3.1") {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected an upgrade to SPDY/3.1 or websocket\n",
        );
    }
    if !has_token(
        req.headers(),
        header::HeaderName::from_static(STREAM_PROTOCOL_HEADER),
        PORT_FORWARD_PROTOCOL,
    ) {
        let msg =
            format!("no supported stream protocol offered; supported: {PORT_FORWARD_PROTOCOL}\n");
        return plain(StatusCode::FORBIDDEN, msg);
    }
    switch_to_spdy(&mut req, PORT_FORWARD_PROTOCOL, move |io| {
        portforward::spdy::run(io, fwd)
    })
}

/// Switches to WebSocket: SPDY tunneled in it if the client asks for that, else
/// kubelet's port-forward form with the ports in `?port=`.
fn websocket(mut req: Request<Incoming>, fwd: Forwarder) -> Response<String> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let protocol = portforward::websocket::choose_protocol(req.headers());
    let upgrade = hyper::upgrade::on(&mut req);
    if protocol == Some(portforward::tunnel::PROTOCOL) {
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => portforward::tunnel::run(TokioIo::new(io), fwd).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        return switching(accept, protocol);
    }
    let ports = match portforward::websocket::ports(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(msg) => return plain(StatusCode::BAD_REQUEST, format!("{msg}\n")),
    };
    let base64 = protocol.is_some_and(|p| p.contains("base64"));
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => portforward::websocket::run(TokioIo::new(io), ports, base64, fwd).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    switching(accept, protocol)
}

/// The 101 answer to a WebSocket upgrade.
fn switching(accept: String, protocol: Option<&'static str>) -> Response<String> {
    let mut r = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    r
}
