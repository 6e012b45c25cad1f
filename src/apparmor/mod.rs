//! crius's own AppArmor profile for RuntimeDefault: generated (`profile.rs`) and loaded
//! into the kernel once at daemon start, as containerd does for `cri-containerd.apparmor.d`:
//! written under crius's run root, and loaded with `apparmor_parser -Kr` (`-K`: no cache
//! written to /etc) unless the kernel already lists it.
//!
//! Everything here blocks (files, a child process); the daemon runs it on the blocking
//! pool. Deciding and parsing are pure functions, so they are tested without AppArmor.

mod profile;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Classify, Kind};
pub use profile::{Environment, render};

/// The profile RuntimeDefault containers run under.
pub const DEFAULT_PROFILE: &str = "crius-default";

/// The kernel's list of loaded profiles, one `name (mode)` a line.
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// Where the parser's abi, tunables and abstractions are installed.
const MACROS: &str = "/etc/apparmor.d";
const PARSER: &str = "apparmor_parser";
/// Looked in after `PATH`: distributions install the parser in sbin, which a daemon
/// started with a user's PATH may lack.
const SYSTEM_DIRS: [&str; 2] = ["/sbin", "/usr/sbin"];

#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("apparmor_parser not found on PATH, in /sbin or /usr/sbin")]
    NoParser,
    #[error("{command} failed ({status}): {output}")]
    Parser {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

impl Classify for AppArmorError {
    fn kind(&self) -> Kind {
        match self {
            AppArmorError::Io { .. } => Kind::Internal,
            AppArmorError::NoParser | AppArmorError::Parser { .. } => Kind::FailedPrecondition,
        }
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> AppArmorError {
    AppArmorError::Io {
        op,
        path: path.into(),
        source,
    }
}

/// What [`ensure_loaded`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// The kernel already had it (loaded by an earlier crius since boot, or by an admin);
    /// not replaced, since running containers are confined by it.
    Already,
    /// Written to this file and loaded from it.
    From(PathBuf),
}

/// Makes sure the kernel has profile `name`: writes it under `dir` (created 0700) and
/// loads it if the kernel does not list it yet.
pub fn ensure_loaded(name: &str, dir: &Path) -> Result<Loaded, AppArmorError> {
    let parser = || find_parser(std::env::var_os("PATH").as_deref(), is_executable);
    load(name, dir, Path::new(PROFILES), parser, environment)
}

/// [`ensure_loaded`] with the host's listing, parser and environment passed in; the
/// parser is only looked for when the profile is missing.
fn load(
    name: &str,
    dir: &Path,
    listing: &Path,
    parser: impl FnOnce() -> Option<PathBuf>,
    environment: impl FnOnce() -> Environment,
) -> Result<Loaded, AppArmorError> {
    let loaded = std::fs::read_to_string(listing).map_err(|e| io_err("reading", listing, e))?;
    // Written even when the kernel has the profile, so that after an upgrade the file
    // holds this crius's text for an admin to load.
    let file = write_profile(name, &render(name, &environment()), dir)?;
    if is_loaded(&loaded, name) {
        return Ok(Loaded::Already);
    }
    let parser = parser().ok_or(AppArmorError::NoParser)?;
    let out = parser_command(&parser, &file)
        .output()
        .map_err(|e| io_err("running", &parser, e))?;
    if !out.status.success() {
        // The parser explains itself on stderr (file, line, what it did not understand).
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(AppArmorError::Parser {
            command: format!("{} -Kr {}", parser.display(), file.display()),
            status: out.status,
            output,
        });
    }
    Ok(Loaded::From(file))
}

/// Whether the kernel's profile listing has `name`. A name may hold spaces, so the mode
/// is split off at the last ` (`.
pub fn is_loaded(listing: &str, name: &str) -> bool {
    listing.lines().any(|line| {
        line.rsplit_once(" (")
            .is_some_and(|(profile, mode)| profile == name && mode.ends_with(')'))
    })
}

/// `apparmor_parser -Kr <file>`: replace the profile if loaded, write no cache.
pub fn parser_command(parser: &Path, file: &Path) -> Command {
    let mut cmd = Command::new(parser);
    cmd.arg("-Kr").arg(file).stdin(std::process::Stdio::null());
    cmd
}

/// The first `apparmor_parser` that `exists` accepts: in `path`'s directories (relative
/// ones skipped, they would depend on the daemon's working directory), then sbin.
pub fn find_parser(path: Option<&OsStr>, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let listed = path.map(std::env::split_paths).into_iter().flatten();
    listed
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(PARSER))
        .find(|p| exists(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The label in `/proc/self/attr/current`: `unconfined`, or `name (mode)`.
pub fn current_profile(attr: &str) -> String {
    let attr = attr.trim_end_matches(['\n', '\0']).trim();
    let name = attr.rsplit_once(" (").map_or(attr, |(name, _)| name);
    if name.is_empty() {
        "unconfined".into()
    } else {
        name.into()
    }
}

/// What the host's AppArmor installation offers, and the daemon's own profile.
fn environment() -> Environment {
    let has = |m: &str| Path::new(MACROS).join(m).exists();
    let attr = std::fs::read_to_string("/proc/self/attr/apparmor/current")
        .or_else(|_| std::fs::read_to_string("/proc/self/attr/current"))
        .unwrap_or_default();
    Environment {
        abi_3: has("abi/3.0"),
        tunables_global: has("tunables/global"),
        abstractions_base: has("abstractions/base"),
        daemon_profile: current_profile(&attr),
    }
}

/// Writes the profile to `<dir>/<name>`, readable by root only; it stays there so an
/// admin can see, or reload, crius's profile.
fn write_profile(name: &str, text: &str, dir: &Path) -> Result<PathBuf, AppArmorError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("chmod", dir, e))?;
    let file = dir.join(name);
    std::fs::write(&file, text).map_err(|e| io_err("writing", &file, e))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("chmod", &file, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests;
