//! The CRI gRPC layer: thin translation between CRI messages and domain calls. Each
//! handler opens a span with the ids it was given, calls one domain method and lets
//! `From<Error> for Status` (status.rs) pick the code.

mod image;
mod runtime;
mod serve;
mod status;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tracing::info;

use crate::container::manager::ContainerManager;
use crate::error::{Error, Result, task_failed};
use crate::image::ImageStore;
use crate::sandbox::manager::PodManager;

pub use image::ImageApi;
pub use runtime::RuntimeApi;

/// ExecSync output may be up to 16 MiB per stream; leave room for both.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub struct Services {
    pub config: crate::config::Config,
    pub pods: Arc<PodManager>,
    pub containers: Arc<ContainerManager>,
    pub images: Arc<ImageStore>,
    pub streaming: Arc<crate::streaming::Streaming>,
}

/// Binds the CRI socket (mode 0660), replacing a stale socket file but never a live one
/// or anything that is not a socket.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::FailedPrecondition(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::FailedPrecondition(format!(
                "another daemon is serving on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| Error::io("removing stale socket", path, e))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| Error::io("binding", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| Error::io("chmod", path, e))?;
    Ok(listener)
}

/// Serves CRI on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    services: Services,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let stats = crate::stats::Stats::new(
        services.pods.clone(),
        services.containers.clone(),
        &services.images,
    );
    let runtime = RuntimeApi::new(
        services.pods.clone(),
        services.containers.clone(),
        Arc::new(stats),
        services.streaming.clone(),
    )
    .with_config(&services.config);
    let image = ImageApi::new(services.images.clone(), services.containers.clone());
    let routes = tonic::service::Routes::new(
        RuntimeServiceServer::new(runtime)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(
        ImageServiceServer::new(image)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .prepare();
    info!("serving CRI");
    serve::serve(listener, routes, shutdown).await
}

/// The client's deadline for this call, if it sent one.
fn deadline<T>(req: &tonic::Request<T>) -> Option<tokio::time::Instant> {
    req.extensions().get::<serve::Deadline>().map(|d| d.0)
}

/// Runs a state-changing call to completion even if its caller goes away. tonic drops
/// the handler future when the client's deadline passes or the stream is reset; a
/// RunPodSandbox cut off between acquiring resources and recording them (or half way
/// through its rollback) would leak them and keep the name reserved.
async fn to_completion<T, F>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(fut)
        .await
        .map_err(|e| task_failed("request", e))?
}

/// Wraps a domain result as a gRPC reply.
fn reply<T>(r: Result<T>) -> std::result::Result<tonic::Response<T>, tonic::Status> {
    r.map(tonic::Response::new).map_err(|e| {
        tracing::debug!(error = %e, "request failed");
        e.into()
    })
}
