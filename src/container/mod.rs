//! Containers: request validation, OCI spec generation (pure), user resolution, the
//! overlay rootfs, and the container manager that drives the pod's monitor.
pub mod error;
pub mod manager;
pub mod record;
pub mod rootfs;
pub mod signal;
pub mod spec;
pub mod status;
pub mod user;
pub mod validate;
pub mod volumes;
