//! Images: references, registry pulls, content-addressed blobs, per-layer snapshots.
//!
//! On disk under the store root:
//! - `blobs/sha256/<hex>`: verified configs and compressed layers;
//! - `ingest/`: downloads in progress (removed on open);
//! - `snapshots/<chain id hex>/fs`: one unpacked layer each, shared by all images and
//!   stacked as overlay lowerdirs; built in `snapshots/.tmp-*` and renamed into place;
//!   beside it, `usage`: the snapshot's disk use, measured once before the rename;
//! - `images/<id hex>.json`: one record per image.

mod auth;
mod blobs;
pub mod hosts;
mod lease;
mod manifest;
pub mod reference;
mod registry;
mod store;
#[cfg(test)]
mod testreg;
mod unpack;
mod usage;

pub use store::ImageStore;
pub use usage::{Figure, measure};

use crate::error::{Classify, Kind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An image as the CRI sees it; `id` is `sha256:<config digest hex>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Compressed layer sizes plus the config: what `crictl images` shows.
    pub size: u64,
    pub config: oci_spec::image::ImageConfiguration,
    /// Layer chain ids, bottom layer first.
    pub chain_ids: Vec<String>,
    /// Compressed layer blob digests, bottom first (kept so removal can collect them).
    #[serde(default)]
    pub layer_digests: Vec<String>,
}

/// Credentials as CRI's `AuthConfig` carries them.
#[derive(Clone, Debug, Default)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    /// base64 of `user:pass`.
    pub auth: String,
    /// An OAuth2 refresh token, exchanged at the token realm.
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
}

/// Disk use of the store's directories, for `ImageFsInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    #[error("invalid registry credentials: {0}")]
    InvalidAuth(&'static str),
    #[error("registry host configuration: {0}")]
    Hosts(#[from] hosts::HostsError),
    #[error("no registry host of {registry} may {action} (check hosts.toml capabilities)")]
    NoUsableHost {
        registry: String,
        action: &'static str,
    },
    #[error("{what} not found in registry ({url})")]
    NotFound { what: String, url: String },
    #[error("no manifest for platform {platform} in image index of {reference}")]
    NoMatchingPlatform { reference: String, platform: String },
    #[error("registry refused access to {url} (HTTP {status})")]
    Unauthorized { url: String, status: u16 },
    #[error("registry returned HTTP {status} for {url}")]
    Registry { url: String, status: u16 },
    #[error("requesting {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("TLS material {path}: {source}")]
    Tls {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("bad authentication challenge from {url}: {reason}")]
    BadChallenge { url: String, reason: String },
    #[error("content of {expected} has digest {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("content of {digest} is larger than its descriptor's {expected} bytes")]
    TooLarge { digest: String, expected: u64 },
    #[error("decoding {what}: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
    #[error("malformed image {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("layer {layer} uses {compression} compression, which is not supported yet")]
    UnsupportedCompression {
        layer: String,
        compression: &'static str,
    },
    #[error("layer {layer}: unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        layer: String,
        entry: PathBuf,
        reason: &'static str,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("image store task failed: {0}")]
    Task(String),
    #[error("measuring image store usage failed: {0}")]
    Usage(String),
}

impl ImageError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }
}

impl Classify for ImageError {
    fn kind(&self) -> Kind {
        use ImageError as E;
        match self {
            E::InvalidReference(_) | E::InvalidAuth(_) => Kind::InvalidArgument,
            E::NotFound { .. } | E::NoMatchingPlatform { .. } => Kind::NotFound,
            // Retrying with the same credentials or configuration cannot succeed: the
            // caller (or the node's operator) has to change something first.
            E::Unauthorized { .. } | E::Hosts(_) | E::NoUsableHost { .. } | E::Tls { .. } => {
                Kind::FailedPrecondition
            }
            E::Registry { .. } | E::Http { .. } | E::BadChallenge { .. } => Kind::Unavailable,
            E::UnsupportedMediaType(_) | E::UnsupportedCompression { .. } => Kind::Unimplemented,
            E::DigestMismatch { .. }
            | E::TooLarge { .. }
            | E::Decode { .. }
            | E::Malformed { .. }
            | E::UnsafeEntry { .. }
            | E::Io { .. }
            | E::Task(_)
            | E::Usage(_) => Kind::Internal,
            E::Store(e) => e.kind(),
        }
    }
}
