//! What a container is doing now: from its cached exit, its monitor, or the exit record
//! the monitor left on disk.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::{ContainerManager, ContainerPhase, ContainerRecord, EXIT_FILE};
use crate::container::status::{Exit, Observed};
use crate::error::Result;
use crate::events::EventType;
use crate::monitor;
use crate::store::read_json;

/// How often a stop polls the monitor for the exit.
const STOP_POLL: Duration = Duration::from_millis(20);

impl ContainerManager {
    /// What the container is doing now; caches the exit in the record once known.
    pub(super) async fn observe(&self, rec: &ContainerRecord) -> Result<Observed> {
        if let Some(exit) = &rec.exit {
            return Ok(Observed::exited(exit.clone(), rec.started_at));
        }
        let (observed, known) = match self.monitor(rec).state(&rec.id).await {
            Ok(s) => (Observed::from_monitor(&s), true),
            Err(e) if e.is_unavailable() || e.is_not_found() => self.observe_offline(rec)?,
            Err(e) => return Err(e.into()),
        };
        // Only an exit the monitor reported (live or in exit.json) is a fact worth
        // keeping; a guess made while the monitor is unreachable is asked again next time.
        if known
            && let Some(exit) = &observed.exit
            && let Some(entry) = self.containers.find(&rec.id)?
        {
            let exit = exit.clone();
            // Several callers may learn of the exit at once; the first to record it
            // reports it.
            let mut first = false;
            self.containers
                .save(&entry, |r| {
                    first = r.exit.is_none();
                    r.exit = Some(exit);
                })
                .await?;
            if first {
                self.changes
                    .container(EventType::ContainerStoppedEvent, &rec.id, &rec.pod_id);
            }
        }
        Ok(observed)
    }

    /// The state of a container whose monitor does not answer: its exit record if it
    /// left one (a fact: `true`), otherwise a guess that it died with its monitor (a
    /// reboot, or the monitor was killed: `false`).
    fn observe_offline(&self, rec: &ContainerRecord) -> Result<(Observed, bool)> {
        let path = self.data_dir(&rec.id).join(EXIT_FILE);
        if let Some(r) = read_json::<monitor::ExitRecord>(&path)? {
            let exit = Observed::exited(
                Exit {
                    exit_code: r.exit_code,
                    finished_at: r.finished_at,
                    reason: r.reason,
                    message: r.message,
                },
                rec.started_at,
            );
            return Ok((exit, true));
        }
        if rec.phase == ContainerPhase::Creating {
            return Ok((Observed::unknown(), false));
        }
        let guess = Observed::exited(
            Exit {
                exit_code: 255,
                finished_at: crate::id::now_ns(),
                reason: "Unknown".into(),
                message: "the container's monitor is gone and left no exit record".into(),
            },
            rec.started_at,
        );
        Ok((guess, false))
    }

    /// Polls until the container has exited (true) or `limit` passes (false).
    pub(super) async fn wait_exit(&self, rec: &ContainerRecord, limit: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let rec = self.containers.get(&rec.id).unwrap_or_else(|_| rec.clone());
            let o = self.observe(&rec).await?;
            if o.is_exited() || o.state == cri::ContainerState::ContainerUnknown {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }
}
