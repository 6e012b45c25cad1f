//! kubelet's retry contract, as one table: every RPC that names an object, asked about an
//! object that does not exist, about one already in the state asked for, and twice at
//! once. The answers are cri-api's `api.proto` comments, and containerd's where those
//! are silent.

use crate::fixtures::*;
use crate::harness::{Daemon, Images, Runtime, preflight};
use k8s_cri::v1::*;
use tonic::{Code, Status};

/// An id no object has.
const ABSENT: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rpc {
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    PodSandboxStatus,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    ContainerStatus,
    ExecSync,
    UpdateContainerResources,
    ReopenContainerLog,
    ContainerStats,
    PullImage,
    ImageStatus,
    RemoveImage,
}

/// Which object a row asks about.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    /// An id (or image) that does not exist.
    Absent,
    /// An object already in the state the call asks for (or, for creates, one with the
    /// same name).
    Already,
    /// Two identical requests at the same time, on a fresh object.
    Twice,
}

/// What a row must answer; for `Twice`, the pair of answers in either order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Code(Code),
    Pair(Code, Code),
}

use Case::*;
use Rpc::*;
use Want::Pair;
const OK: Want = Want::Code(Code::Ok);
const NOT_FOUND: Want = Want::Code(Code::NotFound);

const TABLE: &[(Rpc, Case, Want)] = &[
    (RunPodSandbox, Already, Want::Code(Code::AlreadyExists)),
    (RunPodSandbox, Twice, Pair(Code::Ok, Code::AlreadyExists)),
    (StopPodSandbox, Absent, OK),
    (StopPodSandbox, Already, OK),
    (StopPodSandbox, Twice, Pair(Code::Ok, Code::Ok)),
    (RemovePodSandbox, Absent, OK),
    (RemovePodSandbox, Twice, Pair(Code::Ok, Code::Ok)),
    (PodSandboxStatus, Absent, NOT_FOUND),
    (PodSandboxStatus, Twice, Pair(Code::Ok, Code::Ok)),
    (CreateContainer, Absent, NOT_FOUND),
    (CreateContainer, Already, Want::Code(Code::AlreadyExists)),
    (CreateContainer, Twice, Pair(Code::Ok, Code::AlreadyExists)),
    (StartContainer, Absent, NOT_FOUND),
    (
        StartContainer,
        Already,
        Want::Code(Code::FailedPrecondition),
    ),
    (
        StartContainer,
        Twice,
        Pair(Code::Ok, Code::FailedPrecondition),
    ),
    (StopContainer, Absent, OK),
    (StopContainer, Already, OK),
    (StopContainer, Twice, Pair(Code::Ok, Code::Ok)),
    (RemoveContainer, Absent, OK),
    (RemoveContainer, Twice, Pair(Code::Ok, Code::Ok)),
    (ContainerStatus, Absent, NOT_FOUND),
    (ContainerStatus, Twice, Pair(Code::Ok, Code::Ok)),
    (ExecSync, Absent, NOT_FOUND),
    (ExecSync, Already, Want::Code(Code::FailedPrecondition)),
    (UpdateContainerResources, Absent, NOT_FOUND),
    // Exited: nothing left to limit (containerd answers the same).
    (
        UpdateContainerResources,
        Already,
        Want::Code(Code::FailedPrecondition),
    ),
    (UpdateContainerResources, Twice, Pair(Code::Ok, Code::Ok)),
    // Not built yet: it says so for any id.
    (ReopenContainerLog, Absent, NOT_FOUND),
    // Stopped: an error, and no new log file (api.proto).
    (
        ReopenContainerLog,
        Already,
        Want::Code(Code::FailedPrecondition),
    ),
    (ReopenContainerLog, Twice, Pair(Code::Ok, Code::Ok)),
    (ContainerStats, Absent, NOT_FOUND),
    (PullImage, Already, OK),
    (PullImage, Twice, Pair(Code::Ok, Code::Ok)),
    (ImageStatus, Absent, OK),
    (RemoveImage, Absent, OK),
    (RemoveImage, Twice, Pair(Code::Ok, Code::Ok)),
];

struct World {
    d: Daemon,
    rt: Runtime,
    im: Images,
    n: usize,
}

impl World {
    fn pod(&mut self) -> PodSandboxConfig {
        self.n += 1;
        pod_config(&self.d, &format!("idem-{}", self.n))
    }

    fn ctr(&mut self, command: &[&str]) -> ContainerConfig {
        self.n += 1;
        container_config(&format!("c{}", self.n), BUSYBOX, command)
    }

    async fn ready_pod(&mut self) -> (String, PodSandboxConfig) {
        let pod = self.pod();
        (run_pod(&mut self.rt, &pod).await, pod)
    }

    /// A container in a ready pod: created, and started if `start`.
    async fn container(&mut self, command: &[&str], start: bool) -> String {
        let (pod_id, pod) = self.ready_pod().await;
        let c = self.ctr(command);
        let id = create(&mut self.rt, &pod_id, &pod, &c)
            .await
            .expect("CreateContainer");
        if start {
            fixtures_start(&mut self.rt, &id).await;
        }
        id
    }

    async fn exited(&mut self) -> String {
        let id = self.container(&["true"], true).await;
        let within = std::time::Duration::from_secs(20);
        wait_state(&mut self.rt, &id, ContainerState::ContainerExited, within).await;
        id
    }
}

async fn fixtures_start(rt: &mut Runtime, id: &str) {
    start(rt, id).await.expect("StartContainer");
}

/// The request of a row, ready to send (possibly twice).
#[derive(Clone)]
enum Req {
    Run(Box<PodSandboxConfig>),
    Pod(String),
    Create(Box<(String, PodSandboxConfig, ContainerConfig)>),
    Ctr(String),
    Image(String),
}

/// Brings the world into the row's case and returns the request to send.
async fn prepare(w: &mut World, rpc: Rpc, case: Case) -> Req {
    let pod_rpc = matches!(rpc, StopPodSandbox | RemovePodSandbox | PodSandboxStatus);
    match (rpc, case) {
        (RunPodSandbox, Already) => {
            let (_, pod) = w.ready_pod().await;
            Req::Run(Box::new(pod))
        }
        (RunPodSandbox, _) => Req::Run(Box::new(w.pod())),
        (_, Absent) if pod_rpc => Req::Pod(ABSENT.into()),
        (StopPodSandbox, Already) => {
            let (id, _) = w.ready_pod().await;
            stop_pod(&mut w.rt, &id).await.expect("StopPodSandbox");
            Req::Pod(id)
        }
        (_, _) if pod_rpc => Req::Pod(w.ready_pod().await.0),
        (CreateContainer, Absent) => {
            let (c, pod) = (w.ctr(&["sleep", "60"]), w.pod());
            Req::Create(Box::new((ABSENT.into(), pod, c)))
        }
        (CreateContainer, _) => {
            let (pod_id, pod) = w.ready_pod().await;
            let c = w.ctr(&["sleep", "60"]);
            if case == Already {
                create(&mut w.rt, &pod_id, &pod, &c).await.expect("create");
            }
            Req::Create(Box::new((pod_id, pod, c)))
        }
        (PullImage | ImageStatus | RemoveImage, Absent) => {
            Req::Image(format!("{}/crius-test/absent:1", crate::harness::REGISTRY))
        }
        (PullImage, Twice) => Req::Image(E2E_BUSYBOX.into()),
        (PullImage | ImageStatus | RemoveImage, _) => {
            pull(&mut w.im, E2E_BUSYBOX).await;
            Req::Image(E2E_BUSYBOX.into())
        }
        (_, Absent) => Req::Ctr(ABSENT.into()),
        (StartContainer, Already) => Req::Ctr(w.container(&["sleep", "60"], true).await),
        (StopContainer | ExecSync | ReopenContainerLog | UpdateContainerResources, Already) => {
            Req::Ctr(w.exited().await)
        }
        (StartContainer, _) => Req::Ctr(w.container(&["sleep", "60"], false).await),
        (_, _) => Req::Ctr(w.container(&["sleep", "60"], true).await),
    }
}

async fn stop_pod(rt: &mut Runtime, id: &str) -> Result<(), Status> {
    let req = StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    };
    rt.stop_pod_sandbox(req).await.map(|_| ())
}

/// Sends one request and keeps only its status.
async fn send(mut rt: Runtime, mut im: Images, rpc: Rpc, req: Req) -> Code {
    let r: Result<(), Status> = match (rpc, req) {
        (RunPodSandbox, Req::Run(config)) => rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(*config),
                runtime_handler: String::new(),
            })
            .await
            .map(|_| ()),
        (StopPodSandbox, Req::Pod(id)) => stop_pod(&mut rt, &id).await,
        (RemovePodSandbox, Req::Pod(pod_sandbox_id)) => rt
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id })
            .await
            .map(|_| ()),
        (PodSandboxStatus, Req::Pod(pod_sandbox_id)) => rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id,
                verbose: false,
            })
            .await
            .map(|_| ()),
        (CreateContainer, Req::Create(args)) => {
            let (pod_id, pod, c) = *args;
            create(&mut rt, &pod_id, &pod, &c).await.map(|_| ())
        }
        (_, Req::Ctr(id)) => container_call(&mut rt, rpc, id).await,
        (_, Req::Image(image)) => image_call(&mut im, rpc, image).await,
        (rpc, _) => panic!("no request shape for {rpc:?}"),
    };
    code(&r)
}

async fn container_call(rt: &mut Runtime, rpc: Rpc, container_id: String) -> Result<(), Status> {
    let id = container_id.clone();
    match rpc {
        StartContainer => start(rt, &id).await,
        StopContainer => rt
            .stop_container(StopContainerRequest {
                container_id,
                timeout: 2,
            })
            .await
            .map(|_| ()),
        RemoveContainer => rt
            .remove_container(RemoveContainerRequest { container_id })
            .await
            .map(|_| ()),
        ContainerStatus => rt
            .container_status(ContainerStatusRequest {
                container_id,
                verbose: false,
            })
            .await
            .map(|_| ()),
        ExecSync => exec(rt, &id, &["true"], 10).await.map(|_| ()),
        UpdateContainerResources => rt
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id,
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ReopenContainerLog => rt
            .reopen_container_log(ReopenContainerLogRequest { container_id })
            .await
            .map(|_| ()),
        ContainerStats => rt
            .container_stats(ContainerStatsRequest { container_id })
            .await
            .map(|_| ()),
        other => panic!("{other:?} is not a container call"),
    }
}

async fn image_call(im: &mut Images, rpc: Rpc, image: String) -> Result<(), Status> {
    match rpc {
        PullImage => im
            .pull_image(PullImageRequest {
                image: crate::fixtures::image(&image),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ImageStatus => im
            .image_status(ImageStatusRequest {
                image: crate::fixtures::image(&image),
                verbose: false,
            })
            .await
            .map(|_| ()),
        RemoveImage => im
            .remove_image(RemoveImageRequest {
                image: crate::fixtures::image(&image),
            })
            .await
            .map(|_| ()),
        other => panic!("{other:?} is not an image call"),
    }
}

async fn answer(w: &mut World, rpc: Rpc, case: Case) -> Want {
    let req = prepare(w, rpc, case).await;
    let one = send(w.rt.clone(), w.im.clone(), rpc, req.clone());
    if case != Twice {
        return Want::Code(one.await);
    }
    let two = send(w.rt.clone(), w.im.clone(), rpc, req);
    let (a, b) = tokio::join!(one, two);
    // Order-free: the success first.
    if b == Code::Ok {
        Pair(b, a)
    } else {
        Pair(a, b)
    }
}

#[tokio::test]
async fn every_rpc_answers_absence_repetition_and_races_as_kubelet_expects() {
    if !preflight("idempotence_table", true) {
        return;
    }
    let d = Daemon::start().await;
    let (rt, mut im) = (d.runtime().await, d.images().await);
    pull(&mut im, BUSYBOX).await;
    let mut w = World { d, rt, im, n: 0 };
    let mut wrong = Vec::new();
    for &(rpc, case, want) in TABLE {
        let got = answer(&mut w, rpc, case).await;
        if got != want {
            wrong.push(format!("{rpc:?} {case:?}: want {want:?}, got {got:?}"));
        }
    }
    // The images the table pulled and removed: busybox again for the teardown's use.
    pull(&mut w.im, BUSYBOX).await;
    assert!(
        wrong.is_empty(),
        "rows answered wrongly:\n{}",
        wrong.join("\n")
    );
    w.d.teardown().await;
}
