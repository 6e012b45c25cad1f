//! When a streaming connection last moved a byte either way, so an idle one is closed
//! after the configured time (kubelet's stream idle timeout).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Activity(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    base: Instant,
    /// Milliseconds after `base` of the last traffic.
    last: AtomicU64,
    idle: Duration,
}

impl Activity {
    pub fn new(idle: Duration) -> Self {
        Activity(Arc::new(Inner {
            base: Instant::now(),
            last: AtomicU64::new(0),
            idle,
        }))
    }

    pub fn touch(&self) {
        let ms = self.0.base.elapsed().as_millis() as u64;
        self.0.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for the idle time.
    pub async fn idle(&self) {
        loop {
            let last = Duration::from_millis(self.0.last.load(Ordering::Relaxed));
            let deadline = self.0.base + last + self.0.idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn traffic_postpones_the_idle_deadline() {
        let a = Activity::new(Duration::from_secs(10));
        let idle = tokio::spawn({
            let a = a.clone();
            async move { a.idle().await }
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        a.touch();
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(!idle.is_finished(), "touched 8 s ago");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(idle.is_finished());
    }
}
