//! The real Debian plugins (bridge `criust0`, host-local, portmap, loopback) against a
//! netns pinned by `namespaces`. Needs root and /usr/lib/cni; skipped otherwise.
//!
//! `isGateway` stays off so the bridge plugin does not switch on the host's ip_forward;
//! the test puts the gateway address on the bridge itself so the host can reach the pod.
//! Everything is undone by a guard, even when an assertion fails: the netns (and with it
//! the veth pair), the bridge, IPAM leases (in the tempdir), ip_forward if it changed.

use super::*;
use crate::sandbox::namespaces::{create_namespaces, remove_namespaces};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Command as Proc;

const PLUGIN_DIR: &str = "/usr/lib/cni";
const BRIDGE: &str = "criust0";
const NETWORK: &str = "crius-root-test";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

struct Cleanup {
    pod_dir: PathBuf,
    ip_forward: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = remove_namespaces(&self.pod_dir);
        let _ = Proc::new("ip").args(["link", "del", BRIDGE]).output();
        if std::fs::read_to_string(IP_FORWARD).ok().as_ref() != Some(&self.ip_forward) {
            let _ = std::fs::write(IP_FORWARD, &self.ip_forward);
        }
    }
}

fn conflist(ipam_dir: &Path) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": false, "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "10.244.250.0/24", "gateway": "10.244.250.1"}]],
                    "dataDir": ipam_dir
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    })
    .to_string()
}

fn run(args: &[&str]) -> std::process::Output {
    Proc::new(args[0]).args(&args[1..]).output().unwrap()
}

fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).status.success()
}

/// The host end of the veth: an interface outside the sandbox that is not the bridge.
fn host_veth(raw: &Value) -> String {
    let ifaces = raw["interfaces"].as_array().unwrap();
    let veth = ifaces
        .iter()
        .find(|i| i.get("sandbox").is_none_or(|s| s == "") && i["name"] != BRIDGE);
    veth.unwrap()["name"].as_str().unwrap().to_owned()
}

/// A TCP round trip from the host to a listener inside the pod netns.
fn tcp_roundtrip(netns: &Path, ip: IpAddr) {
    let netns = netns.to_owned();
    let listener = std::thread::spawn(move || {
        let f = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind((ip, 0)).unwrap()
    })
    .join()
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server.write_all(b"pod").unwrap();
    let mut buf = [0u8; 3];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pod");
}

#[tokio::test(flavor = "multi_thread")]
async fn real_plugins_attach_and_detach() {
    let plugins = Path::new(PLUGIN_DIR);
    if !nix::unistd::geteuid().is_root() || !plugins.join("bridge").exists() {
        eprintln!("skipped: needs root and {PLUGIN_DIR}");
        return;
    }
    assert!(
        !link_exists(BRIDGE),
        "{BRIDGE} exists already; another run?"
    );
    let tmp = tempfile::tempdir().unwrap();
    let pod_dir = tmp.path().join("pod");
    let _cleanup = Cleanup {
        pod_dir: pod_dir.clone(),
        ip_forward: std::fs::read_to_string(IP_FORWARD).unwrap_or_default(),
    };
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        attach_and_detach(tmp.path(), version).await;
    }
    failed_add_leaves_nothing(tmp.path()).await;
}

/// One pod's life on the network `version` of the config declares.
async fn attach_and_detach(tmp: &Path, version: &str) {
    let pod_dir = tmp.join("pod");
    let ns = create_namespaces(&pod_dir, "cni-root-test").unwrap();
    let conf_dir = tmp.join(format!("net.d-{version}"));
    std::fs::create_dir(&conf_dir).unwrap();
    let ipam = tmp.join("ipam");
    let conf = conflist(&ipam).replace("\"1.0.0\"", &format!("\"{version}\""));
    std::fs::write(conf_dir.join("10-test.conflist"), conf).unwrap();

    let cni = Cni::new(conf_dir, vec![PLUGIN_DIR.into()]).with_result_cache(tmp.join("cache"));
    let net = cni.load_network().unwrap();
    assert_eq!(net.cni_version, version);
    let att = Attachment {
        container_id: "criusroottest".into(),
        netns: ns.net.clone(),
        ifname: "eth0".into(),
        pod_name: "root-test".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-root-test".into(),
        port_mappings: Vec::new(),
    };
    let result = cni.add(&net, &att).await.unwrap();
    let ip = result.ips[0];
    assert!(ip.to_string().starts_with("10.244.250."), "{result:?}");
    let lease = ipam.join(NETWORK).join(ip.to_string());
    assert!(lease.exists());
    let veth = host_veth(&result.raw);
    assert!(link_exists(&veth));

    let nsenter_net = format!("--net={}", ns.net.display());
    let addrs = run(&["nsenter", &nsenter_net, "ip", "-j", "addr", "show", "eth0"]);
    assert!(String::from_utf8_lossy(&addrs.stdout).contains(&format!("\"{ip}\"")));
    let gateway = ["ip", "addr", "replace", "10.244.250.1/24", "dev", BRIDGE];
    assert!(run(&gateway).status.success());
    tcp_roundtrip(&ns.net, ip);

    cni.del(&net, &att).await.unwrap();
    assert!(!link_exists(&veth), "{veth} survived DEL");
    assert!(!lease.exists(), "lease survived DEL");
    cni.del(&net, &att).await.unwrap();
    remove_namespaces(&pod_dir).unwrap();
    cni.del(&net, &att).await.unwrap();
}

/// bridge succeeds, the next plugin is missing: the rollback must release the lease and
/// remove the veth.
async fn failed_add_leaves_nothing(tmp: &Path) {
    let pod_dir = tmp.join("pod");
    let ns = create_namespaces(&pod_dir, "cni-root-test").unwrap();
    let conf_dir = tmp.join("net.d-broken");
    std::fs::create_dir(&conf_dir).unwrap();
    let ipam = tmp.join("ipam");
    let conf = conflist(&ipam).replace("\"portmap\"", "\"crius-no-such-plugin\"");
    std::fs::write(conf_dir.join("10-test.conflist"), conf).unwrap();
    let cni = Cni::new(conf_dir, vec![PLUGIN_DIR.into()]);
    let att = Attachment {
        container_id: "criusrollback".into(),
        netns: ns.net.clone(),
        ifname: "eth0".into(),
        ..Attachment::default()
    };
    let err = cni
        .add(&cni.load_network().unwrap(), &att)
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::PluginNotFound { .. }), "{err}");
    let ports = run(&["ip", "-o", "link", "show", "master", BRIDGE]);
    assert_eq!(
        String::from_utf8_lossy(&ports.stdout),
        "",
        "veth left on {BRIDGE}"
    );
    let leases: Vec<_> = std::fs::read_dir(ipam.join(NETWORK))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    remove_namespaces(&pod_dir).unwrap();
}
