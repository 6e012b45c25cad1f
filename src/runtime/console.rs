//! A terminal for a container's init or an exec'd process, allocated as runc does: from
//! the container's own devpts (after pivot_root, or after joining its mount namespace),
//! so that inside the container the process's terminal has a name (`tty`, ttyname,
//! `/dev/console`) and the pty cannot be confused with the host's. The master travels
//! back to the caller over the sync channel; the slave becomes the process's 0, 1, 2
//! and controlling terminal.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::pty::{grantpt, posix_openpt, unlockpt};
use nix::sys::statfs::{DEVPTS_SUPER_MAGIC, fstatfs};
use nix::unistd::{Uid, dup2_stderr, dup2_stdin, dup2_stdout, fchown};

use super::{RuntimeError, io_err, sys_err};

/// A pty pair opened in the container's /dev/pts.
pub(super) struct Console {
    pub master: OwnedFd,
    slave: OwnedFd,
}

nix::ioctl_write_int_bad!(tiocgptpeer, libc::TIOCGPTPEER);

/// Opens a new pty through the container's `/dev/ptmx` (a link to its devpts' ptmx).
/// The container controls that path, so the master must prove to be a devpts file,
/// and the slave is reached from the master (TIOCGPTPEER), not by a path (runc 1.2).
pub(super) fn open_pty() -> Result<Console, RuntimeError> {
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = posix_openpt(flags).map_err(sys_err("open /dev/ptmx"))?;
    let fs = fstatfs(&master).map_err(sys_err("fstatfs /dev/ptmx"))?;
    if fs.filesystem_type() != DEVPTS_SUPER_MAGIC {
        return Err(RuntimeError::Init("/dev/ptmx is not a devpts ptmx".into()));
    }
    grantpt(&master).map_err(sys_err("grantpt"))?;
    unlockpt(&master).map_err(sys_err("unlockpt"))?;
    // SAFETY: TIOCGPTPEER takes the open flags as an int and returns a new fd.
    let slave = unsafe { tiocgptpeer(master.as_raw_fd(), flags.bits()) }
        .map_err(sys_err("ioctl(TIOCGPTPEER)"))?;
    // SAFETY: the ioctl just returned this fd, open and ours alone.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok(Console {
        master: OwnedFd::from(master),
        slave,
    })
}

impl Console {
    /// Bind-mounts the slave onto `/dev/console`, which a container's init expects to
    /// be its terminal (runc's mountConsole). `/dev` is the container's tmpfs; the
    /// source is the open slave itself, through /proc, not a path looked up again.
    pub(super) fn mount_as_dev_console(&self) -> Result<(), RuntimeError> {
        let console = Path::new("/dev/console");
        if std::fs::symlink_metadata(console).is_err() {
            File::create(console).map_err(|e| io_err("create", console, e))?;
        }
        let source = PathBuf::from(format!("/proc/self/fd/{}", self.slave.as_raw_fd()));
        mount(
            Some(source.as_path()),
            console,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io_err("bind the terminal onto", console, e.into()))
    }

    /// Makes the slave this process's 0, 1, 2 and controlling terminal, owned by the
    /// user the process will run as (runc's fixStdioPermissions), so it can reopen it;
    /// its group stays devpts' (tty), as under runc.
    pub(super) fn install(self, uid: u32) -> Result<(), RuntimeError> {
        match fchown(&self.slave, Some(Uid::from_raw(uid)), None) {
            // Where ids are unmapped or the filesystem refuses, the fds still work.
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::EPERM) => {}
            Err(e) => return Err(sys_err("fchown of the terminal")(e)),
        }
        drop(self.master);
        dup2_stdin(&self.slave).map_err(sys_err("dup2 stdin"))?;
        dup2_stdout(&self.slave).map_err(sys_err("dup2 stdout"))?;
        dup2_stderr(&self.slave).map_err(sys_err("dup2 stderr"))?;
        drop(self.slave);
        controlling_terminal()
    }
}

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);

/// A new session whose controlling terminal is fd 0.
pub(super) fn controlling_terminal() -> Result<(), RuntimeError> {
    nix::unistd::setsid().map_err(sys_err("setsid"))?;
    // SAFETY: TIOCSCTTY on fd 0 takes an int argument (0: do not steal) and touches no
    // memory of ours.
    unsafe { tiocsctty(std::io::stdin().as_raw_fd(), 0) }.map_err(sys_err("ioctl(TIOCSCTTY)"))?;
    Ok(())
}
