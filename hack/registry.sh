#!/usr/bin/env bash
# Start Debian's docker-registry as a plain-HTTP registry on 127.0.0.1:5000, in the
# background, with its state under STATE_DIR. Idempotent: does nothing if a registry
# already answers there.
# Usage: hack/registry.sh [STATE_DIR]   (default /var/lib/crius-test/registry)
set -euo pipefail
ADDR=127.0.0.1:5000
STATE=${1:-/var/lib/crius-test/registry}

up() { curl -fsS "http://$ADDR/v2/" >/dev/null 2>&1; }

if up; then
  echo "registry: already up on $ADDR"
  exit 0
fi
mkdir -p "$STATE/data"
cat >"$STATE/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE/data}
  delete: {enabled: true}
http: {addr: $ADDR}
YML
# setsid: the registry must outlive the shell (and CI step) that started it.
setsid nohup docker-registry serve "$STATE/config.yml" >"$STATE/registry.log" 2>&1 </dev/null &
echo $! >"$STATE/registry.pid"
for _ in $(seq 100); do
  if up; then
    echo "registry: up on $ADDR (pid $(cat "$STATE/registry.pid"), log $STATE/registry.log)"
    exit 0
  fi
  sleep 0.1
done
echo "registry: failed to start on $ADDR" >&2
cat "$STATE/registry.log" >&2
exit 1
