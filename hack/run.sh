#!/usr/bin/env bash
# Build crius and run it in the foreground as the node's CRI runtime, with everything
# the README's crictl walkthrough needs (CNI network, local registry with test images,
# registry mirrors), all offline. Ctrl-C stops the daemon.
# Env: CRIUS_CONFIG (default /etc/crius/config.toml); CRIUS_PROFILE=debug to skip the
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CRIUS_CONFIG:-/etc/crius/config.toml}
CERTS=/etc/crius/certs.d

bash hack/setup.sh
PROFILE=${CRIUS_PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release
else
  cargo build
fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/crius

if [ ! -f "$CONFIG" ]; then
  mkdir -p "$(dirname "$CONFIG")"
  "$BIN" config default >"$CONFIG"
  echo "run: wrote $CONFIG"
fi
if [ ! -d "$CERTS" ]; then
  bash hack/mirrors.sh "$CERTS"
fi
bash hack/cni.sh
bash hack/registry.sh
bash hack/images.sh

echo "run: starting $BIN with $CONFIG"
exec "$BIN" --config "$CONFIG"
