//! Per-pod files that every container of the pod gets bind-mounted: /etc/resolv.conf,
//! /etc/hostname and /etc/hosts. Written once at RunPodSandbox, atomically.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_cri::v1::DnsConfig;

use super::SandboxError;
use crate::store::write_atomic;
use crate::validation::check_hostname;

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Writes `<dir>/resolv.conf`: a copy of the host's when `dns` is absent or empty (as
/// kubelet asks for pods with `dnsPolicy: Default`), else rendered from `dns`.
pub fn write_resolv_conf(dir: &Path, dns: Option<&DnsConfig>) -> Result<PathBuf, SandboxError> {
    write_resolv_conf_from(dir, dns, Path::new(HOST_RESOLV_CONF))
}

fn write_resolv_conf_from(
    dir: &Path,
    dns: Option<&DnsConfig>,
    host: &Path,
) -> Result<PathBuf, SandboxError> {
    let content = match dns.filter(|d| !is_empty(d)) {
        Some(d) => render_resolv_conf(d)?.into_bytes(),
        None => match std::fs::read(host) {
            Ok(bytes) => bytes,
            // A host without resolv.conf: the pod resolves nothing, like the host.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(SandboxError::io("reading", host, e)),
        },
    };
    let path = dir.join("resolv.conf");
    write_atomic(&path, &content)?;
    Ok(path)
}

fn is_empty(dns: &DnsConfig) -> bool {
    dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()
}

/// resolv.conf lines in the order containerd writes them: search, nameservers, options.
pub fn render_resolv_conf(dns: &DnsConfig) -> Result<String, SandboxError> {
    for word in dns.searches.iter().chain(&dns.options) {
        if word.is_empty() || word.chars().any(|c| c.is_whitespace() || c == '#') {
            return Err(SandboxError::InvalidDns(format!(
                "search domain or option {word:?} must be one non-empty word"
            )));
        }
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        let ip: IpAddr = server.trim().parse().map_err(|_| {
            SandboxError::InvalidDns(format!("nameserver {server:?} is not an IP address"))
        })?;
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

/// Writes `<dir>/hostname` containing `hostname` and a newline.
pub fn write_hostname(dir: &Path, hostname: &str) -> Result<PathBuf, SandboxError> {
    check_hostname(hostname)?;
    let path = dir.join("hostname");
    write_atomic(&path, format!("{hostname}\n").as_bytes())?;
    Ok(path)
}

/// Writes `<dir>/hosts` like kubelet's managed hosts file: the localhost entries and,
/// when the pod has an IP, `<ip>\t<hostname>`.
pub fn write_hosts(
    dir: &Path,
    hostname: &str,
    ip: Option<IpAddr>,
) -> Result<PathBuf, SandboxError> {
    check_hostname(hostname)?;
    let path = dir.join("hosts");
    write_atomic(&path, render_hosts(hostname, ip).as_bytes())?;
    Ok(path)
}

pub fn render_hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        DnsConfig {
            servers: v(servers),
            searches: v(searches),
            options: v(options),
        }
    }

    #[test]
    fn renders_cluster_dns() {
        let d = dns(
            &["10.96.0.10", "fd00::a"],
            &["default.svc.cluster.local", "svc.cluster.local"],
            &["ndots:5", "edns0"],
        );
        assert_eq!(
            render_resolv_conf(&d).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n"
        );
        assert_eq!(
            render_resolv_conf(&dns(&["1.1.1.1"], &[], &[])).unwrap(),
            "nameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn rejects_injection() {
        for d in [
            dns(&["1.1.1.1\nnameserver 6.6.6.6"], &[], &[]),
            dns(&["dns.example"], &[], &[]),
            dns(&[], &["a b"], &[]),
            dns(&[], &[], &["ndots:5\nsearch evil"]),
            dns(&[], &[""], &[]),
        ] {
            assert!(
                matches!(render_resolv_conf(&d), Err(SandboxError::InvalidDns(_))),
                "{d:?}"
            );
        }
    }

    #[test]
    fn copies_host_resolv_conf_when_no_dns() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-resolv.conf");
        std::fs::write(&host, "nameserver 192.0.2.1\n").unwrap();
        let empty = DnsConfig::default();
        for d in [None, Some(&empty)] {
            let p = write_resolv_conf_from(tmp.path(), d, &host).unwrap();
            assert_eq!(
                std::fs::read_to_string(p).unwrap(),
                "nameserver 192.0.2.1\n"
            );
        }
        let missing = tmp.path().join("nope");
        let p = write_resolv_conf_from(tmp.path(), None, &missing).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "");
        let d = dns(&["10.0.0.1"], &[], &[]);
        let p = write_resolv_conf_from(tmp.path(), Some(&d), &host).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "nameserver 10.0.0.1\n");
    }

    #[test]
    fn hostname_and_hosts() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write_hostname(tmp.path(), "web-0").unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "web-0\n");
        assert!(write_hostname(tmp.path(), "bad/name").is_err());

        let p = write_hosts(tmp.path(), "web-0", Some("10.244.1.7".parse().unwrap())).unwrap();
        let hosts = std::fs::read_to_string(p).unwrap();
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(hosts.ends_with("10.244.1.7\tweb-0\n"));
        assert!(!render_hosts("web-0", None).contains("web-0"));
    }
}
