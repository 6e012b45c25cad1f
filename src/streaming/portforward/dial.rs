//! Connecting to a port on the pod's localhost. `setns` changes only the calling
//! thread, so a pod's connection is made on a short-lived thread that joins the pinned
//! network namespace, connects and exits; the socket keeps its namespace and is handed
//! to tokio. Host-network pods connect on the host.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use tokio::net::TcpStream;

use crate::streaming::{Network, StreamingError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on localhost in `network`. 127.0.0.1 first, then ::1.
pub async fn dial(network: &Network, port: u16) -> Result<TcpStream, StreamingError> {
    let stream = match network {
        Network::Host => tokio::task::spawn_blocking(move || connect(port)).await,
        Network::Namespace(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || connect_in(&path, port)).await
        }
    };
    let stream = stream.map_err(|e| StreamingError::Thread(e.to_string()))??;
    stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(stream))
        .map_err(|source| StreamingError::Connect { port, source })
}

fn connect(port: u16) -> Result<StdStream, StreamingError> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    StdStream::connect_timeout(&v4, CONNECT_TIMEOUT)
        .or_else(|first| {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            StdStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| first)
        })
        .map_err(|source| StreamingError::Connect { port, source })
}

/// Blocking: joins `netns` on a thread of its own and connects there.
fn connect_in(netns: &Path, port: u16) -> Result<StdStream, StreamingError> {
    let ns = File::open(netns).map_err(|source| StreamingError::Netns {
        path: netns.into(),
        source,
    })?;
    let path: PathBuf = netns.into();
    std::thread::Builder::new()
        .name("netns-dial".into())
        .spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|source| StreamingError::Setns { path, source })?;
            connect(port)
        })
        .map_err(|e| StreamingError::Thread(e.to_string()))?
        .join()
        .map_err(|_| StreamingError::Thread("the netns dial thread panicked".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_in_the_namespace_it_is_given_and_reports_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Our own namespace through the setns thread, and the host path.
        let own = Network::Namespace("/proc/self/ns/net".into());
        dial(&own, port).await.unwrap();
        dial(&Network::Host, port).await.unwrap();
        drop(listener);
        let e = dial(&Network::Host, port).await.unwrap_err();
        assert!(e.to_string().contains(&format!("port {port}")), "{e}");
        let gone = Network::Namespace("/nonexistent/netns".into());
        assert!(matches!(
            dial(&gone, port).await,
            Err(StreamingError::Netns { .. })
        ));
    }
}
