//! Lifecycle events for CRI `GetContainerEvents` (kubelet's Evented PLEG).
//!
//! The pod and container managers report a [`Change`] through [`Changes`] where a record
//! changes (created, started, an exit first known, removed). The container manager turns
//! each change, in order, into a full CRI event (the pod's status and its containers'
//! statuses at that moment) and publishes it to the [`Hub`].
//!
//! Each subscriber has a bounded buffer of its own. Publishing never waits: a subscriber
//! whose buffer is full has missed an event, so its stream ends with `ResourceExhausted`
//! after the events it did get; kubelet then relists and subscribes again. A subscriber
//! that keeps up misses nothing. One that goes away frees its slot.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use k8s_cri::v1 as cri;
use tokio::sync::mpsc;

use crate::error::{Classify, Kind};

pub use cri::ContainerEventType as EventType;

/// Events one subscriber may have waiting before it is cut off.
pub const BUFFER: usize = 1024;
/// Subscribers at once (kubelet holds one; crictl and tools a few more).
pub const MAX_SUBSCRIBERS: usize = 64;

/// Something that happened to a pod or a container.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: EventType,
    /// The container's id, or the pod's for an event about the pod itself.
    pub id: String,
    pub pod_id: String,
    /// The pod's status taken before the pod went away (its removal): the event must
    /// still carry it, and afterwards there is nothing left to read it from.
    pub pod: Option<cri::PodSandboxStatus>,
}

/// Where the managers report changes. Cheap to clone; reporting never waits.
#[derive(Clone, Debug)]
pub struct Changes(mpsc::UnboundedSender<Change>);

pub type ChangeReceiver = mpsc::UnboundedReceiver<Change>;

impl Changes {
    pub fn channel() -> (Changes, ChangeReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Changes(tx), rx)
    }

    pub fn container(&self, kind: EventType, id: &str, pod_id: &str) {
        self.send(kind, id, pod_id, None);
    }

    pub fn pod(&self, kind: EventType, pod_id: &str) {
        self.send(kind, pod_id, pod_id, None);
    }

    /// The pod is about to go away: `status` is the last one it will have.
    pub fn pod_removed(&self, status: cri::PodSandboxStatus) {
        let id = status.id.clone();
        self.send(EventType::ContainerDeletedEvent, &id, &id, Some(status));
    }

    fn send(&self, kind: EventType, id: &str, pod_id: &str, pod: Option<cri::PodSandboxStatus>) {
        // Without a receiver (the daemon is stopping) there is nobody to tell.
        let _ = self.0.send(Change {
            kind,
            id: id.into(),
            pod_id: pod_id.into(),
            pod,
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("too many event subscribers (at most {0})")]
    TooManySubscribers(usize),
    #[error(
        "event subscriber fell more than {0} events behind; events were dropped, list again and resubscribe"
    )]
    Lagged(usize),
}

impl Classify for EventsError {
    fn kind(&self) -> Kind {
        Kind::ResourceExhausted
    }
}

type Event = cri::ContainerEventResponse;

struct Slot {
    tx: mpsc::Sender<Event>,
    lagged: Arc<AtomicBool>,
}

/// The subscribers and their buffers.
pub struct Hub {
    slots: Mutex<Vec<Slot>>,
    buffer: usize,
    max: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(BUFFER, MAX_SUBSCRIBERS)
    }
}

impl Hub {
    pub fn new(buffer: usize, max: usize) -> Hub {
        Hub {
            slots: Mutex::new(Vec::new()),
            buffer,
            max,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic while holding this lock leaves a plain Vec: still usable.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| !s.tx.is_closed());
        slots
    }

    pub fn subscribe(&self) -> Result<Subscription, EventsError> {
        let mut slots = self.slots();
        if slots.len() >= self.max {
            return Err(EventsError::TooManySubscribers(self.max));
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        slots.push(Slot {
            tx,
            lagged: lagged.clone(),
        });
        Ok(Subscription {
            rx,
            lagged,
            buffer: self.buffer,
            done: false,
        })
    }

    /// Whether anyone listens; without subscribers no event needs to be built.
    pub fn has_subscribers(&self) -> bool {
        !self.slots().is_empty()
    }

    /// Gives `event` to every subscriber; one whose buffer is full is cut off.
    pub fn publish(&self, event: &Event) {
        self.slots().retain(|s| match s.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

/// One subscriber's events, in order; ends with `Lagged` if it fell behind.
pub struct Subscription {
    rx: mpsc::Receiver<Event>,
    lagged: Arc<AtomicBool>,
    buffer: usize,
    done: bool,
}

impl tokio_stream::Stream for Subscription {
    type Item = Result<Event, EventsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(Ok(e))),
            // The hub dropped our sender: after what was buffered, say why.
            Poll::Ready(None) => {
                self.done = true;
                if self.lagged.load(Ordering::Acquire) {
                    Poll::Ready(Some(Err(EventsError::Lagged(self.buffer))))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    fn event(id: &str) -> Event {
        Event {
            container_id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn every_subscriber_that_keeps_up_gets_every_event_in_order() {
        let hub = Hub::new(2, 4);
        let mut a = hub.subscribe().unwrap();
        let mut b = hub.subscribe().unwrap();
        for round in 0..3 {
            hub.publish(&event(&format!("{round}-1")));
            hub.publish(&event(&format!("{round}-2")));
            for sub in [&mut a, &mut b] {
                for n in 1..=2 {
                    let got = sub.next().await.unwrap().unwrap();
                    assert_eq!(got.container_id, format!("{round}-{n}"));
                }
            }
        }
        assert!(hub.has_subscribers());
    }

    #[tokio::test]
    async fn a_full_buffer_ends_the_stream_with_lagged_after_what_it_held() {
        let hub = Hub::new(2, 4);
        let mut slow = hub.subscribe().unwrap();
        let mut fast = hub.subscribe().unwrap();
        for n in 0..3 {
            hub.publish(&event(&n.to_string()));
            assert_eq!(
                fast.next().await.unwrap().unwrap().container_id,
                n.to_string()
            );
        }
        assert_eq!(slow.next().await.unwrap().unwrap().container_id, "0");
        assert_eq!(slow.next().await.unwrap().unwrap().container_id, "1");
        let e = slow.next().await.unwrap().unwrap_err();
        assert!(matches!(e, EventsError::Lagged(2)), "{e}");
        assert_eq!(e.kind(), Kind::ResourceExhausted);
        assert!(slow.next().await.is_none(), "ended");
        hub.publish(&event("3"));
        assert_eq!(fast.next().await.unwrap().unwrap().container_id, "3");
    }

    #[tokio::test]
    async fn a_subscriber_that_goes_away_frees_its_slot() {
        let hub = Hub::new(2, 2);
        let a = hub.subscribe().unwrap();
        let _b = hub.subscribe().unwrap();
        assert!(matches!(
            hub.subscribe(),
            Err(EventsError::TooManySubscribers(2))
        ));
        drop(a);
        let _c = hub.subscribe().expect("a's slot is free again");
    }

    #[tokio::test]
    async fn without_subscribers_nothing_is_kept() {
        let hub = Hub::new(2, 2);
        assert!(!hub.has_subscribers());
        hub.publish(&event("x"));
        let sub = hub.subscribe().unwrap();
        drop(sub);
        assert!(!hub.has_subscribers());
    }

    #[tokio::test]
    async fn changes_arrive_in_order_with_the_pod_snapshot() {
        let (changes, mut rx) = Changes::channel();
        changes.pod(EventType::ContainerCreatedEvent, "p");
        changes.container(EventType::ContainerStartedEvent, "c", "p");
        changes.pod_removed(cri::PodSandboxStatus {
            id: "p".into(),
            ..Default::default()
        });
        let a = rx.recv().await.unwrap();
        assert_eq!((a.id.as_str(), a.pod_id.as_str()), ("p", "p"));
        let b = rx.recv().await.unwrap();
        assert_eq!(
            (b.kind, b.id.as_str()),
            (EventType::ContainerStartedEvent, "c")
        );
        let c = rx.recv().await.unwrap();
        assert_eq!(c.kind, EventType::ContainerDeletedEvent);
        assert_eq!(c.pod.map(|p| p.id), Some("p".into()));
    }
}
