//! Host port mappings, passed to plugins with the `portMappings` capability (portmap) in
//! `runtimeConfig`, on ADD and again on DEL (portmap removes nothing without them).

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxError;
use k8s_cri::v1 as cri;

/// One mapping in the CNI `portMappings` runtime config format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl PortMapping {
    /// The CNI form of the pod's CRI port mappings. Like containerd, mappings without a
    /// host port are dropped: they only document the container port.
    pub fn from_cri(mappings: &[cri::PortMapping]) -> Result<Vec<PortMapping>, SandboxError> {
        let mut out = Vec::new();
        for m in mappings.iter().filter(|m| m.host_port > 0) {
            let invalid = |what: &str| SandboxError::InvalidPortMapping(format!("{what} in {m:?}"));
            let port = |p: i32| u16::try_from(p).ok().filter(|p| *p > 0);
            let protocol = match cri::Protocol::try_from(m.protocol) {
                Ok(cri::Protocol::Tcp) => "tcp",
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                Err(_) => return Err(invalid("unknown protocol")),
            };
            out.push(PortMapping {
                host_port: port(m.host_port).ok_or_else(|| invalid("invalid host port"))?,
                container_port: port(m.container_port)
                    .ok_or_else(|| invalid("invalid container port"))?,
                protocol: protocol.to_owned(),
                host_ip: m.host_ip.clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri(protocol: i32, container_port: i32, host_port: i32) -> cri::PortMapping {
        cri::PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: String::new(),
        }
    }

    #[test]
    fn converts_cri_mappings() {
        let got = PortMapping::from_cri(&[cri(1, 53, 5353), cri(0, 80, 0)]).unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}])
        );
        let mut with_ip = cri(0, 80, 8080);
        with_ip.host_ip = "127.0.0.1".into();
        let got = PortMapping::from_cri(&[with_ip]).unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap()[0]["hostIP"],
            "127.0.0.1"
        );
    }

    #[test]
    fn rejects_bad_mappings() {
        for bad in [
            cri(7, 80, 8080),
            cri(0, 0, 8080),
            cri(0, 80, 70000),
            cri(0, -1, 1),
        ] {
            let err = PortMapping::from_cri(&[bad]).unwrap_err();
            assert!(matches!(err, SandboxError::InvalidPortMapping(_)));
        }
    }
}
