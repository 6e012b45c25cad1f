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

total_start=$(date +%s)
step setup bash hack/setup.sh
step cni-plugins bash hack/cni.sh --links-only
step registry bash hack/registry.sh
step images bash hack/images.sh
step fmt cargo fmt --all -- --check
step layers python3 hack/layers.py
step clippy cargo clippy --all-targets -- -D warnings
# --bins --tests: the unit and e2e tests; the cri-call example has none (clippy builds it).
step test cargo test --bins --tests
step leak-check bash hack/leaks.sh

echo
echo "=== summary ($(($(date +%s) - total_start))s)"
printf '%s\n' "${results[@]}"
passed_steps=$(printf '%s\n' "${results[@]}" | grep -c '^PASS' || true)
echo "steps: $passed_steps passed, $((${#results[@]} - passed_steps)) failed"
if [ "$failed" = 0 ]; then
  echo "ALL PASSED"
else
  echo "SOME STEPS FAILED"
fi
exit "$failed"
