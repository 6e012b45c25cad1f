//! The HTTP/2 server under the CRI services: one task per connection, a client deadline
//! carried to the handlers, and a graceful stop.
//!
//! tonic's own `transport::Server` answers a call whose `grpc-timeout` has passed with
//! `Cancelled` and drops the handler. kubelet and critest expect `DeadlineExceeded`, and
//! a handler cut off at an arbitrary await leaves half-done work. So the deadline is read
//! here into a [`Deadline`] request extension instead, and each handler decides what it
//! means: a pull stops and says `DeadlineExceeded`; state-changing calls run to the end
//! (`to_completion`), as a grpc-go server's handlers do when they ignore the context.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;
use tokio::time::Instant;
use tonic::service::Routes;
use tower_service::Service;
use tracing::{debug, warn};

/// When the client stops waiting for this call, from its `grpc-timeout` header.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn with_deadline(mut req: http::Request<Incoming>) -> http::Request<Incoming> {
    let timeout = req
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_timeout);
    if let Some(t) = timeout {
        req.extensions_mut().insert(Deadline(Instant::now() + t));
    }
    req
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets calls in flight
/// finish (the caller bounds how long it waits for that).
pub async fn serve(
    listener: UnixListener,
    routes: Routes,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: keep serving the connections we have.
                    warn!(error = %e, "accepting a CRI connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let routes = routes.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut routes = routes.clone();
            async move { routes.call(with_deadline(req)).await }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "CRI connection ended");
            }
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("500u"), Some(Duration::from_micros(500)));
        assert_eq!(
            parse_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }
}
