#!/usr/bin/env bash
# Everything CI checks, from a fresh clone: packages, CNI plugins, the local registry
# with test images, formatting, lints, unit and end-to-end tests, and a final check that
# the tests left no mounts, cgroups, interfaces or processes behind. Every step runs even
# if an earlier one failed; the summary says which failed. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

results=()
failed=0
step() {  # step NAME CMD...: run, time and record one step
  local name=$1 start rc=0
  shift
  echo
  echo "=== $name: $*"
  start=$(date +%s)
  "$@" || rc=$?
  local took=$(($(date +%s) - start))
  if [ "$rc" = 0 ]; then
    results+=("PASS  $name (${took}s)")
  else
    results+=("FAIL  $name (${took}s, exit $rc)")
    failed=1
  fi
  return 0
}

# Leftovers of e2e runs: names the harness (test-e2e/harness.rs) gives to what it makes.
leak_check() {
  local leaks=0 m p exe target=${CARGO_TARGET_DIR:-$PWD/target}
  m=$(awk '$5 ~ /^\/(tmp\/crius-e2e-|run\/ce2e-)/ {print $5}' /proc/self/mountinfo)
  [ -z "$m" ] || { echo "mounts left:"; echo "$m"; leaks=1; }
  m=$(ls -d /sys/fs/cgroup/*/crius-e2e-* 2>/dev/null || true)
  [ -z "$m" ] || { echo "cgroups left:"; echo "$m"; leaks=1; }
  m=$(ls /sys/class/net/criuse2e0/brif 2>/dev/null || true)
  [ -z "$m" ] || { echo "interfaces left on criuse2e0:"; echo "$m"; leaks=1; }
  m=$(ls -d /run/ce2e-* /tmp/crius-e2e-* 2>/dev/null || true)
  [ -z "$m" ] || { echo "directories left:"; echo "$m"; leaks=1; }
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in
      "$target"/*/crius | "$target"/*/crius" (deleted)")
        echo "process left: ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)"
        leaks=1
        ;;
    esac
  done
  [ "$leaks" = 0 ] && echo "no leaks"
  return "$leaks"
}

total_start=$(date +%s)
step setup bash hack/setup.sh
step cni-plugins bash hack/cni.sh --links-only
step registry bash hack/registry.sh
step images bash hack/images.sh
step fmt cargo fmt --all -- --check
step layers python3 hack/layers.py
step clippy cargo clippy --all-targets -- -D warnings
step test cargo test --all-targets
step leak-check leak_check

echo
echo "=== summary ($(($(date +%s) - total_start))s)"
printf '%s\n' "${results[@]}"
if [ "$failed" = 0 ]; then
  echo "ALL PASSED"
else
  echo "SOME STEPS FAILED"
fi
exit "$failed"
