//! Fake plugins (shell scripts in a tempdir) check the protocol: env, stdin, chaining,
//! rollback, errors, timeouts. The root test at the end runs the real Debian plugins.

use super::*;
use crate::error::{Classify, Kind};
use std::os::unix::fs::PermissionsExt;

/// A plugin that records its call and stdin, and answers like a bridge plugin would.
const OK_PLUGIN: &str = r#"#!/bin/sh
name=$(basename "$0")
cat > "$LOGDIR/$name.$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$LOGDIR/$name.$CNI_COMMAND.env"
echo "$CNI_COMMAND $name" >> "$LOGDIR/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.1.2.3/24","interface":0}]}'
fi
"#;

const FAILING_PLUGIN: &str = r#"#!/bin/sh
echo "$CNI_COMMAND $(basename "$0")" >> "$LOGDIR/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"boom","details":"no more leases"}'
  exit 1
fi
"#;

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("bin")).unwrap();
        std::fs::create_dir(tmp.path().join("log")).unwrap();
        Fixture { tmp }
    }

    fn plugin(&self, name: &str, script: &str) {
        let log = self.tmp.path().join("log");
        let body = script.replacen("\n", &format!("\nLOGDIR={}\n", log.display()), 1);
        let path = self.tmp.path().join("bin").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn cni(&self) -> Cni {
        let bins = vec![
            self.tmp.path().join("nothing-here"),
            self.tmp.path().join("bin"),
        ];
        Cni::new(self.tmp.path().join("net.d"), bins)
            .with_result_cache(self.tmp.path().join("cache"))
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join("log").join(file)).unwrap_or_default()
    }

    fn calls(&self) -> Vec<String> {
        self.log("calls").lines().map(str::to_owned).collect()
    }
}

fn network(types: &[&str]) -> NetworkConfig {
    let plugins = types.iter().map(|t| json!({ "type": t })).collect();
    NetworkConfig {
        name: "testnet".into(),
        cni_version: "1.0.0".into(),
        plugins,
        source: "/etc/cni/net.d/10-test.conflist".into(),
    }
}

fn attachment(netns: &Path) -> Attachment {
    Attachment {
        container_id: "pod123".into(),
        netns: netns.to_owned(),
        ifname: "eth0".into(),
        pod_name: "web-0".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-1".into(),
        port_mappings: Vec::new(),
    }
}

#[test]
fn stdin_injects_name_version_prev_result_and_ports() {
    let mut net = network(&["bridge", "portmap"]);
    net.plugins[1] = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    let mut att = attachment(Path::new("/run/p/ns/net"));
    let prev = json!({"cniVersion": "1.0.0", "ips": []});
    let stdin = |i, prev| -> Value {
        serde_json::from_slice(&plugin_stdin(&net, i, &att, prev).unwrap()).unwrap()
    };
    let first = stdin(0, None);
    assert_eq!(
        first,
        json!({"type": "bridge", "name": "testnet", "cniVersion": "1.0.0"})
    );
    let second = stdin(1, Some(&prev));
    assert_eq!(second["prevResult"], prev);
    assert_eq!(second["runtimeConfig"], json!({"portMappings": []}));
    assert_eq!(second["name"], "testnet");

    att.port_mappings = vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    }];
    let stdin = plugin_stdin(&net, 1, &att, None).unwrap();
    let ports = &serde_json::from_slice::<Value>(&stdin).unwrap()["runtimeConfig"];
    assert_eq!(
        ports,
        &json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
}

#[test]
fn cni_args_carry_pod_identity() {
    let att = attachment(Path::new("/run/p/ns/net"));
    assert_eq!(
        cni_args(&att),
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
         K8S_POD_INFRA_CONTAINER_ID=pod123;K8S_POD_UID=uid-1"
    );
}

#[tokio::test]
async fn add_chains_results_and_del_reverses() {
    let fx = Fixture::new();
    fx.plugin("first", OK_PLUGIN);
    fx.plugin("second", OK_PLUGIN);
    let cni = fx.cni();
    let net = network(&["first", "second"]);
    // A live namespace file, so ADD and DEL both pass it through.
    let att = attachment(Path::new("/proc/self/ns/net"));

    let result = cni.add(&net, &att).await.unwrap();
    assert_eq!(
        result.ips,
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    let env = fx.log("first.ADD.env");
    for line in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=pod123",
        "CNI_IFNAME=eth0",
        "CNI_NETNS=/proc/self/ns/net",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;",
    ] {
        assert!(env.contains(line), "{line} not in {env}");
    }
    let bin = fx.tmp.path().join("bin");
    assert!(env.contains(&format!("nothing-here:{}\n", bin.display())));
    let second: Value = serde_json::from_str(&fx.log("second.ADD.stdin")).unwrap();
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.1.2.3/24");
    let cache = fx.tmp.path().join("cache/testnet-pod123-eth0.json");
    assert!(cache.exists());

    cni.del(&net, &att).await.unwrap();
    assert_eq!(
        fx.calls(),
        ["ADD first", "ADD second", "DEL second", "DEL first"]
    );
    let del: Value = serde_json::from_str(&fx.log("first.DEL.stdin")).unwrap();
    assert_eq!(del["prevResult"], result.raw);
    assert!(!cache.exists());
}

#[tokio::test]
async fn failed_add_rolls_back_added_plugins() {
    let fx = Fixture::new();
    fx.plugin("first", OK_PLUGIN);
    fx.plugin("bad", FAILING_PLUGIN);
    fx.plugin("never", OK_PLUGIN);
    let net = network(&["first", "bad", "never"]);
    let err = fx
        .cni()
        .add(&net, &attachment(Path::new("/proc/self/ns/net")))
        .await
        .unwrap_err();
    match &err {
        SandboxError::Plugin {
            plugin,
            code,
            msg,
            command,
        } => {
            assert_eq!((plugin.as_str(), *command), ("bad", "ADD"));
            assert_eq!(*code, Some(11));
            assert_eq!(msg, "boom: no more leases");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.kind(), Kind::Internal);
    assert_eq!(fx.calls(), ["ADD first", "ADD bad", "DEL bad", "DEL first"]);
    assert!(
        !fx.tmp
            .path()
            .join("cache/testnet-pod123-eth0.json")
            .exists()
    );
}

#[tokio::test]
async fn del_without_netns_passes_empty_netns_and_is_idempotent() {
    let fx = Fixture::new();
    fx.plugin("first", OK_PLUGIN);
    let net = network(&["first"]);
    let gone = fx.tmp.path().join("pod/ns/net");
    let cni = fx.cni();
    cni.del(&net, &attachment(&gone)).await.unwrap();
    // An unmounted pin left behind is a plain file: not a netns either.
    std::fs::create_dir_all(gone.parent().unwrap()).unwrap();
    std::fs::write(&gone, "").unwrap();
    cni.del(&net, &attachment(&gone)).await.unwrap();
    assert!(fx.log("first.DEL.env").contains("CNI_NETNS=\n"));
    // No cached result: DEL goes without prevResult.
    let del: Value = serde_json::from_str(&fx.log("first.DEL.stdin")).unwrap();
    assert!(del.get("prevResult").is_none());
}

#[tokio::test]
async fn missing_plugin_and_timeout() {
    let fx = Fixture::new();
    let att = attachment(Path::new("/proc/self/ns/net"));
    let err = fx.cni().add(&network(&["nope"]), &att).await.unwrap_err();
    assert!(matches!(err, SandboxError::PluginNotFound { .. }), "{err}");
    assert_eq!(err.kind(), Kind::FailedPrecondition);

    fx.plugin("slow", "#!/bin/sh\nexec sleep 5\n");
    let cni = fx.cni().with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = cni.add(&network(&["slow"]), &att).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    // The ADD timed out and so did its rollback DEL.
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
}

#[tokio::test]
async fn plugin_stderr_is_the_message_without_error_json() {
    let fx = Fixture::new();
    fx.plugin("crash", "#!/bin/sh\necho 'panic: oops' >&2\nexit 2\n");
    let att = attachment(Path::new("/proc/self/ns/net"));
    let err = fx.cni().add(&network(&["crash"]), &att).await.unwrap_err();
    assert!(err.to_string().contains("panic: oops"), "{err}");
}

#[tokio::test]
async fn unparsable_result_is_rolled_back() {
    let fx = Fixture::new();
    fx.plugin("first", OK_PLUGIN);
    let garbage =
        "#!/bin/sh\necho \"$CNI_COMMAND garbage\" >> \"$LOGDIR/calls\"\necho '{not json'\n";
    fx.plugin("garbage", garbage);
    let att = attachment(Path::new("/proc/self/ns/net"));
    let err = fx
        .cni()
        .add(&network(&["first", "garbage"]), &att)
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidResult { .. }), "{err}");
    assert_eq!(
        fx.calls(),
        ["ADD first", "ADD garbage", "DEL garbage", "DEL first"]
    );
}

#[tokio::test]
async fn cancelled_add_is_undone() {
    let fx = Fixture::new();
    let slow_ok = OK_PLUGIN.replacen("name=", "[ \"$CNI_COMMAND\" = ADD ] && sleep 0.5\nname=", 1);
    fx.plugin("slow", &slow_ok);
    let att = attachment(Path::new("/proc/self/ns/net"));
    let cni = fx.cni();
    let net = network(&["slow"]);
    let add = cni.add(&net, &att);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), add)
            .await
            .is_err()
    );
    for _ in 0..50 {
        if fx.calls().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fx.calls(), ["ADD slow", "DEL slow"]);
}
