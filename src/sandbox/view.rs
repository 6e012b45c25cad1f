//! The CRI view of a pod record: list items, status, filters.

use k8s_cri::v1 as cri;

use super::namespaces::NamespaceSet;
use super::record::{PodPhase, PodRecord};

pub(super) fn namespace_options(c: &cri::PodSandboxConfig) -> Option<cri::NamespaceOption> {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
}

impl PodRecord {
    /// Whether the pod has a network namespace of its own (not the host's).
    pub fn own_network(&self) -> bool {
        NamespaceSet::from_cri(namespace_options(&self.config).as_ref()).net
    }
}

fn state_of(rec: &PodRecord) -> i32 {
    match rec.phase {
        PodPhase::Ready => cri::PodSandboxState::SandboxReady as i32,
        _ => cri::PodSandboxState::SandboxNotready as i32,
    }
}

pub(super) fn summary_of(rec: &PodRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state_of(rec),
        created_at: rec.created_at,
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

pub(super) fn status_of(rec: &PodRecord) -> cri::PodSandboxStatus {
    let mut ips = rec.ips.iter().map(|ip| ip.to_string());
    let network = cri::PodSandboxNetworkStatus {
        ip: ips.next().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
    };
    // Without options the pod gets kubelet's defaults: its own network and IPC, and a
    // PID namespace per container (the zero value would claim a shared pod PID ns).
    let options = namespace_options(&rec.config).unwrap_or(cri::NamespaceOption {
        pid: cri::NamespaceMode::Container as i32,
        ..Default::default()
    });
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state_of(rec),
        created_at: rec.created_at,
        network: Some(network),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(options),
            }),
        }),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        runtime_handler: rec.runtime_handler.clone(),
    }
}

pub(super) fn matches_filter(p: &cri::PodSandbox, f: &cri::PodSandboxFilter) -> bool {
    (f.id.is_empty() || p.id.starts_with(&f.id))
        && f.state.is_none_or(|s| s.state == p.state)
        && f.label_selector
            .iter()
            .all(|(k, v)| p.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, state: i32, labels: &[(&str, &str)]) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.into(),
            state,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_by_id_prefix_state_and_labels() {
        let p = pod("abcdef", 0, &[("app", "web"), ("tier", "fe")]);
        let f = |id: &str, state: Option<i32>, labels: &[(&str, &str)]| cri::PodSandboxFilter {
            id: id.into(),
            state: state.map(|state| cri::PodSandboxStateValue { state }),
            label_selector: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert!(matches_filter(&p, &f("", None, &[])));
        assert!(matches_filter(&p, &f("abc", Some(0), &[("app", "web")])));
        assert!(!matches_filter(&p, &f("abd", None, &[])));
        assert!(!matches_filter(&p, &f("", Some(1), &[])));
        assert!(!matches_filter(&p, &f("", None, &[("app", "db")])));
        assert!(!matches_filter(&p, &f("", None, &[("missing", "x")])));
    }
}
