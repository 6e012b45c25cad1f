//! Containers: OCI spec generation (pure), rootfs, and the container manager.
pub mod spec;
