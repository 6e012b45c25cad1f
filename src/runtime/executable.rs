//! The program a container process runs: argv and environment as C strings, and the
//! executable looked up in the container's $PATH (after pivot_root), as a shell would.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access};

use super::RuntimeError;

/// $PATH when the spec's environment has none (runc's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything execve needs, built before the start signal so that failures are reported
/// to `create` instead of surfacing as an exit code.
pub(super) struct Program {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

impl Program {
    pub(super) fn prepare(args: &[String], env: &[String]) -> Result<Self, RuntimeError> {
        let Some(name) = args.first() else {
            return Err(RuntimeError::Init("process.args is empty".into()));
        };
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let path = find_executable(name, path_var)?;
        Ok(Program {
            path: cstring(path.as_os_str().as_bytes())?,
            argv: args
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            envp: env
                .iter()
                .map(|e| cstring(e.as_bytes()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Replaces the process image; returns only on failure.
    pub(super) fn exec(&self) -> nix::Error {
        match nix::unistd::execve(&self.path, &self.argv, &self.envp) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, RuntimeError> {
    CString::new(bytes)
        .map_err(|_| RuntimeError::Init("argument or env contains a NUL byte".into()))
}

fn is_executable(path: &Path) -> bool {
    path.is_file() && access(path, AccessFlags::X_OK).is_ok()
}

/// `name` itself when it contains a '/', else the first executable `<dir>/<name>` in
/// `path_var`.
pub(super) fn find_executable(name: &str, path_var: &str) -> Result<PathBuf, RuntimeError> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(RuntimeError::Init(format!(
            "executable file `{name}` not found or not executable"
        )));
    }
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| RuntimeError::Init(format!("executable file `{name}` not found in $PATH")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_first_executable_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("tool"), "").unwrap(); // not executable: skipped
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = format!("{}:{}", a.display(), b.display());
        assert_eq!(find_executable("tool", &path_var).unwrap(), b.join("tool"));
        match find_executable("nope", &path_var) {
            Err(RuntimeError::Init(m)) => {
                assert_eq!(m, "executable file `nope` not found in $PATH")
            }
            other => panic!("unexpected {other:?}"),
        }
        let abs = b.join("tool");
        assert_eq!(find_executable(abs.to_str().unwrap(), "").unwrap(), abs);
    }
}
