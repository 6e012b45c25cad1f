//! Image volumes (CRI `Mount.image`, Kubernetes ImageVolume): a pulled image mounted
//! read-only, whole or a sub path, reported with its image id, released on removal,
//! rollback and after a daemon restart; and the requests that are refused.

use crate::fixtures::*;
use crate::harness::{Daemon, Options, preflight};
use crate::mounts::container_mounts;
use k8s_cri::v1::*;
use tonic::Code;

fn image_mount(container: &str, image_ref: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: container.into(),
        readonly: true,
        image: Some(ImageSpec {
            image: image_ref.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn image_volumes() {
    if !preflight("image_volumes", true) {
        return;
    }
    // The spec step fails once after the volumes are mounted: rollback must release them.
    let mut d = Daemon::start_with(Options {
        faults: "container-spec:1",
        ..Options::default()
    })
    .await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "imagevol");
    let pod_id = run_pod(&mut rt, &pod).await;
    let mut c = container_config("main", &busybox, &["sleep", "1000"]);
    c.mounts = vec![
        image_mount("/mnt/image", &busybox, ""),
        image_mount("/mnt/etc", &busybox, "etc"),
    ];
    let err = create(&mut rt, &pod_id, &pod, &c)
        .await
        .expect_err("injected");
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(
        container_mounts(&d).is_empty(),
        "{:?}",
        container_mounts(&d)
    );

    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let status = container_status(&mut rt, &id).await;
    let reported: Vec<_> = status.mounts.iter().map(|m| m.image.clone()).collect();
    for image in reported {
        assert_eq!(image.expect("image").image_ref, busybox);
    }
    let checks: [(&[&str], bool); 5] = [
        (&["ls", "/mnt/image/bin/sh"], true),
        (&["/mnt/image/bin/ls", "/mnt/image"], true),
        (&["touch", "/mnt/image/x"], false),
        (&["ls", "/mnt/etc/passwd"], true),
        (&["ls", "/mnt/etc/etc"], false),
    ];
    for (cmd, ok) in checks {
        let r = exec(&mut rt, &id, cmd, 10).await.expect("ExecSync");
        assert_eq!(r.exit_code == 0, ok, "{cmd:?}: {r:?}");
    }
    assert_eq!(volume_mounts(&d, &id), 2);

    // The volumes outlive a daemon crash and are released by the removal after it.
    d.kill9();
    d.restart().await;
    let mut rt = d.runtime().await;
    assert_eq!(volume_mounts(&d, &id), 2);
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert_eq!(volume_mounts(&d, &id), 0);
    assert!(
        container_mounts(&d).is_empty(),
        "{:?}",
        container_mounts(&d)
    );
    d.teardown().await;
}

/// Image volume mounts of container `id` in the host's mount table.
fn volume_mounts(d: &Daemon, id: &str) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = d.paths.run_root.join("containers").join(id).join("volumes");
    let prefix = prefix.to_string_lossy();
    info.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| p.starts_with(prefix.as_ref()))
        })
        .count()
}

#[tokio::test]
async fn image_volume_refusals() {
    if !preflight("image_volume_refusals", true) {
        return;
    }
    let d = Daemon::start_with(Options::default()).await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let pod = host_network_pod(&d, "imagevol-bad");
    let pod_id = run_pod(&mut rt, &pod).await;
    let absent = format!("sha256:{}", "0".repeat(64));
    let mut writable = image_mount("/v", &busybox, "");
    writable.readonly = false;
    let cases = [
        (image_mount("/v", &absent, ""), Code::NotFound, "not found"),
        (
            image_mount("/v", &busybox, "no-such-dir"),
            Code::InvalidArgument,
            "does not exist",
        ),
        (
            image_mount("/v", &busybox, "etc/passwd"),
            Code::InvalidArgument,
            "not a directory",
        ),
        (
            image_mount("/v", &busybox, "etc/../../x"),
            Code::InvalidArgument,
            "'..'",
        ),
        (writable, Code::InvalidArgument, "readonly"),
    ];
    for (m, code, says) in cases {
        let mut c = container_config("bad", &busybox, &["true"]);
        c.mounts = vec![m];
        let err = create(&mut rt, &pod_id, &pod, &c).await.expect_err(says);
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(says), "{err}");
        assert!(list_containers(&mut rt).await.is_empty());
        assert!(
            container_mounts(&d).is_empty(),
            "{:?}",
            container_mounts(&d)
        );
    }
    d.teardown().await;
}
