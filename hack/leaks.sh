#!/usr/bin/env bash
# The final step of hack/test.sh, runnable alone: report what test runs left behind
# (mounts, cgroups, bridge ports, directories, processes). Exit 1 if anything is left.
#
# Only what tests make counts, found by the names they give it: the e2e harness
# (test-e2e/harness.rs) uses run roots /run/ce2e-<pid>-<n>, tempdirs /tmp/crius-e2e-*,
# cgroup parents crius-e2e-*, the bridge criuse2e0; the monitor unit tests
# (src/monitor/tests.rs, container_tests.rs) use tempfile dirs $TMPDIR/.tmp* and cgroup
# parents crius-monitor-test-*; the runtime unit tests use crius-test-<pid>. A node daemon started by hack/run.sh runs the same binary
# (target/release/crius) but with its own run root, state and cgroup parent, so neither it
# nor its pods' monitors and containers are ever reported.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
TMP=${TMPDIR:-/tmp}
TMP=${TMP%/}
E2E_PATHS='/run/ce2e-|/crius-e2e-'

# test_process PID: print why PID is a test's leftover; fail if it is not one.
test_process() {
  local p=/proc/$1 exe cmd root
  cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || return 1
  exe=$(readlink "$p/exe" 2>/dev/null) || exe=
  exe=${exe% (deleted)}
  if [[ $exe == "$TARGET"/*/crius ]]; then
    # An e2e daemon (--config in its tempdir) or monitor (--dir in its run root).
    [[ $cmd =~ $E2E_PATHS ]] && { echo "e2e crius: $cmd"; return 0; }
    # A monitor unit test's monitor: --dir in a tempfile dir.
    [[ $cmd == *" monitor "*"--dir $TMP/.tmp"* ]] && { echo "unit-test monitor: $cmd"; return 0; }
  fi
  # A container process (any binary) of an e2e daemon: by its root or its cgroups.
  root=$(readlink "$p/root" 2>/dev/null) || root=
  [[ $root == /run/ce2e-* || $root == "$TMP"/crius-e2e-* ]] && { echo "root $root: $cmd"; return 0; }
  grep -qE ':/(crius-e2e-|crius-monitor-test-|crius-test-)' "$p/cgroup" 2>/dev/null &&
    { echo "in a test cgroup: $cmd"; return 0; }
  return 1
}

leaks=0
report() {  # report WHAT LINES: print a non-empty finding
  [ -z "$2" ] && return 0
  echo "$1 left:"
  echo "$2"
  leaks=1
}

report mounts "$(awk '$5 ~ /^\/(tmp\/crius-e2e-|run\/ce2e-)/ {print $5}' /proc/self/mountinfo)"
report cgroups "$(ls -d /sys/fs/cgroup/crius-e2e-* /sys/fs/cgroup/*/crius-e2e-* \
  /sys/fs/cgroup/crius-monitor-test-* /sys/fs/cgroup/*/crius-monitor-test-* \
  /sys/fs/cgroup/crius-test-* /sys/fs/cgroup/*/crius-test-* 2>/dev/null || true)"
report "interfaces on criuse2e0" "$(ls /sys/class/net/criuse2e0/brif 2>/dev/null || true)"
report directories "$(ls -d /run/ce2e-* /tmp/crius-e2e-* 2>/dev/null || true)"
procs=$(for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = $$ ] && continue
  if why=$(test_process "$pid"); then echo "$pid $why"; fi
done)
report processes "$procs"
[ "$leaks" = 0 ] && echo "no leaks"
exit "$leaks"
