//! End-to-end tests: a real crius daemon on a real socket, driven through a CRI client.
//!
//! Each test starts its own daemon (harness.rs) with private state dirs, socket, cgroup
//! parent and CNI config, ends with `Daemon::teardown` (remove everything through CRI,
//! stop, assert no leaks), and cleans up by force on panic. They need root and, for most,
//! the local registry with the test images (hack/registry.sh, hack/images.sh); without
//! them a test is skipped with a message, except in CI (CI=true) where it fails.

mod attach;
mod bad_input;
mod bench;
mod bench_client;
mod bench_exec;
mod containers;
mod events;
mod exec;
mod exits;
mod fixtures;
mod harness;
mod idempotence;
mod image_volumes;
mod images;
mod leaks;
mod logs;
mod mounts;
mod network;
mod pidns;
mod pods;
mod portforward;
mod resources;
mod restart;
mod rollback;
mod seccomp;
mod security;
mod selftest;
mod stats;
mod streaming_tls;
mod userns;
mod verbose;
mod ws_client;
