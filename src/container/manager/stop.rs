//! StopContainer: the stop signal, a grace period, then SIGKILL.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{ContainerManager, KILL_GRACE};
use crate::error::{Error, Result};

/// How often a stop looks again whether the container's init catches its stop signal.
const HANDLER_POLL: Duration = Duration::from_millis(20);

impl ContainerManager {
    /// Stops a container: its stop signal, then SIGKILL after `timeout_secs`. One that
    /// does not exist or has already exited is not an error (CRI StopContainer is
    /// idempotent) and returns at once.
    pub async fn stop(&self, wanted: &str, timeout_secs: i64) -> Result<()> {
        let Some(held) = self.containers.hold(wanted).await? else {
            return Ok(());
        };
        let rec = held.record;
        let o = self.observe(&rec).await?;
        if o.is_exited() {
            return Ok(());
        }
        let mon = self.monitor(&rec);
        if timeout_secs > 0 && o.is_running() {
            let signal = self.stop_signal(&rec);
            let deadline = Instant::now() + Duration::from_secs(timeout_secs.min(86_400) as u64);
            wait_deliverable(o.pid, signal, deadline).await;
            // A stop signal the monitor refuses must not keep SIGKILL from being sent.
            match mon.kill(&rec.id, signal).await {
                Ok(()) => {
                    let limit = deadline.saturating_duration_since(Instant::now());
                    if self.wait_exit(&rec, limit).await? {
                        info!(container = %rec.id, "container stopped");
                        return Ok(());
                    }
                }
                Err(e) => warn!(container = %rec.id, error = %e, "stop signal failed"),
            }
        }
        match mon.kill(&rec.id, libc::SIGKILL).await {
            // Exited between the observation and the kill.
            Err(e) if e.is_not_found() => return Ok(()),
            r => r?,
        }
        if !self.wait_exit(&rec, KILL_GRACE).await? {
            return Err(Error::FailedPrecondition(format!(
                "container {} did not exit after SIGKILL",
                rec.id
            )));
        }
        info!(container = %rec.id, "container killed");
        Ok(())
    }
}

/// Waits until `pid` can receive `signal`, or `deadline`. The init of a PID namespace only
/// gets the signals it has a handler for: a stop signal sent in the moments after
/// StartContainer, before the program installed its handler, would be dropped, and the
/// stop would wait out the whole grace period for nothing. A process that never installs
/// a handler still gets the signal (dropped) at the deadline, then SIGKILL.
async fn wait_deliverable(pid: i32, signal: i32, deadline: Instant) {
    while Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        match status.ok().and_then(|s| drops_signal(&s, signal)) {
            Some(true) => tokio::time::sleep(HANDLER_POLL).await,
            _ => return,
        }
    }
}

/// From `/proc/<pid>/status`: whether the kernel would drop `signal` because the process
/// is its namespace's init with no handler for it. `None` if the file says too little.
fn drops_signal(status: &str, signal: i32) -> Option<bool> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let is_init = field("NSpid:")?.split_whitespace().last()? == "1";
    let caught = u64::from_str_radix(field("SigCgt:")?, 16).ok()?;
    let bit = 1u64.checked_shl(u32::try_from(signal - 1).ok()?)?;
    Some(is_init && caught & bit == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(nspid: &str, sigcgt: &str) -> String {
        format!("Name:\ttop\nNSpid:\t{nspid}\nSigIgn:\t0000000000000000\nSigCgt:\t{sigcgt}\n")
    }

    #[test]
    fn an_init_without_a_handler_drops_the_signal() {
        // busybox top once its handlers are in place: SIGTERM (bit 14) is caught.
        assert_eq!(
            drops_signal(&status("16204\t1", "0000000003807a27"), 15),
            Some(false)
        );
        assert_eq!(
            drops_signal(&status("16204\t1", "0000000000000000"), 15),
            Some(true)
        );
        // Not its namespace's init: the default action applies, nothing is dropped.
        assert_eq!(
            drops_signal(&status("16204\t7", "0000000000000000"), 15),
            Some(false)
        );
        assert_eq!(drops_signal(&status("16204", "0"), 15), Some(false));
        assert_eq!(drops_signal("Name:\tx\n", 15), None);
        assert_eq!(drops_signal(&status("1", "0"), 0), None);
    }
}
