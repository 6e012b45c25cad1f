//! What the runtime's forked children rest on: forking again, and ending without the
//! parent's atexit handlers or destructors.
#![allow(unsafe_code)]

use nix::unistd::{ForkResult, fork};

use super::{RuntimeError, sys_err};

/// Ends a forked child without running the parent's atexit handlers or destructors.
pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and always valid to call.
    unsafe { libc::_exit(code) }
}

pub(super) fn fork_child() -> Result<ForkResult, RuntimeError> {
    // SAFETY: the monitor is single-threaded; in multi-threaded callers (tests) glibc's
    // fork resets the malloc locks, and the child only makes syscalls, allocates and then
    // execs or _exits.
    unsafe { fork() }.map_err(sys_err("fork"))
}
