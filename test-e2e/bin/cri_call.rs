//! `cri-call SOCKET RPC [ID]`: one short-lived CRI client process, as crictl or a
//! kubelet restart is: connect to the Unix socket, validate the connection with Version
//! (what k8s.io/cri-client does for every new runtime connection), perform one RPC, exit.
//! hack/bench.sh times it: an RPC's cost to a user is this process's run time minus that
//! of `cri-call SOCKET version`, which is start-up + connect + Version alone.
//!
//! RPC: version | status | imagefsinfo | listpods | podstatus POD | listcontainers |
//! containerstatus CONTAINER | exec CONTAINER (ExecSync `true`). The status calls are
//! verbose, as `crictl inspect`/`inspectp` make them.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerStatusRequest, ExecSyncRequest, ImageFsInfoRequest, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxStatusRequest, StatusRequest, VersionRequest,
};
use std::process::ExitCode;
use tonic::transport::{Channel, Endpoint, Uri};

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(rpc)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cri-call SOCKET RPC [ID]");
        return ExitCode::from(2);
    };
    let id = args.get(2).cloned().unwrap_or_default();
    // One thread: a CLI client needs no more, and a thread pool would only add start-up.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::from)
        .and_then(|rt| rt.block_on(call(socket.clone(), rpc, id)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cri-call {rpc}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(socket: String) -> Result<Channel, Error> {
    // The URI is required by tonic but unused: the connector below dials the socket.
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(channel)
}

async fn call(socket: String, rpc: &str, id: String) -> Result<(), Error> {
    let channel = connect(socket).await?;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    rt.version(VersionRequest::default()).await?;
    match rpc {
        "version" => {}
        "status" => drop(rt.status(StatusRequest { verbose: true }).await?),
        "imagefsinfo" => {
            let mut images = ImageServiceClient::new(channel);
            images.image_fs_info(ImageFsInfoRequest {}).await?;
        }
        "listpods" => drop(
            rt.list_pod_sandbox(ListPodSandboxRequest::default())
                .await?,
        ),
        "podstatus" => {
            let req = PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: true,
            };
            rt.pod_sandbox_status(req).await?;
        }
        "listcontainers" => drop(rt.list_containers(ListContainersRequest::default()).await?),
        "containerstatus" => {
            let req = ContainerStatusRequest {
                container_id: id,
                verbose: true,
            };
            rt.container_status(req).await?;
        }
        "exec" => exec_true(&mut rt, id).await?,
        other => return Err(format!("unknown RPC {other}").into()),
    }
    Ok(())
}

async fn exec_true(rt: &mut RuntimeServiceClient<Channel>, id: String) -> Result<(), Error> {
    let req = ExecSyncRequest {
        container_id: id,
        cmd: vec!["true".into()],
        timeout: 0,
    };
    let resp = rt.exec_sync(req).await?.into_inner();
    if resp.exit_code != 0 {
        return Err(format!("true exited {}", resp.exit_code).into());
    }
    Ok(())
}
