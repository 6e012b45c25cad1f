#!/usr/bin/env bash
# Debian's containerd (apt-get install containerd runc) as a comparison point for
# hack/bench.sh: a private instance, never the system one, with one host-network pod and
# a busybox container, driven by crictl.
#   hack/containerd.sh start   prints "ENDPOINT CONTAINER_ID" on its last line
#   hack/containerd.sh stop    removes the pod, stops containerd, deletes its dirs
# Everything it makes is under $DIR (/run/cbctrd) and $ROOT (/var/lib/crius-bench-ctrd),
# cgroups under /crius-bench-ctrd, except the shim sockets, which containerd 1.6 always
# puts in /run/containerd/s (removed on stop if this script created /run/containerd).
set -euo pipefail
DIR=/run/cbctrd
ROOT=/var/lib/crius-bench-ctrd
SOCK=$DIR/containerd.sock
EP=unix://$SOCK
CRICTL=${CRICTL:-/usr/local/bin/crictl}
CERTS=${CERTS:-/etc/crius/certs.d}
crictl() { "$CRICTL" -r "$EP" -i "$EP" -t 30s "$@"; }

write_config() {
  cat >"$DIR/config.toml" <<TOML
version = 2
root = "$ROOT/root"
state = "$DIR/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$ROOT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # Here root lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj to -998.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "$DIR/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CERTS"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$DIR/runc"
        SystemdCgroup = false
TOML
}

write_specs() {
  mkdir -p "$DIR/logs"
  cat >"$DIR/pod.json" <<JSON
{"metadata": {"name": "bench-ctrd", "namespace": "default", "uid": "bench-ctrd-1"},
 "log_directory": "$DIR/logs",
 "linux": {"cgroup_parent": "/crius-bench-ctrd",
           "security_context": {"namespace_options": {"network": 2}}}}
JSON
  cat >"$DIR/ctr.json" <<'JSON'
{"metadata": {"name": "c"}, "image": {"image": "busybox"},
 "command": ["sleep", "3600"], "log_path": "c.log", "linux": {}}
JSON
}

start() {
  command -v containerd >/dev/null || { echo "containerd: not installed" >&2; exit 1; }
  mkdir -p "$DIR/cni" "$ROOT"
  [ -e /run/containerd ] || { mkdir -p "$DIR" && touch "$DIR/made-run-containerd"; }
  write_config
  write_specs
  setsid containerd --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 </dev/null &
  echo $! >"$DIR/containerd.pid"
  for _ in $(seq 100); do [ -S "$SOCK" ] && crictl version >/dev/null 2>&1 && break; sleep 0.1; done
  crictl pull busybox >/dev/null
  local pod ctr
  pod=$(crictl runp "$DIR/pod.json")
  ctr=$(crictl create "$pod" "$DIR/ctr.json" "$DIR/pod.json")
  crictl start "$ctr" >/dev/null
  echo "$EP $ctr"
}

stop() {
  [ -f "$DIR/containerd.pid" ] || return 0
  crictl rmp -fa >/dev/null 2>&1 || true
  kill "$(cat "$DIR/containerd.pid")" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$(cat "$DIR/containerd.pid")" 2>/dev/null || break; sleep 0.1; done
  # Mounts left by a failed teardown would make rm -rf reach into them.
  awk -v d="$ROOT" -v r="$DIR" '$5 ~ "^(" d "|" r ")" {print $5}' /proc/self/mountinfo |
    sort -r | xargs -r -n1 umount -l
  find /sys/fs/cgroup/*/crius-bench-ctrd -depth -type d -exec rmdir {} + 2>/dev/null || true
  if [ -f "$DIR/made-run-containerd" ]; then rm -rf /run/containerd; fi
  rm -rf "$DIR" "$ROOT"
}

case ${1:-} in
  start | stop) "$1" ;;
  *) echo "usage: hack/containerd.sh start|stop" >&2; exit 2 ;;
esac
