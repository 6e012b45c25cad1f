#!/usr/bin/env bash
# Build the test images from Debian's dynamic busybox with umoci and push them with
# skopeo to the local registry (hack/registry.sh). An image already in the registry is
# left alone (another tool, such as a critest rig, may have pushed its own under the
# same kubelet name); FORCE=1 pushes everything again. What it pushes:
#
#   library/busybox:latest, library/busybox:1.36, e2e-test-images/busybox:1.29-2
#                                   busybox (cmd sh), OCI manifest
#   pause:3.10                      busybox whose cmd sleeps until SIGTERM/SIGINT
#   crius-test/busybox:oci          busybox, OCI manifest
#   crius-test/busybox:docker       busybox, Docker schema 2 manifest
#   crius-test/busybox:oci-index    OCI image index -> the OCI manifest (as Docker Hub)
#   crius-test/busybox:docker-list  Docker manifest list -> the schema 2 manifest (as
#                                   registry.k8s.io)
#   crius-test/layers:1             OCI manifest, 2 layers: the second whites out a file
#                                   and a directory of the first and adds a file
#
# With the mirrors from hack/mirrors.sh, `busybox`, `registry.k8s.io/pause:3.10`,
# `registry.k8s.io/e2e-test-images/busybox:1.29-2` and `docker.io/crius-test/...`
# resolve to these.
set -euo pipefail
REG=${REG:-127.0.0.1:5000}
BB=/bin/busybox
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json
ACCEPT="$OCI_INDEX,$OCI_MANIFEST,$DOCKER_LIST,$DOCKER_MANIFEST"
IMAGES=(library/busybox:latest library/busybox:1.36 e2e-test-images/busybox:1.29-2
  pause:3.10 crius-test/busybox:oci crius-test/busybox:docker crius-test/busybox:oci-index
  crius-test/busybox:docker-list crius-test/layers:1)

# has_image REPO:TAG: does the registry serve a manifest for it?
has_image() {
  local repo=${1%:*} tag=${1##*:}
  curl -fs -o /dev/null -I -H "Accept: $ACCEPT" "http://$REG/v2/$repo/manifests/$tag"
}

# wanted REPO:TAG: should this run push it?
wanted() {
  [ "${FORCE:-0}" = 1 ] || ! has_image "$1"
}

missing=0
for ref in "${IMAGES[@]}"; do wanted "$ref" && missing=$((missing + 1)); done
if [ "$missing" = 0 ]; then
  echo "images: all ${#IMAGES[@]} test images already in $REG"
  exit 0
fi
curl -fsS -o /dev/null "http://$REG/v2/" || { echo "images: no registry at $REG (run hack/registry.sh)" >&2; exit 1; }
[ -x "$BB" ] || { echo "images: $BB missing (apt-get install busybox)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LAYOUT=$WORK/layout
umoci init --layout "$LAYOUT"

# busybox_rootfs DIR: Debian's dynamic busybox, its libraries, one hard link per applet
# (as the usual busybox images: masking one applet masks only that path), passwd, group.
busybox_rootfs() {
  local d=$1 lib applet
  mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var}
  cp "$BB" "$d/bin/busybox"
  for lib in $(ldd "$BB" | grep -oE '/[^ ]+'); do
    mkdir -p "$d$(dirname "$lib")"
    cp -L "$lib" "$d$lib"
  done
  for applet in $("$BB" --list-full); do
    [ -e "$d/$applet" ] || ln "$d/bin/busybox" "$d/$applet"
  done
  chmod 1777 "$d/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$d/etc/passwd"
  printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'nogroup:x:65534:' >"$d/etc/group"
}

# layer TAG FROM_TAG CHANGE_FN: unpack FROM_TAG (or a fresh image if empty), run
# CHANGE_FN ROOTFS, repack the diff as a new layer under TAG.
layer() {
  local tag=$1 from=$2 change=$3 bundle=$WORK/bundle
  if [ -z "$from" ]; then
    umoci new --image "$LAYOUT:$tag"
    from=$tag
  fi
  umoci unpack --image "$LAYOUT:$from" "$bundle" >/dev/null
  "$change" "$bundle/rootfs"
  umoci repack --image "$LAYOUT:$tag" "$bundle"
  rm -rf "$bundle"
}

configure() {  # configure TAG [umoci config flags...]
  local tag=$1
  shift
  umoci config --image "$LAYOUT:$tag" --os linux --architecture amd64 \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

push() {  # push TAG REPO:TAG [skopeo flags...]
  local tag=$1 ref=$2
  shift 2
  skopeo copy -q --dest-tls-verify=false "$@" "oci:$LAYOUT:$tag" "docker://$REG/$ref"
  echo "images: pushed $ref"
}

# put_index REPO:TAG SRC_TAG MEDIA_TYPE: wrap the manifest already pushed as REPO:SRC_TAG
# in a one-entry (linux/amd64) index of MEDIA_TYPE and push it as REPO:TAG.
put_index() {
  local repo=${1%:*} tag=${1##*:} src=$2 type=$3 head digest size mt
  head=$(curl -fsS -I -H "Accept: $ACCEPT" "http://$REG/v2/$repo/manifests/$src" | tr -d '\r')
  digest=$(sed -n 's/^Docker-Content-Digest: //Ip' <<<"$head")
  size=$(sed -n 's/^Content-Length: //Ip' <<<"$head")
  mt=$(sed -n 's/^Content-Type: //Ip' <<<"$head")
  jq -cn --arg type "$type" --arg mt "$mt" --arg digest "$digest" --argjson size "$size" \
    '{schemaVersion: 2, mediaType: $type, manifests: [{mediaType: $mt, digest: $digest,
      size: $size, platform: {architecture: "amd64", os: "linux"}}]}' \
    | curl -fsS -X PUT -H "Content-Type: $type" --data-binary @- \
      "http://$REG/v2/$repo/manifests/$tag"
  echo "images: pushed $1 ($type)"
}

layer1_files() {
  busybox_rootfs "$1"
  echo "from layer 1, deleted by layer 2" >"$1/etc/layer1-only"
  mkdir -p "$1/layer1-dir" "$1/data"
  echo a >"$1/layer1-dir/a"
  echo kept >"$1/data/kept"
}
layer2_changes() {
  rm "$1/etc/layer1-only"
  rm -r "$1/layer1-dir"
  echo "from layer 2" >"$1/data/added"
}

push_if_wanted() {  # push_if_wanted TAG REPO:TAG [skopeo flags...]
  if wanted "$2"; then push "$@"; fi
}

layer busybox "" busybox_rootfs
configure busybox --config.cmd sh
for ref in library/busybox:latest library/busybox:1.36 e2e-test-images/busybox:1.29-2; do
  push_if_wanted busybox "$ref"
done
# Each index points at the manifest pushed under the same repository just before it.
if wanted crius-test/busybox:oci || wanted crius-test/busybox:oci-index; then
  push busybox crius-test/busybox:oci
  if wanted crius-test/busybox:oci-index; then
    put_index crius-test/busybox:oci-index oci "$OCI_INDEX"
  fi
fi
if wanted crius-test/busybox:docker || wanted crius-test/busybox:docker-list; then
  push busybox crius-test/busybox:docker --format v2s2
  if wanted crius-test/busybox:docker-list; then
    put_index crius-test/busybox:docker-list docker "$DOCKER_LIST"
  fi
fi

if wanted pause:3.10; then
  layer pause "" busybox_rootfs
  configure pause --config.entrypoint sh --config.entrypoint -c \
    --config.entrypoint 'trap "kill \$!; exit 0" TERM INT; sleep infinity & wait'
  push pause pause:3.10
fi

if wanted crius-test/layers:1; then
  layer layers "" layer1_files
  layer layers layers layer2_changes
  configure layers --config.cmd sh
  push layers crius-test/layers:1
fi

for ref in "${IMAGES[@]}"; do
  has_image "$ref" || { echo "images: $ref still missing from $REG" >&2; exit 1; }
done
echo "images: all ${#IMAGES[@]} test images in $REG"
