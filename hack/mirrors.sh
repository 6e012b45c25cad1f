#!/usr/bin/env bash
# Write containerd-style certs.d mirror files that send pulls for the usual public
# registries to the local test registry (hack/registry.sh) over plain HTTP, and make
# the local registry itself a plain-HTTP host.
# Usage: hack/mirrors.sh DIR [MIRROR_URL]   (default http://127.0.0.1:5000)
set -euo pipefail
DIR=${1:?usage: hack/mirrors.sh DIR [MIRROR_URL]}
MIRROR=${2:-http://127.0.0.1:5000}

upstream() {  # the real server of a registry host, as containerd names it
  case $1 in
    docker.io) echo https://registry-1.docker.io ;;
    *) echo "https://$1" ;;
  esac
}

for host in docker.io registry.k8s.io k8s.gcr.io gcr.io; do
  mkdir -p "$DIR/$host"
  cat >"$DIR/$host/hosts.toml" <<TOML
server = "$(upstream "$host")"

[host."$MIRROR"]
  capabilities = ["pull", "resolve"]
TOML
done
# The mirror under its own name too, so that pulls of 127.0.0.1:5000/... use plain HTTP.
host=${MIRROR#*://}
mkdir -p "$DIR/$host"
cat >"$DIR/$host/hosts.toml" <<TOML
server = "$MIRROR"

[host."$MIRROR"]
  capabilities = ["pull", "resolve"]
TOML
echo "mirrors: $DIR/{docker.io,registry.k8s.io,k8s.gcr.io,gcr.io,$host}/hosts.toml -> $MIRROR"
