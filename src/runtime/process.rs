//! Placeholder: the runtime helper replaces this file.
use super::*;

pub(super) fn create(_opts: CreateOptions<'_>) -> Result<Created, RuntimeError> {
    todo!("runtime::create")
}
pub(super) fn exec(_opts: ExecOptions<'_>) -> Result<Pid, RuntimeError> {
    todo!("runtime::exec")
}
pub(super) fn destroy(_bundle: &Path, _cgroup_root: &Path) -> Result<(), RuntimeError> {
    todo!("runtime::destroy")
}
pub(super) fn release(_fd: OwnedFd) -> Result<(), RuntimeError> {
    todo!("runtime::release")
}
