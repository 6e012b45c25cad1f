//! Pods in a user namespace of their own (POD mode, one mapping 0 → 1000): the container
//! sees the mapping, is root inside, writes its id-mapped rootfs (as host uid 1000), and
//! keeps working across a daemon restart; a pod-wide PID namespace works too; Status
//! announces the support. Refusals are in security.rs.

use crate::fixtures::*;
use crate::harness::{Daemon, Runtime, preflight};
use k8s_cri::v1::*;
use std::os::unix::fs::MetadataExt;

/// kubelet's options for a POD user namespace, on the pod and repeated on the container.
fn userns_options(pid: NamespaceMode) -> NamespaceOption {
    let map = IdMapping {
        host_id: 1000,
        container_id: 0,
        length: 100000,
    };
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![map],
            gids: vec![map],
        }),
        ..Default::default()
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// A pod config and a container config (running `sleep`) with those options.
fn configs(d: &Daemon, image: &str, pid: NamespaceMode) -> (PodSandboxConfig, ContainerConfig) {
    let mut pod = pod_config(d, "userns");
    let linux = pod.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(userns_options(pid));
    let mut c = container_config("c", image, &["sleep", "1000"]);
    let linux = c.linux.get_or_insert_with(Default::default);
    let csc = linux.security_context.get_or_insert_with(Default::default);
    csc.namespace_options = Some(userns_options(pid));
    (pod, c)
}

async fn remove_pod(rt: &mut Runtime, pod_id: &str) {
    let id = pod_id.to_string();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pod_user_namespace_maps_root_and_survives_a_restart() {
    if !preflight(
        "a_pod_user_namespace_maps_root_and_survives_a_restart",
        true,
    ) {
        return;
    }
    let mut d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let status = rt.status(StatusRequest { verbose: true }).await.unwrap();
    let status = status.into_inner();
    let features = status.runtime_handlers[0].features.unwrap_or_default();
    assert!(
        features.user_namespaces,
        "Status does not announce user namespaces"
    );
    // critest checks id-mapping itself on the parent of `stateDir` (containerd's
    // field): the image store, where the id-mapped layers live.
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    let state_dir = std::path::Path::new(config["stateDir"].as_str().unwrap());
    assert_eq!(
        state_dir.parent(),
        Some(d.paths.root.join("images").as_path())
    );

    let (pod, c) = configs(&d, &busybox, NamespaceMode::Container);
    let pod_id = run_pod(&mut rt, &pod).await;
    let c_id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let script = "cat /proc/self/uid_map; id -u; echo hi > /probe && cat /probe; stat -c %u /bin";
    let (code, out) = sh(&mut rt, &c_id, script).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        words(&out),
        ["0", "1000", "100000", "0", "hi", "0"],
        "{out}"
    );
    let hostname = sh(&mut rt, &c_id, "hostname").await.1;
    assert_eq!(hostname.trim(), "userns");
    // What the namespace's root wrote lands in the upper dir as the mapped host id.
    let upper = d.paths.root.join("containers").join(&c_id).join("upper");
    let owner = std::fs::metadata(upper.join("probe")).unwrap();
    assert_eq!((owner.uid(), owner.gid()), (1000, 1000));

    d.kill9();
    d.restart().await;
    let mut rt = d.runtime().await;
    let script = "cat /proc/self/uid_map; cat /probe; echo again > /probe2 && cat /probe2";
    let (code, out) = sh(&mut rt, &c_id, script).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(words(&out), ["0", "1000", "100000", "hi", "again"], "{out}");
    let c2 = container_config("c2", &busybox, &["sleep", "1000"]);
    let mut c2 = c2;
    c2.linux = c.linux.clone();
    let c2_id = create_and_start(&mut rt, &pod_id, &pod, &c2).await;
    assert_eq!(sh(&mut rt, &c2_id, "id -u").await.1.trim(), "0");

    remove_pod(&mut rt, &pod_id).await;
    d.teardown().await;
}

/// A pod-wide PID namespace (critest's default) is owned by the pod's user namespace:
/// the container's root mounts /proc, sees the pod init as pid 1, and exec works. Its
/// volume is id-mapped: a host root file (0600) is root's inside, and what root writes
/// there is host root's; a volume whose filesystem cannot be id-mapped (procfs) is
/// refused with that reason and leaves nothing behind.
#[tokio::test]
async fn a_pod_user_namespace_with_a_pod_wide_pid_namespace_and_a_volume() {
    if !preflight(
        "a_pod_user_namespace_with_a_pod_wide_pid_namespace_and_a_volume",
        true,
    ) {
        return;
    }
    let d = Daemon::start().await;
    let busybox = pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let (pod, mut c) = configs(&d, &busybox, NamespaceMode::Pod);
    let pod_id = run_pod(&mut rt, &pod).await;
    let vol = d.paths.dir.join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("secret"), "s3cret").unwrap();
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(vol.join("secret"), private).unwrap();
    let volume = |host: &str| Mount {
        container_path: "/vol".into(),
        host_path: host.into(),
        ..Default::default()
    };
    let mut refused = c.clone();
    refused.mounts = vec![volume("/proc/sys/kernel")];
    let err = create(&mut rt, &pod_id, &pod, &refused).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("cannot id-map"), "{err}");
    assert!(list_containers(&mut rt).await.is_empty());
    assert!(crate::mounts::container_mounts(&d).is_empty());

    c.mounts = vec![volume(&vol.to_string_lossy())];
    let c_id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let script = "cat /proc/1/comm; cat /proc/self/uid_map; id -u; \
                  stat -c %u /vol/secret; cat /vol/secret; echo; echo x > /vol/new";
    let (code, out) = sh(&mut rt, &c_id, script).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        words(&out),
        ["crius-pod-init", "0", "1000", "100000", "0", "0", "s3cret"],
        "{out}"
    );
    let new = std::fs::metadata(vol.join("new")).unwrap();
    assert_eq!((new.uid(), new.gid()), (0, 0));
    remove_pod(&mut rt, &pod_id).await;
    d.teardown().await;
}
