#!/usr/bin/env bash
# Budget report: start a daemon from a temporary config (the e2e harness), run one pod
# and one container through the CRI client, and print the daemon's idle PSS, each
# monitor's PSS, and the latency of RunPodSandbox, CreateContainer, StartContainer and
# ExecSync `true`; then each RPC's latency through a client process (the cri-call example,
# test-e2e/bin/cri_call.rs, and /usr/local/bin/crictl if present), net of that client's
# start-up and connect (test-e2e/bench_client.rs). Prints numbers; asserts none. The
# driver is the e2e test `bench_budgets` (test-e2e/bench.rs), ignored by `cargo test`.
# Env: BENCH_PROFILE=release (default) or debug (no release build of the tests needed);
# BENCH_CONTAINERD=1 also starts Debian's containerd on a private socket and root
# (hack/containerd.sh), times the same crictl commands against it and prints ratios.
# Then exec with streams (test-e2e/bench_exec.rs): `crictl exec ID true` (Exec, then the
# streaming URL, SPDY or WebSocket) net of `crictl version`, and the stdout throughput of
# an exec writing 200 MiB, in MB/s, for crius and (with BENCH_CONTAINERD=1) containerd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh >/dev/null
bash hack/cni.sh --links-only >/dev/null
bash hack/registry.sh >/dev/null
bash hack/images.sh >/dev/null

profile=()
[ "${BENCH_PROFILE:-release}" = release ] && profile=(--release)
# The client process the test spawns; built by the same profile as the daemon.
cargo build "${profile[@]}" --example cri-call
cargo test "${profile[@]}" --test e2e --no-run
if [ "${BENCH_CONTAINERD:-0}" = 1 ]; then
  trap 'bash hack/containerd.sh stop' EXIT
  ctrd=$(bash hack/containerd.sh start | tail -1)
  export CRIUS_BENCH_CONTAINERD=$ctrd
fi
CRIUS_E2E_LOG=${CRIUS_E2E_LOG:-info} \
  cargo test "${profile[@]}" --test e2e bench_budgets -- --ignored --nocapture --test-threads=1
