//! A terminal for a container's init or an exec'd process, allocated as runc does: from
//! the container's own devpts (after pivot_root, or after joining its mount namespace),
//! so that inside the container the process's terminal has a name (`tty`, ttyname,
//! `/dev/console`) and the pty cannot be confused with the host's. The master travels
//! back to the caller over the sync channel; the slave becomes the process's 0, 1, 2
//! and controlling terminal.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, dup2_stderr, dup2_stdin, dup2_stdout, fchown};

use super::{RuntimeError, io_err, sys_err};

/// A pty pair opened in the container's /dev/pts.
pub(super) struct Console {
    pub master: OwnedFd,
    slave: OwnedFd,
    slave_path: PathBuf,
}

/// Opens a new pty through the container's `/dev/ptmx` (a link to its devpts' ptmx).
pub(super) fn open_pty() -> Result<Console, RuntimeError> {
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = posix_openpt(flags).map_err(sys_err("open /dev/ptmx"))?;
    grantpt(&master).map_err(sys_err("grantpt"))?;
    unlockpt(&master).map_err(sys_err("unlockpt"))?;
    let slave_path = PathBuf::from(ptsname_r(&master).map_err(sys_err("ptsname"))?);
    let slave = open(&slave_path, flags, Mode::empty())
        .map_err(|e| io_err("open", &slave_path, e.into()))?;
    Ok(Console {
        master: OwnedFd::from(master),
        slave,
        slave_path,
    })
}

impl Console {
    /// Bind-mounts the slave onto `/dev/console`, which a container's init expects to
    /// be its terminal (runc's mountConsole). `/dev` is the container's tmpfs.
    pub(super) fn mount_as_dev_console(&self) -> Result<(), RuntimeError> {
        let console = Path::new("/dev/console");
        if std::fs::symlink_metadata(console).is_err() {
            File::create(console).map_err(|e| io_err("create", console, e))?;
        }
        mount(
            Some(self.slave_path.as_path()),
            console,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io_err("bind the terminal onto", console, e.into()))
    }

    /// Makes the slave this process's 0, 1, 2 and controlling terminal, owned by the
    /// user the process will run as (runc's fixStdioPermissions), so it can reopen it.
    pub(super) fn install(self, uid: u32, gid: u32) -> Result<(), RuntimeError> {
        match fchown(
            &self.slave,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        ) {
            // Where ids are unmapped or the filesystem refuses, the fds still work.
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::EPERM) => {}
            Err(e) => return Err(io_err("chown", &self.slave_path, e.into())),
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
