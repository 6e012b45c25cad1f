//! GetContainerEvents: changes reported by both managers become CRI events, and each
//! pod's monitor pushes the exits of its containers so one that ends by itself is
//! reported at once, not at kubelet's next relist.

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tracing::{debug, warn};

use super::{ContainerManager, ContainerPhase};
use crate::container::status::{Observed, status_of};
use crate::error::{Result, poisoned};
use crate::events::{Change, ChangeReceiver, Subscription};
use crate::sandbox::manager::PodPhase;

/// How long a watcher waits before subscribing again to a monitor that is alive but
/// refused or dropped the feed (at its connection limit, say).
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

impl ContainerManager {
    /// A new GetContainerEvents subscriber.
    pub fn subscribe(&self) -> Result<Subscription> {
        Ok(self.hub.subscribe()?)
    }

    /// Starts building events from reported changes and following the exits of every
    /// Ready pod's containers. Called once, after recovery.
    pub fn start_events(self: &Arc<Self>) -> Result<()> {
        let Some(changes) = self.pending.lock().map_err(poisoned)?.take() else {
            return Ok(());
        };
        tokio::spawn(self.clone().build_events(changes));
        for pod in self.pods.ready_ids()? {
            self.watch_exits(pod);
        }
        Ok(())
    }

    /// RunPodSandbox, then following the new pod's container exits.
    pub async fn run_pod(self: &Arc<Self>, req: cri::RunPodSandboxRequest) -> Result<String> {
        let id = self.pods.run(req).await?;
        self.watch_exits(id.clone());
        Ok(id)
    }

    /// StopPodSandbox. The monitor's shutdown killed the pod's containers; their exits
    /// are recorded (and reported) now, before the pod's own STOPPED, rather than at
    /// the next status call.
    pub async fn stop_pod(&self, wanted: &str) -> Result<()> {
        self.pods
            .stop(wanted, |id| async move { self.sweep(&id).await })
            .await
    }

    /// Turns changes into events, one at a time so each subscriber sees them in the
    /// order they happened. Nothing is built while nobody listens.
    async fn build_events(self: Arc<Self>, mut changes: ChangeReceiver) {
        while let Some(change) = changes.recv().await {
            if !self.hub.has_subscribers() {
                continue;
            }
            let event = self.event_of(change).await;
            self.hub.publish(&event);
        }
    }

    /// The event for `c`: the pod's status and its containers' statuses as they are now,
    /// as kubelet's Evented PLEG reads them.
    async fn event_of(&self, c: Change) -> cri::ContainerEventResponse {
        // Stamped before the statuses are read: they are at least this fresh.
        let created_at = crate::id::now_ns();
        let pod = c.pod.or_else(|| self.pods.recorded_status(&c.pod_id));
        cri::ContainerEventResponse {
            container_id: c.id,
            container_event_type: c.kind as i32,
            created_at,
            pod_sandbox_status: pod,
            containers_statuses: self.pod_statuses(&c.pod_id).await,
        }
    }

    /// The statuses of a pod's listed containers.
    async fn pod_statuses(&self, pod_id: &str) -> Vec<cri::ContainerStatus> {
        let recs = self
            .records_where(|r| r.pod_id == pod_id && r.phase != ContainerPhase::Creating)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            let o = self.observe(&rec).await.unwrap_or_else(|e| {
                debug!(container = %rec.id, error = %e, "state unknown for an event");
                Observed::unknown()
            });
            out.push(status_of(&rec, &o));
        }
        out
    }

    /// Records (and so reports) the exits of a pod's containers that are not known yet.
    async fn sweep(&self, pod_id: &str) {
        let recs = self
            .records_where(|r| {
                r.pod_id == pod_id && r.phase != ContainerPhase::Creating && r.exit.is_none()
            })
            .unwrap_or_default();
        for rec in recs {
            if let Err(e) = self.observe(&rec).await {
                debug!(container = %rec.id, error = %e, "observing after an exit");
            }
        }
    }

    fn watch_exits(self: &Arc<Self>, pod_id: String) {
        let me = self.clone();
        tokio::spawn(async move { me.follow_exits(&pod_id).await });
    }

    /// Subscribes to the pod's monitor and observes each container it reports exited,
    /// which records the exit and reports STOPPED. Exits missed while not subscribed
    /// (the daemon was down, the feed broke) are found by a sweep right after each
    /// subscription. Ends when the monitor is gone or the pod no longer Ready.
    async fn follow_exits(&self, pod_id: &str) {
        loop {
            match self.pods.monitor(pod_id).subscribe().await {
                Ok(mut feed) => {
                    self.sweep(pod_id).await;
                    loop {
                        match feed.next().await {
                            Ok(Some(id)) => self.sweep_one(&id).await,
                            Ok(None) => break,
                            Err(e) => {
                                debug!(pod = %pod_id, error = %e, "exit feed broke");
                                break;
                            }
                        }
                    }
                }
                // Gone, or only refusing (at its connection limit): a pod status check
                // tells them apart and records a dead monitor (the pod stops).
                Err(e) if e.is_unavailable() => {
                    let _ = self.pods.status(pod_id, false).await;
                }
                Err(e) => warn!(pod = %pod_id, error = %e, "subscribing to container exits"),
            }
            let ready = self
                .pods
                .get(pod_id)
                .is_ok_and(|p| p.phase == PodPhase::Ready);
            if !ready {
                // The containers' exits are read from what the monitor left on disk.
                self.sweep(pod_id).await;
                return;
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }

    async fn sweep_one(&self, id: &str) {
        let Ok(rec) = self.containers.get(id) else {
            return;
        };
        if let Err(e) = self.observe(&rec).await {
            debug!(container = %id, error = %e, "observing a reported exit");
        }
    }
}
