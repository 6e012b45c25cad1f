#!/usr/bin/env bash
# Make CNI usable: link Debian's plugins (containernetworking-plugins, /usr/lib/cni)
# into CNI_BIN_DIR, and write a bridge network into CONF_DIR unless it already holds a
# network configuration. Idempotent.
# Usage: hack/cni.sh [--links-only] [CONF_DIR]
#        (default /etc/cni/net.d; plugins linked into CNI_BIN_DIR, default /opt/cni/bin)
set -euo pipefail
LINKS_ONLY=0
if [ "${1:-}" = --links-only ]; then
  LINKS_ONLY=1
  shift
fi
CONF_DIR=${1:-/etc/cni/net.d}
BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
SRC=/usr/lib/cni

[ -d "$SRC" ] || { echo "cni: $SRC missing (apt-get install containernetworking-plugins)" >&2; exit 1; }
mkdir -p "$BIN_DIR"
for plugin in "$SRC"/*; do
  [ -e "$BIN_DIR/$(basename "$plugin")" ] || ln -s "$plugin" "$BIN_DIR/"
done
[ "$LINKS_ONLY" = 1 ] && { echo "cni: plugins linked into $BIN_DIR"; exit 0; }
mkdir -p "$CONF_DIR"

shopt -s nullglob
existing=("$CONF_DIR"/*.conflist "$CONF_DIR"/*.conf "$CONF_DIR"/*.json)
if [ ${#existing[@]} -gt 0 ]; then
  echo "cni: $CONF_DIR already has ${existing[0]}; left alone"
  exit 0
fi
tmp=$(mktemp "$CONF_DIR/.10-crius.XXXXXX")
cat >"$tmp" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crius",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crius0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
chmod 0644 "$tmp"
# rename: a daemon watching the directory never sees a half-written file.
mv "$tmp" "$CONF_DIR/10-crius.conflist"
echo "cni: wrote $CONF_DIR/10-crius.conflist (bridge crius0, 10.88.0.0/16)"
