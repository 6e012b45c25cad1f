//! The pod network as kubelet uses it: host ports through CNI portmap, reachable on
//! loopback and at the node's address; namespaced sysctls applied in the pod's
//! namespaces and nowhere else; the ones a pod may not set refused.

use crate::fixtures::*;
use crate::harness::{Daemon, preflight};
use k8s_cri::v1::*;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port nothing listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The node's first global IPv4 address, not on a test bridge.
fn node_address() -> Option<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("crius") && !l.contains("ce2e"))
        .find_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
}

/// Reads what the server at `addr` sends, retrying while the pod's listener comes up.
fn read_from(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match got {
            Ok(text) if !text.is_empty() => return text,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("{addr}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn host_ports_reach_the_pod() {
    if !preflight("host_ports_reach_the_pod", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let mut pod = pod_config(&d, "hostport");
    let host_port = free_port();
    pod.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port.into(),
        host_ip: String::new(),
    }];
    let pod_id = run_pod(&mut rt, &pod).await;
    let serve = "while true; do echo hello | nc -l -p 8080; done";
    let c = container_config("server", BUSYBOX, &["sh", "-c", serve]);
    create_and_start(&mut rt, &pod_id, &pod, &c).await;

    let mut targets = vec![IpAddr::from([127, 0, 0, 1])];
    targets.extend(node_address());
    for ip in targets {
        let addr = SocketAddr::new(ip, host_port);
        let got = tokio::task::spawn_blocking(move || read_from(addr))
            .await
            .unwrap();
        assert_eq!(got, "hello\n", "{addr}");
    }
    d.teardown().await;
}

#[tokio::test]
async fn namespaced_sysctls_apply_in_the_pod_only() {
    if !preflight("namespaced_sysctls_apply_in_the_pod_only", true) {
        return;
    }
    let d = Daemon::start().await;
    pull(&mut d.images().await, BUSYBOX).await;
    let mut rt = d.runtime().await;
    let host = |f: &str| std::fs::read_to_string(format!("/proc/sys/{f}")).unwrap();
    let before = (
        host("net/ipv4/ip_unprivileged_port_start"),
        host("kernel/shm_rmid_forced"),
    );
    let mut pod = pod_config(&d, "sysctls");
    let linux = pod.linux.get_or_insert_with(Default::default);
    linux.sysctls = labels(&[
        // "safe" in kubelet's terms, and an "unsafe" one an operator may allow.
        ("net.ipv4.ip_unprivileged_port_start", "80"),
        ("kernel/shm_rmid_forced", "1"),
        ("net.core.somaxconn", "1000"),
    ]);
    let pod_id = run_pod(&mut rt, &pod).await;
    let c = container_config("main", BUSYBOX, &["sleep", "1000"]);
    let id = create_and_start(&mut rt, &pod_id, &pod, &c).await;
    let read = "cd /proc/sys; cat net/ipv4/ip_unprivileged_port_start kernel/shm_rmid_forced \
                net/core/somaxconn";
    let (code, out) = sh(&mut rt, &id, read).await;
    assert_eq!((code, out.as_str()), (0, "80\n1\n1000\n"));
    let after = (
        host("net/ipv4/ip_unprivileged_port_start"),
        host("kernel/shm_rmid_forced"),
    );
    assert_eq!(before, after, "the host's values are untouched");

    let mounts = crate::mounts::container_mounts(&d);
    for (key, says) in [
        ("kernel.panic", "not a namespaced sysctl"),
        ("vm.swappiness", "not a namespaced"),
    ] {
        let mut bad_pod = pod_config(&d, &format!("bad-{}", key.replace('.', "-")));
        let linux = bad_pod.linux.get_or_insert_with(Default::default);
        linux.sysctls = labels(&[(key, "1")]);
        let bad_pod_id = run_pod(&mut rt, &bad_pod).await;
        let err = create(&mut rt, &bad_pod_id, &bad_pod, &c)
            .await
            .expect_err(key);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.message().contains(says), "{err}");
        assert_eq!(
            list_containers(&mut rt).await.len(),
            1,
            "only the first pod's"
        );
        assert_eq!(crate::mounts::container_mounts(&d), mounts);
    }
    d.teardown().await;
}

/// The files host-local keeps for the addresses it has handed out.
fn leased(d: &Daemon) -> Vec<String> {
    let dir = d.paths.dir.join("ipam/crius-e2e");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect()
}

/// After a reboot, or an operator's cleanup, a pod's netns can be gone before kubelet
/// stops the pod: CNI DEL still runs (plugins tolerate the missing netns), the address is
/// released, and stop and remove succeed, twice.
#[tokio::test]
async fn stop_releases_the_address_when_the_netns_is_gone() {
    if !preflight("stop_releases_the_address_when_the_netns_is_gone", false) {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.runtime().await;
    let pod = pod_config(&d, "gone");
    let pod_id = run_pod(&mut rt, &pod).await;
    let ip = pod_status(&mut rt, &pod_id).await.network.unwrap().ip;
    assert_eq!(leased(&d), std::slice::from_ref(&ip));

    let pin = d.paths.run_root.join("pods").join(&pod_id).join("ns/net");
    nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH).expect("unpin the netns");
    std::fs::remove_file(&pin).expect("remove the pin");
    for _ in 0..2 {
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        };
        rt.stop_pod_sandbox(stop).await.expect("StopPodSandbox");
    }
    assert!(leased(&d).is_empty(), "{ip} still leased: {:?}", leased(&d));
    for _ in 0..2 {
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        };
        rt.remove_pod_sandbox(remove)
            .await
            .expect("RemovePodSandbox");
    }
    assert!(list_pods(&mut rt, None).await.is_empty());
    d.teardown().await;
}
