//! SPDY/3.1 flow control: each stream and the session as a whole have a send window
//! (64 KiB at first) that DATA frames use up and WINDOW_UPDATE frames refill.
//!
//! spdystream (the Go implementation kubelet, client-go and crictl use) does no flow
//! control at all: it never sends WINDOW_UPDATE and ignores ours. So the send windows
//! are enforced only once the peer shows it does flow control (it sends a WINDOW_UPDATE
//! or an initial window in SETTINGS); the receive side always re-opens what the
//! application has consumed, and tolerates a peer that overruns it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::SpdyError;

/// Every window's size when a stream or session starts.
pub const INITIAL_WINDOW: i64 = 64 * 1024;
const MAX_WINDOW: i64 = 0x7fff_ffff;

/// One send window's accounting; may go negative when SETTINGS shrinks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(i64);

impl Default for Window {
    fn default() -> Self {
        Window(INITIAL_WINDOW)
    }
}

impl Window {
    #[cfg(test)]
    pub fn available(&self) -> i64 {
        self.0
    }

    /// Uses up to `want` bytes of the window; 0 when it is closed.
    pub fn take(&mut self, want: usize) -> usize {
        let n = want.min(self.0.max(0) as usize);
        self.0 -= n as i64;
        n
    }

    /// Gives back bytes taken but not sent.
    pub fn give_back(&mut self, n: usize) {
        self.0 += n as i64;
    }

    /// A WINDOW_UPDATE: a zero delta or one past 2^31-1 is a flow-control error.
    pub fn grant(&mut self, delta: u32) -> Result<(), SpdyError> {
        let next = self.0 + i64::from(delta);
        if delta == 0 || next > MAX_WINDOW {
            return Err(SpdyError::Flow(format!(
                "a window update of {delta} on a window of {}",
                self.0
            )));
        }
        self.0 = next;
        Ok(())
    }

    /// SETTINGS changed the initial window by `diff`: every open stream shifts by it.
    pub fn shift(&mut self, diff: i64) {
        self.0 = (self.0 + diff).min(MAX_WINDOW);
    }
}

/// The receive side: bytes consumed by the application and not yet re-opened.
#[derive(Debug, Default)]
pub struct Consumed(u32);

impl Consumed {
    /// Records `n` bytes consumed; returns the delta to send once half a window is due.
    pub fn add(&mut self, n: usize) -> Option<u32> {
        self.0 = self.0.saturating_add(n as u32);
        if i64::from(self.0) >= INITIAL_WINDOW / 2 {
            return Some(std::mem::take(&mut self.0));
        }
        None
    }
}

/// A send window shared by a stream's writer and the session's reader.
#[derive(Debug, Default)]
pub struct SendWindow {
    window: std::sync::Mutex<Window>,
    changed: Notify,
    reset: AtomicBool,
}

/// Whether the peer has shown it does flow control (see the module doc).
#[derive(Debug, Default)]
pub struct PeerFlow(AtomicBool);

impl PeerFlow {
    pub fn enable(&self) {
        self.0.store(true, Ordering::Relaxed)
    }
    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl SendWindow {
    pub fn update(
        &self,
        f: impl FnOnce(&mut Window) -> Result<(), SpdyError>,
    ) -> Result<(), SpdyError> {
        let r = f(&mut self.window.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_waiters();
        r
    }

    /// The stream was reset: writers stop at once.
    pub fn close(&self) {
        self.reset.store(true, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.reset.load(Ordering::Relaxed)
    }

    /// Waits until some of `want` bytes may be sent; how many. Immediate when the peer
    /// does no flow control.
    pub async fn acquire(&self, want: usize, peer: &PeerFlow) -> Result<usize, SpdyError> {
        loop {
            let changed = self.changed.notified();
            if self.is_closed() {
                return Err(SpdyError::Reset);
            }
            if !peer.enabled() {
                return Ok(want);
            }
            let n = self
                .window
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(want);
            if n > 0 {
                return Ok(n);
            }
            changed.await;
        }
    }

    pub fn give_back(&self, n: usize) {
        let _ = self.update(|w| {
            w.give_back(n);
            Ok(())
        });
    }

    /// SETTINGS changed the initial window (see [`Window::shift`]).
    pub fn shift(&self, diff: i64) {
        let _ = self.update(|w| {
            w.shift(diff);
            Ok(())
        });
    }
}

/// Both windows a DATA frame uses: its stream's and the session's.
pub async fn acquire_both(
    stream: &SendWindow,
    session: &Arc<SendWindow>,
    want: usize,
    peer: &PeerFlow,
) -> Result<usize, SpdyError> {
    let n = stream.acquire(want, peer).await?;
    let m = session.acquire(n, peer).await?;
    if m < n && peer.enabled() {
        stream.give_back(n - m);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_used_up_and_refilled() {
        let mut w = Window::default();
        assert_eq!(w.take(40_000), 40_000);
        assert_eq!(w.take(40_000), 25_536, "only what is left");
        assert_eq!(w.take(1), 0, "closed");
        w.grant(10).unwrap();
        assert_eq!(w.take(100), 10);
        w.give_back(5);
        assert_eq!(w.available(), 5);
        assert!(w.grant(0).is_err());
        assert!(w.grant(0x7fff_ffff).is_err(), "past 2^31-1");
        w.shift(-100);
        assert_eq!(w.available(), -95);
        assert_eq!(w.take(10), 0, "a negative window sends nothing");
    }

    #[test]
    fn consumed_bytes_are_reopened_by_half_windows() {
        let mut c = Consumed::default();
        assert_eq!(c.add(10_000), None);
        assert_eq!(c.add(30_000), Some(40_000));
        assert_eq!(c.add(1), None, "counting starts again");
    }

    #[tokio::test]
    async fn a_writer_waits_for_an_update_only_when_the_peer_flow_controls() {
        let (stream, session) = (
            Arc::new(SendWindow::default()),
            Arc::new(SendWindow::default()),
        );
        let peer = PeerFlow::default();
        assert_eq!(
            acquire_both(&stream, &session, 1 << 20, &peer)
                .await
                .unwrap(),
            1 << 20
        );
        peer.enable();
        let n = acquire_both(&stream, &session, 1 << 20, &peer)
            .await
            .unwrap();
        assert_eq!(n, INITIAL_WINDOW as usize);
        let waiter = {
            let (stream, session) = (stream.clone(), session.clone());
            tokio::spawn(async move {
                let peer = PeerFlow::default();
                peer.enable();
                acquire_both(&stream, &session, 100, &peer).await
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "both windows are closed");
        stream.update(|w| w.grant(50)).unwrap();
        session.update(|w| w.grant(30)).unwrap();
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            30,
            "the smaller window wins"
        );
        stream.close();
        assert!(matches!(
            stream.acquire(1, &peer).await,
            Err(SpdyError::Reset)
        ));
    }
}
