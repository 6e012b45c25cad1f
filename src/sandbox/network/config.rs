//! Choosing and parsing the CNI network configuration.
//!
//! Selection: the first file, in lexical order of file name, among `*.conflist`, `*.conf`
//! and `*.json` in the conf dir that parses as a usable network. Broken files are skipped
//! with a warning (as CRI-O's ocicni does; containerd fails instead): a CNI daemonset that
//! drops a bad file beside a good one should not take the node's pod networking down. If
//! every file is broken, the error lists why, so NetworkReady=false explains itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sandbox::SandboxError;

/// CNI spec versions the configuration may declare (plugins 1.1.x support all of them).
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// One network: a plugin chain. The daemon stores it with the pod so DEL runs the exact
/// configuration ADD ran, even if the conf dir has changed since.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's configuration object as written in the file.
    pub plugins: Vec<Value>,
    /// The file it was read from.
    pub source: PathBuf,
}

impl NetworkConfig {
    /// Parses a conflist, or a single-plugin conf (which becomes a one-plugin list).
    /// `Err` carries a reason for a human.
    pub fn parse(source: &Path, bytes: &[u8]) -> Result<NetworkConfig, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let obj = value.as_object().ok_or("not a JSON object")?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("missing \"name\"")?;
        let version = obj
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or("missing \"cniVersion\"")?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(format!(
                "cniVersion {version:?} is not supported (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
        let is_list = source.extension().is_some_and(|e| e == "conflist");
        let plugins = match obj.get("plugins") {
            Some(list) => list.as_array().ok_or("\"plugins\" is not a list")?.clone(),
            None if is_list => return Err("missing \"plugins\"".into()),
            None => vec![value.clone()],
        };
        if plugins.is_empty() {
            return Err("\"plugins\" is empty".into());
        }
        for (i, p) in plugins.iter().enumerate() {
            plugin_type(p).map_err(|reason| format!("plugin {i}: {reason}"))?;
        }
        Ok(NetworkConfig {
            name: name.to_owned(),
            cni_version: version.to_owned(),
            plugins,
            source: source.to_owned(),
        })
    }

    /// The `type` (binary name) of every plugin, in chain order.
    pub fn plugin_types(&self) -> Result<Vec<&str>, SandboxError> {
        self.plugins
            .iter()
            .map(|p| plugin_type(p).map_err(|reason| self.invalid(reason)))
            .collect()
    }

    pub(super) fn invalid(&self, reason: String) -> SandboxError {
        SandboxError::InvalidNetworkConfig {
            path: self.source.clone(),
            reason,
        }
    }
}

/// The plugin's binary name, refusing anything that could name a path.
fn plugin_type(plugin: &Value) -> Result<&str, String> {
    let ty = plugin
        .get("type")
        .and_then(Value::as_str)
        .ok_or("missing \"type\"")?;
    if ty.is_empty() || ty.contains('/') || ty == "." || ty == ".." {
        return Err(format!("invalid plugin type {ty:?}"));
    }
    Ok(ty)
}

/// Loads the network `dir` selects (see the module docs).
pub fn load_from_dir(dir: &Path) -> Result<NetworkConfig, SandboxError> {
    let mut skipped = Vec::new();
    for path in candidate_files(dir)? {
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| NetworkConfig::parse(&path, &bytes));
        match parsed {
            Ok(net) => return Ok(net),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping CNI config");
                skipped.push(format!("{}: {reason}", path.display()));
            }
        }
    }
    Err(SandboxError::NoNetworkConfig {
        dir: dir.to_owned(),
        skipped,
    })
}

fn candidate_files(dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SandboxError::io("listing", dir, e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_candidate(p))
        .collect();
    files.sort();
    Ok(files)
}

fn is_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    // Hidden files are editors' and atomic writers' temporaries.
    let wanted = [".conflist", ".conf", ".json"];
    !name.starts_with('.') && wanted.iter().any(|ext| name.ends_with(ext)) && path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, Kind};

    const BRIDGE: &str = r#"{"cniVersion":"1.0.0","name":"one","type":"bridge"}"#;

    #[test]
    fn single_conf_becomes_a_list() {
        let net = NetworkConfig::parse(Path::new("/x/10-a.conf"), BRIDGE.as_bytes()).unwrap();
        assert_eq!(net.name, "one");
        assert_eq!(net.cni_version, "1.0.0");
        assert_eq!(net.plugin_types().unwrap(), ["bridge"]);
    }

    #[test]
    fn parse_errors() {
        let p = Path::new("/x/a.conflist");
        for (bad, why) in [
            ("{", "EOF"),
            ("[]", "not a JSON object"),
            (r#"{"cniVersion":"1.0.0","plugins":[]}"#, "name"),
            (
                r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (
                r#"{"name":"n","cniVersion":"9.9.9","plugins":[{"type":"x"}]}"#,
                "9.9.9",
            ),
            (
                r#"{"name":"n","cniVersion":"0.4.0"}"#,
                "missing \"plugins\"",
            ),
            (r#"{"name":"n","cniVersion":"0.4.0","plugins":[]}"#, "empty"),
            (
                r#"{"name":"n","cniVersion":"0.4.0","plugins":[{}]}"#,
                "type",
            ),
            (
                r#"{"name":"n","cniVersion":"0.4.0","plugins":[{"type":"../sh"}]}"#,
                "invalid",
            ),
        ] {
            let err = NetworkConfig::parse(p, bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn selects_first_valid_file_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        let list = |name: &str| {
            format!(r#"{{"cniVersion":"0.4.0","name":"{name}","plugins":[{{"type":"ptp"}}]}}"#)
        };
        write("00-broken.conflist", "{ not json");
        write("05-notes.txt", &list("txt"));
        write(".10-hidden.conflist", &list("hidden"));
        write("20-single.conf", BRIDGE);
        write("30-list.conflist", &list("later"));
        std::fs::create_dir(dir.path().join("15-dir.conf")).unwrap();
        let net = load_from_dir(dir.path()).unwrap();
        assert_eq!(net.name, "one");
        assert_eq!(net.source, dir.path().join("20-single.conf"));

        std::fs::remove_file(dir.path().join("20-single.conf")).unwrap();
        assert_eq!(load_from_dir(dir.path()).unwrap().name, "later");
    }

    #[test]
    fn no_config_is_failed_precondition_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_from_dir(dir.path()).unwrap_err();
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert!(err.to_string().starts_with("no network config found in"));

        std::fs::write(dir.path().join("10-bad.conf"), "{}").unwrap();
        let err = load_from_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("10-bad.conf: missing \"name\""),
            "{err}"
        );

        let err = load_from_dir(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, SandboxError::NoNetworkConfig { .. }));
    }
}
