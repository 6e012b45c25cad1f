//! Registry host configuration, compatible with containerd's `certs.d` layout:
//! `<config_dir>/<registry host>/hosts.toml`, falling back to `<config_dir>/_default/`.
//!
//! `[host."<url>"]` entries are tried in file order, then `server` (by default
//! `https://registry-1.docker.io` for docker.io and `https://<registry>` otherwise).
//! Unless `override_path = true`, `/v2` is appended to the URL path, as containerd does.

use super::ImageError;
use reqwest::Url;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a host may be used for; `resolve` is turning a tag into a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One endpoint to try, with its API root (`.../v2`) already computed.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryHost {
    pub api_root: Url,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    pub ca: Vec<PathBuf>,
    pub headers: Vec<(String, String)>,
    /// Client certificates: (certificate, key); no key file means the key is in the
    /// certificate's file.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// Set for `[host]` entries: requests carry `?ns=<registry>` as containerd's do.
    pub mirror: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `client = "both.pem"`, `client = ["a.pem", "b.pem"]` or `client = [["cert", "key"]]`,
/// as containerd reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum ClientSpec {
    #[default]
    None,
    One(String),
    Many(Vec<ClientItem>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientItem {
    File(String),
    Pair(Vec<String>),
}

impl ClientSpec {
    fn into_pairs(self, base: &Path) -> Vec<(PathBuf, Option<PathBuf>)> {
        let items = match self {
            ClientSpec::None => Vec::new(),
            ClientSpec::One(f) => vec![ClientItem::File(f)],
            ClientSpec::Many(items) => items,
        };
        items
            .into_iter()
            .filter_map(|item| match item {
                ClientItem::File(f) => Some((base.join(f), None)),
                ClientItem::Pair(p) => {
                    let mut it = p.into_iter();
                    let cert = base.join(it.next()?);
                    Some((cert, it.next().map(|k| base.join(k))))
                }
            })
            .collect()
    }
}

/// The per-host keys (also allowed at the top level, where they apply to `server`).
#[derive(Debug, Default, Deserialize)]
struct HostKeys {
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: bool,
    #[serde(default)]
    override_path: bool,
    #[serde(default)]
    ca: OneOrMany,
    #[serde(default)]
    header: toml::Table,
    #[serde(default)]
    client: ClientSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("parsing {path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: invalid host URL {url:?}")]
    Url { path: PathBuf, url: String },
    #[error("{path}: unknown capability {0:?}", .cap)]
    Capability { path: PathBuf, cap: String },
}

/// The hosts to try for `registry`, in order. No config file means the default server.
pub fn hosts_for(config_dir: &Path, registry: &str) -> Result<Vec<RegistryHost>, ImageError> {
    for dir in [registry, "_default"] {
        let path = config_dir.join(dir).join("hosts.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(parse_hosts(&text, registry, &path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ImageError::Io {
                    op: "reading",
                    path,
                    source,
                });
            }
        }
        // Docker's layout, which containerd also reads: `*.crt` CAs, `*.cert` + `*.key`.
        if let Ok(entries) = std::fs::read_dir(config_dir.join(dir)) {
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            let has_ext = |p: &Path, x: &str| p.extension().is_some_and(|e| e == x);
            let mut host = to_host(&default_server(registry), HostKeys::default(), false, &path)?;
            host.ca = files
                .iter()
                .filter(|p| has_ext(p, "crt"))
                .cloned()
                .collect();
            host.client = files
                .iter()
                .filter(|p| has_ext(p, "cert"))
                .map(|c| (c.clone(), Some(c.with_extension("key"))))
                .filter(|(_, k)| k.as_ref().is_some_and(|k| k.is_file()))
                .collect();
            return Ok(vec![host]);
        }
    }
    let server = default_server(registry);
    let path = config_dir.join(registry);
    Ok(vec![to_host(&server, HostKeys::default(), false, &path)?])
}

fn default_server(registry: &str) -> String {
    if registry == super::reference::DEFAULT_REGISTRY {
        return "https://registry-1.docker.io".into();
    }
    // Like docker and containerd's CRI, a registry on the local machine speaks plain HTTP.
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    if host == "localhost" || host.starts_with("127.") {
        return format!("http://{registry}");
    }
    format!("https://{registry}")
}

/// Parses one `hosts.toml` (its text) for `registry`; `path` is for error messages.
pub fn parse_hosts(
    text: &str,
    registry: &str,
    path: &Path,
) -> Result<Vec<RegistryHost>, HostsError> {
    let toml_err = |source| HostsError::Toml {
        path: path.into(),
        source: Box::new(source),
    };
    // A Table keeps file order (toml's `preserve_order`), which is the order to try hosts.
    let mut table: toml::Table = toml::from_str(text).map_err(toml_err)?;
    let hosts = match table.remove("host") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let server = match table.remove("server") {
        Some(toml::Value::String(s)) => s,
        _ => default_server(registry),
    };
    let mut out = Vec::new();
    for (url, value) in hosts {
        let keys: HostKeys = value.try_into().map_err(toml_err)?;
        out.push(to_host(&url, keys, true, path)?);
    }
    let top: HostKeys = toml::Value::Table(table).try_into().map_err(toml_err)?;
    out.push(to_host(&server, top, false, path)?);
    Ok(out)
}

fn to_host(
    url: &str,
    keys: HostKeys,
    mirror: bool,
    path: &Path,
) -> Result<RegistryHost, HostsError> {
    let api_root = api_root(url, keys.override_path).ok_or_else(|| HostsError::Url {
        path: path.into(),
        url: url.into(),
    })?;
    let capabilities = match keys.capabilities {
        None => Capabilities::ALL,
        Some(list) => parse_capabilities(&list, path)?,
    };
    let base = path.parent().unwrap_or(path);
    let ca = keys
        .ca
        .into_vec()
        .into_iter()
        .map(|c| base.join(c))
        .collect();
    let mut headers = Vec::new();
    for (name, value) in keys.header {
        match value {
            toml::Value::String(s) => headers.push((name, s)),
            toml::Value::Array(vs) => headers.extend(
                vs.into_iter()
                    .filter_map(|v| v.as_str().map(|s| (name.clone(), s.to_string()))),
            ),
            _ => {}
        }
    }
    Ok(RegistryHost {
        api_root,
        capabilities,
        skip_verify: keys.skip_verify,
        ca,
        headers,
        client: keys.client.into_pairs(base),
        mirror,
    })
}

fn parse_capabilities(list: &[String], path: &Path) -> Result<Capabilities, HostsError> {
    let mut c = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };
    for cap in list {
        match cap.as_str() {
            "pull" => c.pull = true,
            "resolve" => c.resolve = true,
            "push" => c.push = true,
            _ => {
                return Err(HostsError::Capability {
                    path: path.into(),
                    cap: cap.clone(),
                });
            }
        }
    }
    Ok(c)
}

/// `https://` is assumed without a scheme; `/v2` is appended unless the path already ends
/// in it or `override_path` says the path is the API root itself.
fn api_root(url: &str, override_path: bool) -> Option<Url> {
    let with_scheme = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let mut u = Url::parse(&with_scheme).ok()?;
    u.host_str()?;
    let p = u.path().trim_end_matches('/').to_string();
    let p = if override_path || p.ends_with("/v2") {
        p
    } else {
        format!("{p}/v2")
    };
    u.set_path(&p);
    u.set_query(None);
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, registry: &str) -> Vec<RegistryHost> {
        parse_hosts(text, registry, Path::new("/etc/crius/certs.d/x/hosts.toml")).unwrap()
    }

    #[test]
    fn hosts_in_file_order_then_server() {
        let hosts = parse(
            r#"
server = "https://registry-1.docker.io"

[host."http://127.0.0.1:5002"]
  capabilities = ["pull", "resolve"]
  client = "c.pem"

[host."https://mirror.example.com/prefix"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "ca.pem"
  [host."https://mirror.example.com/prefix".header]
    x-custom = "1"

[host."https://a.example/api"]
  override_path = true
  client = [["c.cert", "c.key"], "both.pem"]
"#,
            "docker.io",
        );
        let roots: Vec<_> = hosts.iter().map(|h| h.api_root.as_str()).collect();
        assert_eq!(
            roots,
            [
                "http://127.0.0.1:5002/v2",
                "https://mirror.example.com/prefix/v2",
                "https://a.example/api",
                "https://registry-1.docker.io/v2",
            ]
        );
        assert!(hosts[0].capabilities.resolve && !hosts[0].capabilities.push);
        assert!(!hosts[1].capabilities.resolve && hosts[1].capabilities.pull);
        assert!(hosts[1].skip_verify && !hosts[0].skip_verify);
        assert_eq!(
            hosts[1].ca,
            vec![PathBuf::from("/etc/crius/certs.d/x/ca.pem")]
        );
        assert_eq!(hosts[1].headers, vec![("x-custom".into(), "1".into())]);
        let d = Path::new("/etc/crius/certs.d/x");
        assert_eq!(hosts[0].client, vec![(d.join("c.pem"), None)]);
        assert_eq!(
            hosts[2].client,
            vec![
                (d.join("c.cert"), Some(d.join("c.key"))),
                (d.join("both.pem"), None)
            ]
        );
        assert!(hosts[3].client.is_empty());
        assert!(hosts[0].mirror && !hosts[3].mirror);
        assert_eq!(hosts[3].capabilities, Capabilities::ALL);
    }

    #[test]
    fn server_defaults_and_top_level_keys() {
        let h = parse("", "docker.io");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].api_root.as_str(), "https://registry-1.docker.io/v2");
        let h = parse("skip_verify = true\ncapabilities = [\"pull\"]", "quay.io");
        assert_eq!(h[0].api_root.as_str(), "https://quay.io/v2");
        assert!(h[0].skip_verify && !h[0].capabilities.resolve);
        let h = parse("server = \"http://10.0.0.1:5000/v2/\"", "10.0.0.1:5000");
        assert_eq!(h[0].api_root.as_str(), "http://10.0.0.1:5000/v2");
        let h = parse("server = \"registry.internal:443\"", "r");
        assert_eq!(h[0].api_root.as_str(), "https://registry.internal/v2");
    }

    #[test]
    fn errors() {
        let p = Path::new("h.toml");
        assert!(matches!(
            parse_hosts("server = ", "r", p),
            Err(HostsError::Toml { .. })
        ));
        let bad_cap = "[host.\"http://x\"]\ncapabilities = [\"fly\"]";
        assert!(matches!(
            parse_hosts(bad_cap, "r", p),
            Err(HostsError::Capability { .. })
        ));
        assert!(matches!(
            parse_hosts("server = \"http://\"", "r", p),
            Err(HostsError::Url { .. })
        ));
    }

    #[test]
    fn directory_lookup_falls_back_to_default_then_builtin() {
        let t = tempfile::tempdir().unwrap();
        let h = hosts_for(t.path(), "localhost:5000").unwrap();
        assert_eq!(h[0].api_root.as_str(), "http://localhost:5000/v2");
        std::fs::create_dir_all(t.path().join("_default")).unwrap();
        std::fs::write(
            t.path().join("_default/hosts.toml"),
            "[host.\"http://m:1\"]\n",
        )
        .unwrap();
        let h = hosts_for(t.path(), "gcr.io").unwrap();
        assert_eq!(h[0].api_root.as_str(), "http://m:1/v2");
        assert_eq!(h[1].api_root.as_str(), "https://gcr.io/v2");
        std::fs::create_dir_all(t.path().join("gcr.io")).unwrap();
        std::fs::write(t.path().join("gcr.io/ca.crt"), "").unwrap();
        std::fs::write(t.path().join("gcr.io/client.cert"), "").unwrap();
        std::fs::write(t.path().join("gcr.io/client.key"), "").unwrap();
        std::fs::write(t.path().join("gcr.io/lonely.cert"), "").unwrap();
        let h = hosts_for(t.path(), "gcr.io").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].api_root.as_str(), "https://gcr.io/v2");
        assert_eq!(h[0].ca, vec![t.path().join("gcr.io/ca.crt")]);
        let (cert, key) = (
            t.path().join("gcr.io/client.cert"),
            t.path().join("gcr.io/client.key"),
        );
        assert_eq!(h[0].client, vec![(cert, Some(key))]);
        std::fs::write(
            t.path().join("gcr.io/hosts.toml"),
            "server = \"https://g\"\n",
        )
        .unwrap();
        let h = hosts_for(t.path(), "gcr.io").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].api_root.as_str(), "https://g/v2");
    }
}
