//! Container state as CRI reports it, from the record, the monitor's answer or the exit
//! record the monitor left on disk.

use k8s_cri::v1 as cri;

use super::record::ContainerRecord;
pub use super::record::Exit;
use crate::monitor::proto;

/// The lifecycle facts CRI reports, wherever they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub state: cri::ContainerState,
    pub pid: i32,
    pub started_at: i64,
    pub exit: Option<Exit>,
}

impl Observed {
    pub fn from_monitor(s: &proto::State) -> Observed {
        use proto::state::Status;
        let state = match Status::try_from(s.status).unwrap_or(Status::Unknown) {
            Status::Created => cri::ContainerState::ContainerCreated,
            Status::Running => cri::ContainerState::ContainerRunning,
            Status::Exited => cri::ContainerState::ContainerExited,
            Status::Unknown => cri::ContainerState::ContainerUnknown,
        };
        let exit = (state == cri::ContainerState::ContainerExited).then(|| Exit {
            exit_code: s.exit_code,
            finished_at: s.finished_at,
            reason: s.reason.clone(),
            message: s.message.clone(),
        });
        Observed {
            state,
            pid: s.pid,
            started_at: s.started_at,
            exit,
        }
    }

    pub fn exited(exit: Exit, started_at: i64) -> Observed {
        Observed {
            state: cri::ContainerState::ContainerExited,
            pid: 0,
            started_at,
            exit: Some(exit),
        }
    }

    /// Nothing reliable is known (the monitor does not answer and left no exit record).
    pub fn unknown() -> Observed {
        Observed {
            state: cri::ContainerState::ContainerUnknown,
            pid: 0,
            started_at: 0,
            exit: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == cri::ContainerState::ContainerRunning
    }

    pub fn is_exited(&self) -> bool {
        self.state == cri::ContainerState::ContainerExited
    }
}

/// The reason CRI reports for an exit code, as containerd does.
pub fn exit_reason(code: i32) -> &'static str {
    if code == 0 { "Completed" } else { "Error" }
}

pub fn matches_filter(c: &cri::Container, f: &cri::ContainerFilter) -> bool {
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.state.is_none_or(|s| s.state == c.state)
        && f.label_selector
            .iter()
            .all(|(k, v)| c.labels.get(k) == Some(v))
}

pub fn summary_of(rec: &ContainerRecord, o: &Observed) -> cri::Container {
    cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: rec.config.metadata.clone(),
        image: rec.config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        state: o.state as i32,
        created_at: rec.created_at,
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
    }
}

pub fn status_of(rec: &ContainerRecord, o: &Observed) -> cri::ContainerStatus {
    let exit = o.exit.clone();
    let started_at = if o.started_at != 0 {
        o.started_at
    } else {
        rec.started_at
    };
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: o.state as i32,
        created_at: rec.created_at,
        started_at,
        finished_at: exit.as_ref().map_or(0, |e| e.finished_at),
        exit_code: exit.as_ref().map_or(0, |e| e.exit_code),
        image: rec.config.image.clone(),
        image_ref: rec.image_ref.clone(),
        image_id: rec.image_id.clone(),
        reason: exit.as_ref().map_or(String::new(), |e| {
            if e.reason.is_empty() {
                exit_reason(e.exit_code).into()
            } else {
                e.reason.clone()
            }
        }),
        message: exit.map(|e| e.message).unwrap_or_default(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        mounts: mounts_of(rec),
        user: rec.user.clone(),
        stop_signal: match rec.stop_signal {
            0 => cri::Signal::RuntimeDefault as i32,
            n => crate::container::signal::to_cri(n) as i32,
        },
        log_path: rec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                ..Default::default()
            }),
    }
}

/// The requested mounts, an image volume's with the id of the image it mounted
/// (`ImageSpec.image_ref`, what kubelet reports as the volume's digest).
fn mounts_of(rec: &ContainerRecord) -> Vec<cri::Mount> {
    let mut mounts = rec.config.mounts.clone();
    for m in &mut mounts {
        let volume = rec
            .image_volumes
            .iter()
            .find(|v| v.container_path == m.container_path);
        if let (Some(v), Some(image)) = (volume, m.image.as_mut()) {
            image.image_ref = v.image_id.clone();
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_states_map_to_cri() {
        let s = proto::State {
            status: proto::state::Status::Exited as i32,
            exit_code: 7,
            finished_at: 5,
            reason: "Error".into(),
            ..Default::default()
        };
        let o = Observed::from_monitor(&s);
        assert!(o.is_exited());
        assert_eq!(o.exit.unwrap().exit_code, 7);
        let s = proto::State {
            status: proto::state::Status::Running as i32,
            pid: 9,
            ..Default::default()
        };
        let o = Observed::from_monitor(&s);
        assert!(o.is_running() && o.exit.is_none() && o.pid == 9);
    }

    #[test]
    fn container_filter() {
        let c = cri::Container {
            id: "c1234".into(),
            pod_sandbox_id: "p999".into(),
            state: cri::ContainerState::ContainerRunning as i32,
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        };
        let mut f = cri::ContainerFilter::default();
        assert!(matches_filter(&c, &f));
        f.pod_sandbox_id = "p9".into();
        f.id = "c12".into();
        assert!(matches_filter(&c, &f));
        f.state = Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerExited as i32,
        });
        assert!(!matches_filter(&c, &f));
        f.state = None;
        f.label_selector.insert("a".into(), "c".into());
        assert!(!matches_filter(&c, &f));
    }

    #[test]
    fn reasons() {
        assert_eq!(exit_reason(0), "Completed");
        assert_eq!(exit_reason(137), "Error");
    }
}
