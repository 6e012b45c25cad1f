//! RunPodSandbox request validation, before any namespace, file or cgroup is created.
//!
//! Metadata becomes part of directory names, the hostname and DNS settings are written
//! into files the containers read, so anything that could escape a directory or inject a
//! line into /etc/resolv.conf is refused here.

use std::net::IpAddr;
use std::path::Path;

use k8s_cri::v1::{NamespaceMode, NamespaceOption, PodSandboxConfig, PortMapping, Protocol};

use crate::validation::{InputError, check_hostname, check_name, has_parent};

pub fn validate_pod_config(c: &PodSandboxConfig) -> Result<(), InputError> {
    let meta = c.metadata.as_ref().ok_or(InputError::Missing {
        field: "pod sandbox metadata",
    })?;
    check_name("pod name", &meta.name)?;
    check_name("pod namespace", &meta.namespace)?;
    check_name("pod uid", &meta.uid)?;
    if !c.hostname.is_empty() {
        check_hostname(&c.hostname)?;
    }
    if !c.log_directory.is_empty() {
        check_log_directory(&c.log_directory)?;
    }
    for pm in &c.port_mappings {
        check_port_mapping(pm)?;
    }
    let ns = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let options = ns.and_then(|s| s.namespace_options.as_ref());
    check_user_namespace(options)?;
    if let Some(o) = options {
        check_namespace_options(o)?;
    }
    if let Some(dns) = &c.dns_config {
        for server in &dns.servers {
            server
                .parse::<IpAddr>()
                .map_err(|_| InputError::invalid("dns server", server, "must be an IP address"))?;
        }
        for search in &dns.searches {
            check_resolv_word("dns search domain", search)?;
        }
        for option in &dns.options {
            check_resolv_word("dns option", option)?;
        }
    }
    Ok(())
}

/// NODE, or POD with one uid and one gid mapping where the host can id-map the image
/// layers (`userns::supported`, which Status announces); CONTAINER and TARGET are
/// invalid for user namespaces (api.proto). A POD request has its mappings checked
/// first, so a bad mapping is named as such, then the other namespaces it goes with.
pub fn check_user_namespace(ns: Option<&NamespaceOption>) -> Result<(), InputError> {
    let Some(userns) = ns.and_then(|n| n.userns_options.as_ref()) else {
        return Ok(());
    };
    let mode = NamespaceMode::try_from(userns.mode);
    let reason = match mode {
        Ok(NamespaceMode::Node) => return Ok(()),
        Ok(NamespaceMode::Pod) => {
            super::userns::check_mappings(userns)?;
            if let Some(o) = ns {
                super::userns::check_combination(o)?;
            }
            if super::userns::supported() {
                return Ok(());
            }
            "this host cannot id-map the image layers, which a pod user namespace needs"
        }
        Ok(_) => "a user namespace is the pod's or the node's: POD or NODE",
        Err(_) => "unknown namespace mode",
    };
    let shown = mode.map_or(userns.mode.to_string(), |m| m.as_str_name().to_string());
    Err(InputError::invalid("user namespace mode", shown, reason))
}

/// Every mode of the pod's namespaces but TARGET, which only a container can use (it
/// names another container); unknown numbers are refused, not read as a default.
fn check_namespace_options(o: &NamespaceOption) -> Result<(), InputError> {
    for (field, mode) in [
        ("network namespace mode", o.network),
        ("pid namespace mode", o.pid),
        ("ipc namespace mode", o.ipc),
    ] {
        match NamespaceMode::try_from(mode) {
            Ok(NamespaceMode::Target) => {
                return Err(InputError::invalid(
                    field,
                    "TARGET",
                    "TARGET is for a container joining another container, not for a pod",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(InputError::invalid(
                    field,
                    mode.to_string(),
                    "not a namespace mode (POD, CONTAINER, NODE)",
                ));
            }
        }
    }
    if !o.target_id.is_empty() {
        return Err(InputError::invalid(
            "namespace target_id",
            &o.target_id,
            "a pod has no target container",
        ));
    }
    Ok(())
}

fn check_log_directory(dir: &str) -> Result<(), InputError> {
    let path = Path::new(dir);
    let reason = if dir.contains('\0') {
        "must not contain NUL bytes"
    } else if !path.is_absolute() {
        "must be an absolute path"
    } else if has_parent(path) {
        "must not contain '..' components"
    } else {
        return Ok(());
    };
    Err(InputError::invalid("log_directory", dir, reason))
}

fn check_port_mapping(pm: &PortMapping) -> Result<(), InputError> {
    if !(1..=65535).contains(&pm.container_port) {
        return Err(InputError::invalid(
            "port mapping container_port",
            pm.container_port.to_string(),
            "must be between 1 and 65535",
        ));
    }
    // 0 means "not published on the host".
    if !(0..=65535).contains(&pm.host_port) {
        return Err(InputError::invalid(
            "port mapping host_port",
            pm.host_port.to_string(),
            "must be between 0 and 65535",
        ));
    }
    if Protocol::try_from(pm.protocol).is_err() {
        return Err(InputError::invalid(
            "port mapping protocol",
            pm.protocol.to_string(),
            "must be TCP, UDP or SCTP",
        ));
    }
    if !pm.host_ip.is_empty() && pm.host_ip.parse::<IpAddr>().is_err() {
        return Err(InputError::invalid(
            "port mapping host_ip",
            &pm.host_ip,
            "must be an IP address",
        ));
    }
    Ok(())
}

/// One whitespace-free word of /etc/resolv.conf: a newline would inject a directive.
fn check_resolv_word(field: &'static str, value: &str) -> Result<(), InputError> {
    if value.is_empty() || value.chars().any(|ch| ch.is_whitespace() || ch == '\0') {
        return Err(InputError::invalid(
            field,
            value,
            "must be a single non-empty word without spaces or newlines",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{DnsConfig, PodSandboxMetadata};

    fn valid() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "nginx".into(),
                uid: "0f2c-11".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "nginx-1.example".into(),
            log_directory: "/var/log/pods/default_nginx_0f2c-11".into(),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            }],
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into(), "fd00::a".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            ..Default::default()
        }
    }

    fn check(f: impl FnOnce(&mut PodSandboxConfig)) -> Result<(), InputError> {
        let mut c = valid();
        f(&mut c);
        validate_pod_config(&c)
    }

    fn meta(c: &mut PodSandboxConfig) -> &mut PodSandboxMetadata {
        c.metadata.get_or_insert_with(Default::default)
    }

    fn ns(c: &mut PodSandboxConfig) -> &mut NamespaceOption {
        (c.linux.get_or_insert_with(Default::default))
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options
            .get_or_insert_with(Default::default)
    }

    #[test]
    fn accepts_valid_configs() {
        check(|_| {}).expect("valid");
        check(|c| c.hostname.clear()).expect("no hostname");
        check(|c| c.log_directory.clear()).expect("no log directory");
        check(|c| c.dns_config = None).expect("no dns");
        check(|c| c.port_mappings[0].host_port = 0).expect("unpublished port");
        check(|c| c.port_mappings[0].host_ip.clear()).expect("any host ip");
        check(|c| c.hostname = format!("{}.{}", "a".repeat(31), "b".repeat(32)))
            .expect("64-char hostname");
        check(|c| meta(c).name = "n".repeat(253)).expect("253-char name");
        for mode in [
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Node,
        ] {
            check(|c| {
                let o = ns(c);
                (o.pid, o.ipc, o.network) = (mode as i32, mode as i32, mode as i32);
            })
            .expect("pod, container and node modes");
        }
        check(|c| userns(c, NamespaceMode::Node)).expect("the node's user namespace");
    }

    fn userns(c: &mut PodSandboxConfig, mode: NamespaceMode) {
        let linux = c.linux.get_or_insert_with(Default::default);
        let sc = linux.security_context.get_or_insert_with(Default::default);
        let ns = sc.namespace_options.get_or_insert_with(Default::default);
        ns.userns_options = Some(k8s_cri::v1::UserNamespace {
            mode: mode as i32,
            ..Default::default()
        });
    }

    /// A POD user namespace with good mappings is refused where id-mapping was not found
    /// to work (unit tests never run the start-up check).
    #[test]
    fn pod_userns_is_refused_after_its_mappings_are_checked() {
        let map = k8s_cri::v1::IdMapping {
            host_id: 1000,
            container_id: 0,
            length: 100000,
        };
        let err = check(|c| {
            userns(c, NamespaceMode::Pod);
            let ns = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
            let opts = ns.namespace_options.as_mut().unwrap();
            opts.pid = NamespaceMode::Container as i32;
            let u = opts.userns_options.as_mut().unwrap();
            (u.uids, u.gids) = (vec![map], vec![map]);
        })
        .unwrap_err();
        assert!(err.to_string().contains("cannot id-map"), "{err}");
        let err = check(|c| userns(c, NamespaceMode::Pod)).unwrap_err();
        assert!(err.to_string().contains("needs one mapping"), "{err}");
    }

    #[test]
    fn rejects_bad_fields() {
        type Mutation = fn(&mut PodSandboxConfig);
        let cases: &[(&str, Mutation)] = &[
            ("no metadata", |c| c.metadata = None),
            ("empty name", |c| meta(c).name.clear()),
            ("empty namespace", |c| meta(c).namespace.clear()),
            ("empty uid", |c| meta(c).uid.clear()),
            ("slash in name", |c| meta(c).name = "a/b".into()),
            ("dotdot namespace", |c| meta(c).namespace = "..".into()),
            ("NUL in uid", |c| meta(c).uid = "u\0".into()),
            ("long name", |c| meta(c).name = "n".repeat(254)),
            ("long hostname", |c| c.hostname = "a".repeat(65)),
            ("long label", |c| c.hostname = "a".repeat(64)),
            ("hostname underscore", |c| c.hostname = "a_b".into()),
            ("hostname dash", |c| c.hostname = "-a".into()),
            ("hostname newline", |c| c.hostname = "a\nb".into()),
            ("relative log dir", |c| c.log_directory = "var/log".into()),
            ("dotdot log dir", |c| {
                c.log_directory = "/var/log/../../etc".into()
            }),
            ("container port 0", |c| {
                c.port_mappings[0].container_port = 0
            }),
            ("container port big", |c| {
                c.port_mappings[0].container_port = 65536
            }),
            ("host port negative", |c| c.port_mappings[0].host_port = -1),
            ("bad protocol", |c| c.port_mappings[0].protocol = 9),
            ("bad host ip", |c| {
                c.port_mappings[0].host_ip = "localhost".into()
            }),
            ("dns server name", |c| {
                c.dns_config.as_mut().unwrap().servers = vec!["dns.example".into()]
            }),
            ("dns search newline", |c| {
                c.dns_config.as_mut().unwrap().searches = vec!["a\nnameserver 1.1.1.1".into()]
            }),
            ("dns option space", |c| {
                c.dns_config.as_mut().unwrap().options = vec!["ndots:5 x".into()]
            }),
            ("userns pod", |c| userns(c, NamespaceMode::Pod)),
            ("userns container", |c| userns(c, NamespaceMode::Container)),
            ("userns target", |c| userns(c, NamespaceMode::Target)),
            ("unknown pid mode", |c| ns(c).pid = 7),
            ("unknown network mode", |c| ns(c).network = -1),
            ("pod pid TARGET", |c| {
                ns(c).pid = NamespaceMode::Target as i32
            }),
            ("pod ipc TARGET", |c| {
                ns(c).ipc = NamespaceMode::Target as i32
            }),
            ("pod target id", |c| ns(c).target_id = "abc".into()),
        ];
        for (what, mutate) in cases {
            let err = check(*mutate).expect_err(what);
            assert_eq!(
                crate::error::Classify::kind(&err),
                crate::error::Kind::InvalidArgument,
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let err = check(|c| c.hostname = "a_b".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid hostname \"a_b\": may only contain letters, digits, '-' and '.'"
        );
        let err = check(|c| c.metadata = None).unwrap_err();
        assert_eq!(err.to_string(), "pod sandbox metadata is required");
    }
}
