//! Containers: OCI spec generation (pure), rootfs, and the container manager.
pub mod spec;
pub mod user;
pub mod validate;
