//! Reading an OCI bundle: `config.json` and the rootfs it points to.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

use super::RuntimeError;
use super::cgroups::{self, CgroupManager};

pub(super) struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

impl Bundle {
    pub(super) fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let config = dir.join("config.json");
        let spec = Spec::load(&config).map_err(|e| RuntimeError::InvalidSpec {
            bundle: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let root = spec.root().as_ref().map(|r| r.path().clone());
        let Some(root) = root else {
            return Err(invalid(dir, "no root.path"));
        };
        let rootfs = if root.is_absolute() {
            root
        } else {
            dir.join(root)
        };
        if spec.process().is_none() {
            return Err(invalid(dir, "no process"));
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            spec,
            rootfs,
        })
    }

    pub(super) fn process(&self) -> &Process {
        // Checked in `load`.
        self.spec
            .process()
            .as_ref()
            .expect("process checked at load")
    }

    /// Logs the spec features this runtime does not enforce yet, so that their absence is
    /// visible rather than silent.
    pub(super) fn warn_unsupported(&self, id: &str) {
        let mut missing = Vec::new();
        if self.process().terminal() == Some(true) {
            missing.push("terminal");
        }
        if self.spec.hooks().is_some() {
            missing.push("hooks");
        }
        if !missing.is_empty() {
            tracing::warn!(id, features = ?missing, "spec features ignored by this runtime");
        }
    }

    /// `linux.cgroupsPath` without its leading '/', if the spec names one.
    pub(super) fn cgroup_path(&self) -> Option<String> {
        let path = self.spec.linux().as_ref()?.cgroups_path().as_ref()?;
        Some(path.to_string_lossy().trim_start_matches('/').to_string())
    }

    /// The container's cgroup, if the spec names one.
    pub(super) fn cgroup(
        &self,
        root: &Path,
    ) -> Result<Option<Box<dyn CgroupManager>>, RuntimeError> {
        match self.cgroup_path() {
            Some(p) => Ok(Some(cgroups::manager(root, &p)?)),
            None => Ok(None),
        }
    }
}

fn invalid(dir: &Path, message: &str) -> RuntimeError {
    RuntimeError::InvalidSpec {
        bundle: dir.to_path_buf(),
        message: message.to_string(),
    }
}
