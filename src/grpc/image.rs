//! CRI ImageService.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{deadline, reply};
use crate::container::manager::ContainerManager;
use crate::error::Error;
use crate::image::{Image, ImageStore, RegistryAuth};

pub struct ImageApi {
    images: Arc<ImageStore>,
    containers: Arc<ContainerManager>,
}

impl ImageApi {
    pub fn new(images: Arc<ImageStore>, containers: Arc<ContainerManager>) -> Self {
        ImageApi { images, containers }
    }
}

type Rpc<T> = Result<Response<T>, Status>;

fn image_name(spec: Option<cri::ImageSpec>) -> Result<String, Error> {
    match spec.map(|s| s.image) {
        Some(i) if !i.is_empty() => Ok(i),
        _ => Err(Error::InvalidArgument("image name is required".into())),
    }
}

/// The CRI view of a stored image; uid/username come from the image's configured user.
fn to_cri(img: Image) -> cri::Image {
    let user = img
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let user_part = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user_part.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) => (None, user_part),
    };
    cri::Image {
        spec: Some(cri::ImageSpec {
            image: img.id.clone(),
            ..Default::default()
        }),
        id: img.id,
        repo_tags: img.repo_tags,
        repo_digests: img.repo_digests,
        size: img.size,
        uid,
        username,
        pinned: false,
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Rpc<cri::ListImagesResponse> {
        let wanted = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .unwrap_or_default();
        let images = if wanted.is_empty() {
            self.images.list()
        } else {
            self.images.get(&wanted).into_iter().collect()
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.into_iter().map(to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Rpc<cri::ImageStatusResponse> {
        let r = image_name(req.into_inner().image).map(|name| cri::ImageStatusResponse {
            image: self.images.get(&name).map(to_cri),
            ..Default::default()
        });
        reply(r)
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> Rpc<cri::PullImageResponse> {
        let deadline = deadline(&req);
        let req = req.into_inner();
        let auth = req.auth.map(|a| RegistryAuth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let r = async {
            let name = image_name(req.image)?;
            let pull = self
                .images
                .pull(&name, auth.as_ref())
                .instrument(tracing::info_span!("PullImage", image = %name));
            // Past the deadline the pull is dropped: blobs already verified stay in the
            // store (a partial download is removed), so a retry fetches only the rest.
            let img = match deadline {
                Some(at) => tokio::time::timeout_at(at, pull).await.map_err(|_| {
                    Error::Timeout(format!("pulling {name}: the client's deadline passed"))
                })??,
                None => pull.await?,
            };
            Ok(cri::PullImageResponse { image_ref: img.id })
        }
        .await;
        reply(r)
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Rpc<cri::RemoveImageResponse> {
        let r = async {
            let name = image_name(req.into_inner().image)?;
            let keep = self.containers.chain_ids_in_use()?;
            self.images.remove_image(name, keep).await?;
            Ok(cri::RemoveImageResponse {})
        }
        .await;
        reply(r)
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Rpc<cri::ImageFsInfoResponse> {
        let r = async {
            let u = self.images.fs_usage().await?;
            let usage = cri::FilesystemUsage {
                timestamp: crate::id::now_ns(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: u.mountpoint.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value {
                    value: u.used_bytes,
                }),
                inodes_used: Some(cri::UInt64Value {
                    value: u.inodes_used,
                }),
            };
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![usage],
                ..Default::default()
            })
        }
        .await;
        reply(r)
    }
}
