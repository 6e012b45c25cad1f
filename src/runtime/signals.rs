//! Signal state a container process must not inherit from the monitor: Rust ignores
//! SIGPIPE at startup, whatever started the monitor may have ignored others (real-time
//! ones included), and an async runtime may block signals it reads through signalfd.
//! Ignored dispositions and the blocked mask both survive execve.
#![allow(unsafe_code)]

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

use super::{RuntimeError, sys_err};

/// Highest signal number on Linux (SIGRTMAX as the kernel counts it).
const MAX_SIGNAL: libc::c_long = 64;

/// Restores the default disposition of every signal and unblocks all of them.
pub(super) fn reset() -> Result<(), RuntimeError> {
    // The kernel's struct sigaction: handler, flags, restorer, mask. All zero means
    // SIG_DFL with an empty mask on every architecture's layout.
    let default_action = [0u64; 4];
    for sig in 1..=MAX_SIGNAL {
        if sig == libc::SIGKILL as libc::c_long || sig == libc::SIGSTOP as libc::c_long {
            continue;
        }
        // SAFETY: the raw syscall (glibc's wrapper refuses its reserved signals 32 and
        // 33) reads a live, zeroed buffer at least as large as the kernel's struct and
        // writes nothing back (old action pointer is null); SIG_DFL runs no handler code.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default_action.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            )
        };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys_err("sigprocmask"))
}
