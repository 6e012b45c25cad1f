//! Optional TLS for the streaming server: a PEM certificate chain and key from the
//! config, read once at start. rustls with its `ring` provider: the registry client
//! (reqwest) already links both, so serving TLS adds no crate to the build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use super::StreamingError;

/// The acceptor for `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1).
pub async fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, StreamingError> {
    let chain = read(cert).await?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no PEM certificate".into()));
    }
    let key_pem = read(key).await?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e: rustls::Error| bad(key, format!("does not go with the certificate: {e}")))?;
    // Upgrades to SPDY and WebSocket are HTTP/1.1 only; Go's upgrade dialer asks for it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn read(path: &Path) -> Result<Vec<u8>, StreamingError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| StreamingError::TlsRead {
            path: path.into(),
            source,
        })
}

fn bad(path: &Path, message: String) -> StreamingError {
    StreamingError::Tls {
        path: PathBuf::from(path),
        message,
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
