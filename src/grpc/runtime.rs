//! CRI RuntimeService.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{reply, to_completion};
use crate::container::manager::ContainerManager;
use crate::error::Error;
use crate::sandbox::manager::PodManager;
use crate::stats::{self, Stats};
use crate::streaming::{Command, Exec, Network, PortForward, Streaming};

pub struct RuntimeApi {
    pods: Arc<PodManager>,
    containers: Arc<ContainerManager>,
    stats: Arc<Stats>,
    streaming: Arc<Streaming>,
    /// The daemon's config as JSON, for a verbose Status.
    config: String,
}

impl RuntimeApi {
    pub fn new(
        pods: Arc<PodManager>,
        containers: Arc<ContainerManager>,
        stats: Arc<Stats>,
        streaming: Arc<Streaming>,
    ) -> Self {
        RuntimeApi {
            pods,
            containers,
            stats,
            streaming,
            config: String::new(),
        }
    }

    pub fn with_config(mut self, config: &crate::config::Config) -> Self {
        // `stateDir` as containerd's: critest checks id-mapped mounts under its parent,
        // which for crius is the image store holding the layers.
        let mut json = serde_json::to_value(config).unwrap_or_default();
        if let Some(o) = json.as_object_mut() {
            let state = config.layout().images.join("state");
            o.insert("stateDir".into(), serde_json::json!(state));
        }
        self.config = json.to_string();
        self
    }
}

type Rpc<T> = Result<Response<T>, Status>;

fn unimplemented<T>(what: &'static str) -> Rpc<T> {
    Err(Error::Unimplemented(what).into())
}

macro_rules! span {
    ($name:literal $(, $k:ident = $v:expr)*) => {
        tracing::info_span!($name $(, $k = %$v)*)
    };
}

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Rpc<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "crius".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Rpc<cri::RunPodSandboxResponse> {
        let req = req.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let containers = self.containers.clone();
        let r = to_completion(
            async move { containers.run_pod(req).await }
                .instrument(span!("RunPodSandbox", name = name)),
        )
        .await;
        reply(r.map(|pod_sandbox_id| cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Rpc<cri::StopPodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let containers = self.containers.clone();
        let span = span!("StopPodSandbox", pod = id);
        let r = to_completion(async move { containers.stop_pod(&id).await }.instrument(span)).await;
        reply(r.map(|()| cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Rpc<cri::RemovePodSandboxResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let containers = self.containers.clone();
        let span = span!("RemovePodSandbox", pod = id);
        let r =
            to_completion(async move { containers.remove_pod(&id).await }.instrument(span)).await;
        reply(r.map(|()| cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Rpc<cri::PodSandboxStatusResponse> {
        let req = req.into_inner();
        let r = self.pods.status(&req.pod_sandbox_id, req.verbose).await;
        reply(r.map(|(status, info)| cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            timestamp: crate::id::now_ns(),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Rpc<cri::ListPodSandboxResponse> {
        let filter = req.into_inner().filter;
        reply(
            self.pods
                .list(filter.as_ref())
                .map(|items| cri::ListPodSandboxResponse { items }),
        )
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Rpc<cri::CreateContainerResponse> {
        let req = req.into_inner();
        let pod = req.pod_sandbox_id.clone();
        let containers = self.containers.clone();
        let span = span!("CreateContainer", pod = pod);
        let r = to_completion(async move { containers.create(req).await }.instrument(span)).await;
        reply(r.map(|container_id| cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Rpc<cri::StartContainerResponse> {
        let id = req.into_inner().container_id;
        let containers = self.containers.clone();
        let span = span!("StartContainer", id = id);
        let r = to_completion(async move { containers.start(&id).await }.instrument(span)).await;
        reply(r.map(|()| cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Rpc<cri::StopContainerResponse> {
        let req = req.into_inner();
        let id = req.container_id;
        let containers = self.containers.clone();
        let span = span!("StopContainer", id = id);
        let timeout = req.timeout;
        let r = to_completion(async move { containers.stop(&id, timeout).await }.instrument(span))
            .await;
        reply(r.map(|()| cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Rpc<cri::RemoveContainerResponse> {
        let id = req.into_inner().container_id;
        let containers = self.containers.clone();
        let span = span!("RemoveContainer", id = id);
        let r = to_completion(async move { containers.remove(&id).await }.instrument(span)).await;
        reply(r.map(|()| cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Rpc<cri::ListContainersResponse> {
        let filter = req.into_inner().filter;
        let r = self.containers.list(filter.as_ref()).await;
        reply(r.map(|containers| cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Rpc<cri::ContainerStatusResponse> {
        let req = req.into_inner();
        let r = self.containers.status(&req.container_id, req.verbose).await;
        reply(r.map(|(status, info)| cri::ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Rpc<cri::UpdateContainerResourcesResponse> {
        let req = req.into_inner();
        let Some(linux) = req.linux else {
            // Windows resources, or none: nothing this runtime applies.
            return reply(Err(Error::InvalidArgument(
                "linux resources are required".into(),
            )));
        };
        let containers = self.containers.clone();
        let id = req.container_id;
        let span = span!("UpdateContainerResources", id = id);
        let update = async move { containers.update_resources(&id, linux).await };
        let r = to_completion(update.instrument(span)).await;
        reply(r.map(|()| cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Rpc<cri::ReopenContainerLogResponse> {
        let id = req.into_inner().container_id;
        let r = self
            .containers
            .reopen_log(&id)
            .instrument(span!("ReopenContainerLog", id = id))
            .await;
        reply(r.map(|()| cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> Rpc<cri::ExecSyncResponse> {
        let req = req.into_inner();
        let id = req.container_id.clone();
        let r = self
            .containers
            .exec_sync(req)
            .instrument(span!("ExecSync", id = id))
            .await;
        reply(r)
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> Rpc<cri::ExecResponse> {
        let req = req.into_inner();
        let _span = span!("Exec", id = req.container_id).entered();
        let r = self.containers.check_exec(&req).and_then(|monitor| {
            let url = self.streaming.exec_url(Exec {
                monitor,
                container_id: req.container_id,
                command: Command::Run(req.cmd),
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            })?;
            Ok(cri::ExecResponse { url })
        });
        reply(r)
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> Rpc<cri::AttachResponse> {
        let req = req.into_inner();
        let _span = span!("Attach", id = req.container_id).entered();
        let r = self.containers.check_attach(&req).and_then(|monitor| {
            let url = self.streaming.exec_url(Exec {
                monitor,
                container_id: req.container_id,
                command: Command::Attach,
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            })?;
            Ok(cri::AttachResponse { url })
        });
        reply(r)
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Rpc<cri::PortForwardResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let _span = span!("PortForward", pod = id).entered();
        let r = self.pods.ready_network(&id).and_then(|(pod_id, netns)| {
            let network = netns.map_or(Network::Host, Network::Namespace);
            let url = self
                .streaming
                .port_forward_url(PortForward { pod_id, network })?;
            Ok(cri::PortForwardResponse { url })
        });
        reply(r)
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Rpc<cri::ContainerStatsResponse> {
        let id = req.into_inner().container_id;
        let r = self
            .stats
            .container(&id)
            .instrument(span!("ContainerStats", id = id))
            .await;
        reply(r.map(|s| cri::ContainerStatsResponse { stats: Some(s) }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Rpc<cri::ListContainerStatsResponse> {
        let filter = req.into_inner().filter;
        let r = self
            .stats
            .containers(filter.as_ref())
            .instrument(span!("ListContainerStats"))
            .await;
        reply(r.map(|stats| cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Rpc<cri::PodSandboxStatsResponse> {
        let id = req.into_inner().pod_sandbox_id;
        let r = self
            .stats
            .pod(&id)
            .instrument(span!("PodSandboxStats", pod = id))
            .await;
        reply(r.map(|s| cri::PodSandboxStatsResponse { stats: Some(s) }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Rpc<cri::ListPodSandboxStatsResponse> {
        let filter = req.into_inner().filter;
        let r = self
            .stats
            .pods(filter.as_ref())
            .instrument(span!("ListPodSandboxStats"))
            .await;
        reply(r.map(|stats| cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Rpc<cri::UpdateRuntimeConfigResponse> {
        // kubelet sends the pod CIDR here; the CNI config already carries it.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<cri::StatusRequest>) -> Rpc<cri::StatusResponse> {
        let verbose = req.into_inner().verbose;
        let loaded = self.pods.cni().load_network();
        let network = match &loaded {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: e.to_string(),
            },
        };
        let runtime = cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            ..Default::default()
        };
        let mut info = std::collections::HashMap::new();
        if verbose {
            // As containerd: the daemon's config, the CNI network and how loading it went.
            info.insert("config".into(), self.config.clone());
            let (cni, load_status) = match &loaded {
                Ok(net) => (serde_json::to_string(net).unwrap_or_default(), "OK".into()),
                Err(e) => ("null".into(), e.to_string()),
            };
            info.insert("cniconfig".into(), cni);
            info.insert("lastCNILoadStatus".into(), load_status);
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            runtime_handlers: vec![default_handler()],
            // Strict or Merge supplemental groups, and the user reported in ContainerStatus.
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Rpc<cri::CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream = Pin<
        Box<
            dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>>
                + Send
                + 'static,
        >,
    >;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Rpc<Self::GetContainerEventsStream> {
        use tokio_stream::StreamExt;
        let events = self.containers.subscribe()?;
        let stream = events.map(|r| r.map_err(|e| Status::from(Error::from(e))));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Rpc<cri::ListMetricDescriptorsResponse> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: stats::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Rpc<cri::ListPodSandboxMetricsResponse> {
        let r = self
            .stats
            .pod_metrics()
            .instrument(span!("ListPodSandboxMetrics"))
            .await;
        reply(r.map(|pod_metrics| cri::ListPodSandboxMetricsResponse { pod_metrics }))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Rpc<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

/// The one runtime handler, the built-in runtime ("" is the default handler). kubelet
/// lets pods ask for recursive read-only mounts only where this says so.
fn default_handler() -> cri::RuntimeHandler {
    cri::RuntimeHandler {
        name: String::new(),
        features: Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: crate::runtime::supports_recursive_readonly(),
            // Pods in their own user namespace, where the image layers can be id-mapped.
            user_namespaces: crate::sandbox::userns::supported(),
        }),
    }
}
