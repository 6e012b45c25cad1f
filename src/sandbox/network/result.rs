//! Reading the pod's addresses out of a CNI ADD result (spec 0.3.x, 0.4.0 and 1.0.0 share
//! the `interfaces`/`ips` shape; the pre-0.3 `ip4`/`ip6` shape is read as a fallback).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The outcome of ADD for a whole network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkResult {
    /// The pod's addresses, IPv4 first; the first is the primary pod IP. Empty when the
    /// network assigned none.
    pub ips: Vec<IpAddr>,
    /// The last plugin's result, verbatim: DEL gets it back as `prevResult`.
    pub raw: Value,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIp>,
    ip4: Option<LegacyIp>,
    ip6: Option<LegacyIp>,
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(default)]
    name: String,
    /// The netns path; empty for host-side interfaces.
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: String,
}

/// Extracts the pod IPs: those on `ifname` inside the sandbox when the result says which
/// interface an address is on, else every address. Loopback addresses (from the
/// `loopback` plugin) never count.
pub fn parse_result(raw: &Value, ifname: &str) -> Result<Vec<IpAddr>, String> {
    let parsed = RawResult::deserialize(raw).map_err(|e| e.to_string())?;
    let on_pod_iface = |ip: &RawIp| {
        ip.interface
            .and_then(|i| parsed.interfaces.get(i))
            .is_some_and(|iface| iface.name == ifname && !iface.sandbox.is_empty())
    };
    let chosen: Vec<&RawIp> = if parsed.ips.iter().any(on_pod_iface) {
        parsed.ips.iter().filter(|ip| on_pod_iface(ip)).collect()
    } else {
        parsed.ips.iter().collect()
    };
    let mut cidrs: Vec<&str> = chosen.iter().map(|ip| ip.address.as_str()).collect();
    cidrs.extend(parsed.ip4.iter().chain(&parsed.ip6).map(|l| l.ip.as_str()));

    let mut ips = Vec::new();
    for cidr in cidrs {
        let addr = cidr.split('/').next().unwrap_or(cidr);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("address {cidr:?} is not an IP/prefix"))?;
        if !ip.is_loopback() && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    // Stable: keeps the plugin's order within each family.
    ips.sort_by_key(|ip| ip.is_ipv6());
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ips(raw: Value) -> Vec<String> {
        let ips = parse_result(&raw, "eth0").unwrap();
        ips.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn v1_0_bridge_result() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/x/ns/net"},
                {"name": "lo", "sandbox": "/run/x/ns/net"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.1.0.1/24", "interface": 0},
                {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
                {"address": "127.0.0.1/8", "interface": 3}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        assert_eq!(ips(raw), ["10.244.1.5", "fd00::5"]);
    }

    #[test]
    fn v0_3_and_v0_4_results() {
        let raw = json!({
            "cniVersion": "0.3.1",
            "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [{"version": "4", "address": "10.22.0.9/16", "gateway": "10.22.0.1", "interface": 0}],
            "dns": {}
        });
        assert_eq!(ips(raw), ["10.22.0.9"]);
        // host-local alone reports no interfaces: every address counts.
        let raw = json!({
            "cniVersion": "0.4.0",
            "ips": [{"version": "6", "address": "2001:db8::2/64"}, {"version": "4", "address": "10.0.0.2/24"}]
        });
        assert_eq!(ips(raw), ["10.0.0.2", "2001:db8::2"]);
    }

    #[test]
    fn legacy_and_empty_results() {
        let raw =
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.9.0.3/16"}, "ip6": {"ip": "fd::3/64"}});
        assert_eq!(ips(raw), ["10.9.0.3", "fd::3"]);
        assert!(ips(json!({"cniVersion": "1.0.0"})).is_empty());
        let err = parse_result(&json!({"ips": [{"address": "nonsense"}]}), "eth0").unwrap_err();
        assert!(err.contains("nonsense"));
        assert!(parse_result(&json!({"ips": "x"}), "eth0").is_err());
    }
}
