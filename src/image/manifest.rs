//! Manifests and indexes, OCI and Docker flavours (their JSON shapes agree), and the choice
//! of one manifest from an index for this machine's platform.

use super::ImageError;
use super::reference::is_valid_digest;
use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What the manifest endpoint is asked for, most preferred first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// Manifests and configs are small; anything bigger is not one.
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub enum Manifest {
    Index(Index),
    Image(ImageManifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    schema_version: Option<u32>,
}

/// Parses a manifest body; the media type comes from Content-Type, else from the body.
pub fn parse(bytes: &[u8], content_type: Option<&str>, what: &str) -> Result<Manifest, ImageError> {
    let decode = |source| ImageError::Decode {
        what: what.into(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(decode)?;
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = header_type.map(str::to_string).or(probe.media_type);
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(ImageError::UnsupportedMediaType(other.into())),
        // Bare OCI documents may omit mediaType: tell them apart by shape.
        None if probe.schema_version == Some(2) => probe.manifests.is_some(),
        None => return Err(ImageError::UnsupportedMediaType("(none)".into())),
    };
    if is_index {
        let index: Index = serde_json::from_slice(bytes).map_err(decode)?;
        check_digests(index.manifests.iter(), what)?;
        return Ok(Manifest::Index(index));
    }
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(decode)?;
    check_digests(std::iter::once(&m.config).chain(&m.layers), what)?;
    for layer in &m.layers {
        if layer.media_type.contains("zstd") {
            return Err(ImageError::UnsupportedCompression {
                layer: layer.digest.clone(),
                compression: "zstd",
            });
        }
    }
    Ok(Manifest::Image(m))
}

/// Digests end up in URLs and file names: only well-formed sha256 ones are accepted.
fn check_digests<'a>(
    mut descs: impl Iterator<Item = &'a Descriptor>,
    what: &str,
) -> Result<(), ImageError> {
    match descs.find(|d| !is_valid_digest(&d.digest)) {
        None => Ok(()),
        Some(d) => Err(ImageError::Malformed {
            what: what.into(),
            reason: format!("unsupported digest {:?}", d.digest),
        }),
    }
}

/// The GOARCH name of the machine crius runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The variant an image without one is assumed to be built for.
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "amd64" => Some("v1"),
        "arm64" => Some("v8"),
        _ => None,
    }
}

/// The manifest for linux/`arch`: one without a variant (or with the baseline one) wins
/// over one that needs newer CPU features; failing that, the first for the architecture.
pub fn select_platform<'a>(index: &'a Index, arch: &str) -> Option<&'a Descriptor> {
    let candidates = index.manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    });
    let mut fallback = None;
    for d in candidates {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        match variant {
            None | Some("") => return Some(d),
            Some(v) if Some(v) == default_variant(arch) => return Some(d),
            Some(_) => {
                fallback.get_or_insert(d);
            }
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn index_json(entries: &[(&str, &str, Option<&str>, char)]) -> String {
        let ms: Vec<_> = entries
            .iter()
            .map(|(os, arch, variant, c)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest(*c), "size": 10, "platform": p})
            })
            .collect();
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ms}).to_string()
    }

    fn select(json: &str, arch: &str) -> Option<String> {
        let Manifest::Index(i) = parse(json.as_bytes(), None, "t").unwrap() else {
            panic!("not an index")
        };
        select_platform(&i, arch).map(|d| d.digest.clone())
    }

    #[test]
    fn platform_selection() {
        let j = index_json(&[
            ("unknown", "unknown", None, 'a'),
            ("linux", "arm64", Some("v8"), 'b'),
            ("linux", "amd64", Some("v3"), 'c'),
            ("linux", "amd64", None, 'd'),
            ("windows", "amd64", None, 'e'),
        ]);
        assert_eq!(select(&j, "amd64"), Some(digest('d')));
        assert_eq!(select(&j, "arm64"), Some(digest('b')));
        assert_eq!(select(&j, "s390x"), None);
        let j = index_json(&[
            ("linux", "amd64", Some("v3"), 'c'),
            ("linux", "amd64", Some("v1"), 'f'),
        ]);
        assert_eq!(select(&j, "amd64"), Some(digest('f')));
        let j = index_json(&[("linux", "amd64", Some("v2"), 'c')]);
        assert_eq!(select(&j, "amd64"), Some(digest('c')));
    }

    #[test]
    fn manifest_parsing() {
        let docker = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7, "digest": digest('1')},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 9, "digest": digest('2')}]
        })
        .to_string();
        let Manifest::Image(m) = parse(docker.as_bytes(), None, "t").unwrap() else {
            panic!()
        };
        assert_eq!(m.config.size, 7);
        assert_eq!(m.layers[0].digest, digest('2'));
        // Content-Type wins, parameters are ignored; a bare OCI manifest is recognized.
        let bare = serde_json::json!({"schemaVersion": 2, "config": {"digest": digest('1'), "size": 1}, "layers": []}).to_string();
        assert!(matches!(
            parse(bare.as_bytes(), Some("application/json"), "t"),
            Ok(Manifest::Image(_))
        ));
        let ct = format!("{OCI_MANIFEST}; charset=utf-8");
        assert!(matches!(
            parse(bare.as_bytes(), Some(&ct), "t"),
            Ok(Manifest::Image(_))
        ));
        let list = index_json(&[]);
        assert!(matches!(
            parse(list.as_bytes(), Some(DOCKER_LIST), "t"),
            Ok(Manifest::Index(_))
        ));

        let v1 = r#"{"schemaVersion": 1, "name": "x"}"#;
        let e = parse(
            v1.as_bytes(),
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            "t",
        );
        assert!(matches!(e, Err(ImageError::UnsupportedMediaType(_))));
        assert!(matches!(
            parse(b"{", None, "t"),
            Err(ImageError::Decode { .. })
        ));
        let evil = docker.replace(&digest('2'), "sha256:../../../etc");
        assert!(matches!(
            parse(evil.as_bytes(), None, "t"),
            Err(ImageError::Malformed { .. })
        ));
        let zstd = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"digest": digest('1'), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": digest('3'), "size": 1}]})
        .to_string();
        let e = parse(zstd.as_bytes(), None, "t").unwrap_err();
        assert_eq!(
            crate::error::Classify::kind(&e),
            crate::error::Kind::Unimplemented
        );
    }
}

#[cfg(test)]
mod config_tests {
    /// A config as Docker Hub serves it (docker fields, nulls) decodes into the OCI type.
    #[test]
    fn docker_hub_config_decodes() {
        let cfg = r#"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"",
            "AttachStdin":false,"Tty":false,"Env":["PATH=/usr/local/sbin:/bin"],"Cmd":["sh"],
            "Image":"sha256:1234","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,
            "Labels":null,"ArgsEscaped":true,"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT",
            "Healthcheck":{"Test":["CMD","true"]}},"container":"abc","container_config":{"Cmd":null},
            "created":"2023-05-19T20:19:27.143359224Z","docker_version":"20.10.23",
            "history":[{"created":"2023-05-19T20:19:26Z","created_by":"ADD file in /"},
                       {"created":"2023-05-19T20:19:27Z","created_by":"CMD [\"sh\"]","empty_layer":true}],
            "os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let c: oci_spec::image::ImageConfiguration = serde_json::from_str(cfg).unwrap();
        assert_eq!(c.rootfs().diff_ids().len(), 1);
        let inner = c.config().as_ref().unwrap();
        assert_eq!(inner.cmd().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(inner.entrypoint(), &None);
    }
}
