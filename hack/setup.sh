#!/usr/bin/env bash
# Install the Debian packages crius and its tests need. Runs apt-get only when a
# package is missing, so a second run is instant and works offline.
set -euo pipefail
PACKAGES=(
  protobuf-compiler            # build.rs: prost-build needs protoc
  gcc libc6-dev                # the linker rustc calls
  umoci skopeo docker-registry # building and serving test images
  busybox                      # the dynamic busybox the test images are made of
  containernetworking-plugins  # bridge, host-local, portmap, loopback
  iproute2 iptables            # ip for checks; portmap needs iptables
  util-linux procps            # nsenter, mount, umount; ps, pgrep
  jq curl ca-certificates
  openssl                      # e2e: the streaming server's test certificate
  libseccomp-dev               # the seccomp filter compiler (libseccomp crate)
)
[ "$(id -u)" = 0 ] || { echo "setup: must run as root" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi

for tool in cargo rustc; do
  command -v "$tool" >/dev/null || { echo "setup: $tool not found (install the Rust toolchain)" >&2; exit 1; }
done
for sub in fmt clippy; do
  cargo "$sub" --version >/dev/null 2>&1 ||
    echo "setup: warning: cargo $sub missing (rustup component add ${sub/fmt/rustfmt})" >&2
done
