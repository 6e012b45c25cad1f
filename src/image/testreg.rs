//! Test support: a minimal in-process registry (HTTP/1.1 on loopback, one request per
//! connection) and a builder for small images.

use super::blobs::sha256_digest;
use super::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// (repository, tag or digest) -> (content type, body)
type Manifests = HashMap<(String, String), (String, Vec<u8>)>;

#[derive(Default)]
pub struct FakeRegistry {
    pub manifests: Mutex<Manifests>,
    pub blobs: Mutex<HashMap<String, Vec<u8>>>,
    /// Basic credentials the token endpoint demands; `None` serves anonymously.
    pub auth: Option<(String, String)>,
    /// Challenge with `Basic` (the credentials on every request) instead of `Bearer`.
    pub basic: bool,
    pub blob_requests: AtomicUsize,
    pub token_requests: AtomicUsize,
    pub addr: Mutex<String>,
}

const TOKEN: &str = "tok-123";
/// The identity (refresh) token the fake token endpoint accepts.
pub const REFRESH: &str = "refresh-xyz";

pub async fn serve(reg: FakeRegistry) -> Arc<FakeRegistry> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    *reg.addr.lock().unwrap() = listener.local_addr().unwrap().to_string();
    let reg = Arc::new(reg);
    let r = reg.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !complete(&buf) {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = r.handle(&String::from_utf8_lossy(&buf));
                let _ = conn.write_all(&resp).await;
            });
        }
    });
    reg
}

impl FakeRegistry {
    pub fn addr(&self) -> String {
        self.addr.lock().unwrap().clone()
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, content_type: &str, body: &[u8]) {
        let key = (repo.to_string(), reference.to_string());
        let value = (content_type.to_string(), body.to_vec());
        self.manifests.lock().unwrap().insert(key, value);
    }

    pub fn put_blob(&self, body: &[u8]) -> String {
        let d = sha256_digest(body);
        self.blobs.lock().unwrap().insert(d.clone(), body.to_vec());
        d
    }

    fn handle(&self, req: &str) -> Vec<u8> {
        let mut lines = req.lines();
        let target = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("/");
        let header = |name: &str| {
            req.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_string())
        };
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        if path == "/token" {
            let body = req.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            return self.token(header("authorization"), body);
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return respond(404, &[], b"");
        };
        if self.auth.is_some() && header("authorization") != Some(self.accepted()) {
            let challenge = if self.basic {
                "WWW-Authenticate: Basic realm=\"fake\"".to_string()
            } else {
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:x:pull\"",
                    self.addr()
                )
            };
            return respond(401, &[&challenge], b"");
        }
        if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
            let key = (repo.to_string(), reference.to_string());
            return match self.manifests.lock().unwrap().get(&key) {
                Some((ct, body)) => respond(200, &[&format!("Content-Type: {ct}")], body),
                None => respond(404, &[], b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}"),
            };
        }
        if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
            self.blob_requests.fetch_add(1, Ordering::SeqCst);
            return match self.blobs.lock().unwrap().get(digest) {
                Some(body) => respond(200, &["Content-Type: application/octet-stream"], body),
                None => respond(404, &[], b""),
            };
        }
        respond(404, &[], b"")
    }

    fn basic_value(&self) -> String {
        let (user, pass) = self.auth.clone().unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b64}")
    }

    /// The `Authorization` value registry endpoints accept.
    fn accepted(&self) -> String {
        if self.basic {
            self.basic_value()
        } else {
            format!("Bearer {TOKEN}")
        }
    }

    /// GET with basic credentials, or the OAuth2 refresh-token POST (answered with the
    /// `access_token` field, as OAuth2 servers do).
    fn token(&self, authorization: Option<String>, body: &str) -> Vec<u8> {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        if self.auth.is_none() || self.basic {
            return respond(404, &[], b"");
        }
        if body.contains("grant_type=refresh_token") {
            if !body
                .split('&')
                .any(|kv| kv == format!("refresh_token={REFRESH}"))
            {
                return respond(401, &[], b"");
            }
            let json = format!("{{\"access_token\":\"{TOKEN}\"}}");
            return respond(200, &["Content-Type: application/json"], json.as_bytes());
        }
        if authorization != Some(self.basic_value()) {
            return respond(401, &[], b"");
        }
        respond(
            200,
            &["Content-Type: application/json"],
            format!("{{\"token\":\"{TOKEN}\"}}").as_bytes(),
        )
    }
}

/// Headers received, and as much body as Content-Length announces.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

fn respond(status: u16, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An image's pieces as they would sit in a registry.
pub struct TestImage {
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: Vec<Vec<u8>>,
    pub diff_ids: Vec<String>,
    pub config: Vec<u8>,
}

/// Builds an image whose layers each hold the given (path, contents) files, gzipped.
pub fn build_image(layers: &[&[(&str, &str)]], docker: bool) -> TestImage {
    use std::io::Write;
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for files in layers {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in *files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        diff_ids.push(sha256_digest(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        blobs.push(gz.finish().unwrap());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256_digest(&config);
    let (mt, layer_mt) = if docker {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip")
    };
    let layer_descs: Vec<_> = blobs
        .iter()
        .map(|b| serde_json::json!({"mediaType": layer_mt, "digest": sha256_digest(b), "size": b.len()}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    })
    .to_string()
    .into_bytes();
    TestImage {
        config_digest,
        manifest_digest: sha256_digest(&manifest),
        manifest,
        layers: blobs,
        diff_ids,
        config,
    }
}

impl TestImage {
    /// Publishes blobs and the manifest under `repo:tag` (and by digest).
    pub fn publish(&self, reg: &FakeRegistry, repo: &str, tag: &str) {
        reg.put_blob(&self.config);
        for l in &self.layers {
            reg.put_blob(l);
        }
        let mt = serde_json::from_slice::<serde_json::Value>(&self.manifest).unwrap()["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        reg.put_manifest(repo, tag, &mt, &self.manifest);
        reg.put_manifest(repo, &self.manifest_digest, &mt, &self.manifest);
    }

    /// An index holding this manifest for linux/amd64 and a decoy for arm64.
    pub fn index(&self) -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", "0".repeat(64)), "size": 1,
                 "platform": {"os": "linux", "architecture": "s390x"}},
                {"mediaType": OCI_MANIFEST, "digest": self.manifest_digest, "size": self.manifest.len(),
                 "platform": {"os": "linux", "architecture": super::manifest::host_architecture()}},
            ]
        })
        .to_string()
        .into_bytes()
    }
}
