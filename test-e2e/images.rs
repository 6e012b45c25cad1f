//! ImageService: pulls through the mirrors, list, status, remove, pull errors, and the
//! image filesystem's usage.

use crate::fixtures::*;
use crate::harness::{Daemon, Images, Options, REGISTRY, preflight};
use k8s_cri::v1::*;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tonic::Code;

async fn image_daemon() -> Daemon {
    Daemon::start_with(Options::default()).await
}

async fn status(images: &mut Images, name: &str) -> Option<Image> {
    images
        .image_status(ImageStatusRequest {
            image: image(name),
            verbose: false,
        })
        .await
        .unwrap_or_else(|e| panic!("ImageStatus {name}: {e}"))
        .into_inner()
        .image
}

async fn list(images: &mut Images) -> Vec<Image> {
    images
        .list_images(ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images
}

async fn pull_result(images: &mut Images, name: &str) -> Result<String, tonic::Status> {
    images
        .pull_image(PullImageRequest {
            image: image(name),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test]
async fn image_pull_list_status_remove() {
    if !preflight("image_pull_list_status_remove", true) {
        return;
    }
    let d = image_daemon().await;
    let mut img = d.images().await;

    assert!(
        status(&mut img, BUSYBOX).await.is_none(),
        "nothing pulled yet"
    );
    let busybox_ref = pull(&mut img, BUSYBOX).await;
    assert!(!busybox_ref.is_empty());
    let pause_ref = pull(&mut img, PAUSE).await;
    assert_ne!(busybox_ref, pause_ref);

    let all = list(&mut img).await;
    let tags: Vec<&str> = all
        .iter()
        .flat_map(|i| i.repo_tags.iter().map(String::as_str))
        .collect();
    assert!(tags.contains(&BUSYBOX_FULL), "tags {tags:?}");
    assert!(tags.contains(&PAUSE), "tags {tags:?}");

    let st = status(&mut img, BUSYBOX).await.expect("busybox after pull");
    assert_eq!(
        st.id, busybox_ref,
        "ImageStatus id is the ref PullImage returned"
    );
    assert!(st.size > 0);
    assert!(st.repo_tags.iter().any(|t| t == BUSYBOX_FULL), "{st:?}");
    assert!(
        st.repo_digests
            .iter()
            .any(|t| t.contains("busybox@sha256:")),
        "{st:?}"
    );
    // By full name and by id, the same image.
    assert_eq!(
        status(&mut img, BUSYBOX_FULL).await.map(|i| i.id),
        Some(st.id.clone())
    );
    assert_eq!(
        status(&mut img, &busybox_ref).await.map(|i| i.id),
        Some(st.id.clone())
    );

    img.remove_image(RemoveImageRequest {
        image: image(BUSYBOX),
    })
    .await
    .expect("RemoveImage busybox");
    assert!(status(&mut img, BUSYBOX).await.is_none(), "busybox removed");
    assert!(status(&mut img, PAUSE).await.is_some(), "pause kept");
    assert_eq!(list(&mut img).await.len(), all.len() - 1);
    // RemoveImage is idempotent.
    img.remove_image(RemoveImageRequest {
        image: image(BUSYBOX),
    })
    .await
    .expect("second RemoveImage busybox");
    d.teardown().await;
}

/// OCI manifest, Docker schema 2, OCI index, Docker manifest list (images.sh pushes one
/// of each under crius-test/busybox), a two-layer image, and the registry by its own
/// name.
#[tokio::test]
async fn pulls_every_manifest_format() {
    if !preflight("pulls_every_manifest_format", true) {
        return;
    }
    let d = image_daemon().await;
    let mut img = d.images().await;
    let by_format = [
        "docker.io/crius-test/busybox:oci",
        "docker.io/crius-test/busybox:docker",
        "docker.io/crius-test/busybox:oci-index",
        "docker.io/crius-test/busybox:docker-list",
    ];
    let mut ids = Vec::new();
    for name in by_format.iter().copied().chain([
        E2E_BUSYBOX,
        PAUSE,
        LAYERS,
        &format!("{REGISTRY}/crius-test/busybox:oci"),
    ]) {
        let r = pull(&mut img, name).await;
        let st = status(&mut img, name)
            .await
            .unwrap_or_else(|| panic!("{name} pulled but ImageStatus says absent"));
        assert_eq!(st.id, r, "{name}");
        ids.push(r);
    }
    // An index resolves to the same image as the manifest it points at.
    assert_eq!(ids[0], ids[2], "OCI index and its manifest");
    assert_eq!(ids[1], ids[3], "Docker list and its manifest");
    // Pulling again is cheap and idempotent.
    let again = pull(&mut img, by_format[2]).await;
    assert_eq!(again, ids[2]);
    d.teardown().await;
}

#[tokio::test]
async fn pull_errors() {
    if !preflight("pull_errors", true) {
        return;
    }
    let d = image_daemon().await;
    let mut img = d.images().await;
    for missing in [
        format!("{REGISTRY}/crius-test/does-not-exist:1"),
        format!("{REGISTRY}/library/busybox:no-such-tag"),
    ] {
        let r = pull_result(&mut img, &missing).await;
        assert_eq!(code(&r), Code::NotFound, "{missing}: {r:?}");
    }
    for bad in [
        "docker.io/library/BusyBox:1",
        "busybox@sha256:not-hex",
        "busybox:bad tag",
        "",
    ] {
        let r = pull_result(&mut img, bad).await;
        assert_eq!(code(&r), Code::InvalidArgument, "{bad:?}: {r:?}");
        let st = img
            .image_status(ImageStatusRequest {
                image: image(bad),
                verbose: false,
            })
            .await;
        // containerd answers "not found" (image: None) for a malformed name; an error
        // saying it is malformed is as good.
        match &st {
            Ok(r) => assert!(r.get_ref().image.is_none(), "ImageStatus {bad:?}: {st:?}"),
            Err(e) => assert_eq!(e.code(), Code::InvalidArgument, "ImageStatus {bad:?}"),
        }
    }
    assert!(
        list(&mut img).await.is_empty(),
        "failed pulls stored nothing"
    );
    d.teardown().await;
}

/// The daemon's own answer to a PullImage sent with `grpc-timeout: 1m`, over raw
/// HTTP/2: tonic's client would enforce the deadline itself (answering Cancelled) and
/// hide the server's answer, which is what grpc-go clients (kubelet, critest) may see.
async fn pull_with_deadline(d: &Daemon, name: &str) -> String {
    use http_body_util::BodyExt;
    use prost::Message;
    let stream = tokio::net::UnixStream::connect(&d.paths.socket)
        .await
        .expect("connecting to the crius socket");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let msg = PullImageRequest {
        image: image(name),
        ..Default::default()
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let req = http::Request::post("http://localhost/runtime.v1.ImageService/PullImage")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "1m")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .expect("request");
    let resp = send.send_request(req).await.expect("PullImage response");
    let status = resp.headers().get("grpc-status").cloned();
    let body = resp.into_body().collect().await.expect("response body");
    let status = status.or_else(|| body.trailers().and_then(|t| t.get("grpc-status").cloned()));
    status
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .unwrap_or_default()
}

/// A pull the client stops waiting for answers DeadlineExceeded (kubelet and critest
/// expect that code, not Cancelled), stores no image, and the retry without a deadline
/// succeeds.
#[tokio::test]
async fn pull_past_the_client_deadline_is_deadline_exceeded() {
    if !preflight("pull_deadline", true) {
        return;
    }
    let d = image_daemon().await;
    let mut img = d.images().await;
    let code = pull_with_deadline(&d, LAYERS).await;
    assert_eq!(
        code,
        (Code::DeadlineExceeded as i32).to_string(),
        "grpc-status"
    );
    assert!(
        status(&mut img, LAYERS).await.is_none(),
        "no image after a cut pull"
    );
    pull(&mut img, LAYERS).await;
    assert!(status(&mut img, LAYERS).await.is_some());
    d.teardown().await;
}

/// ImageFsInfo's (mountpoint, used bytes, inodes used).
async fn fs_info(images: &mut Images) -> (PathBuf, u64, u64) {
    let r = images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    assert_eq!(r.image_filesystems.len(), 1, "{r:?}");
    let u = &r.image_filesystems[0];
    let mountpoint = u.fs_id.as_ref().map(|f| f.mountpoint.clone());
    let value = |v: Option<UInt64Value>| v.map(|v| v.value).expect("a usage figure");
    (
        PathBuf::from(mountpoint.expect("a mountpoint")),
        value(u.used_bytes),
        value(u.inodes_used),
    )
}

/// What `du` counts: allocated bytes and inodes, symlinks not followed, hard links once.
fn walk(root: &Path) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat in the image store");
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
            inodes += 1;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("listing the image store") {
                stack.push(e.expect("a directory entry").path());
            }
        }
    }
    (bytes, inodes)
}

/// The daemon is idle between calls here, so its figure must be exactly the walk's.
async fn assert_fs_info_is_walk(d: &Daemon, step: &str) {
    let (mountpoint, bytes, inodes) = fs_info(&mut d.images().await).await;
    assert_eq!(mountpoint, d.paths.root.join("images"), "{step}");
    assert_eq!(
        (bytes, inodes),
        walk(&mountpoint),
        "ImageFsInfo after {step}"
    );
}

/// ImageFsInfo counts what pulls add and removals delete, and a restarted daemon (after
/// SIGTERM or SIGKILL) rebuilds the same figure from what it stored.
#[tokio::test]
async fn image_fs_info_matches_a_walk_of_the_store() {
    if !preflight("image_fs_info_matches_a_walk_of_the_store", true) {
        return;
    }
    let mut d = image_daemon().await;
    let mut img = d.images().await;
    assert_fs_info_is_walk(&d, "start").await;
    for name in [BUSYBOX, E2E_BUSYBOX, LAYERS, PAUSE] {
        pull(&mut img, name).await;
    }
    assert_fs_info_is_walk(&d, "pulls").await;
    let (_, pulled, _) = fs_info(&mut img).await;
    img.remove_image(RemoveImageRequest {
        image: image(BUSYBOX),
    })
    .await
    .expect("RemoveImage busybox");
    assert_fs_info_is_walk(&d, "a removal").await;
    let (_, removed, _) = fs_info(&mut img).await;
    assert!(
        removed < pulled,
        "removal freed nothing: {removed} >= {pulled}"
    );
    drop(img);

    d.restart().await;
    assert_fs_info_is_walk(&d, "a restart").await;
    pull(&mut d.images().await, BUSYBOX).await;
    assert_fs_info_is_walk(&d, "a pull after restart").await;
    d.kill9();
    d.restart().await;
    assert_fs_info_is_walk(&d, "kill -9 and restart").await;
    d.teardown().await;
}
