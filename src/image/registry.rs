//! A distribution-API client for one pull: tries the configured hosts in order, answers
//! `Basic` and `Bearer` challenges, and streams blobs into the blob store.

use super::auth::{Challenge, Credentials, TokenResponse, parse_challenge};
use super::blobs::{BlobStore, Expected, sha256_digest};
use super::hosts::RegistryHost;
use super::manifest::{self, Descriptor, ImageManifest, Manifest};
use super::reference::Reference;
use super::{ImageError, RegistryAuth};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Client, Response, StatusCode, Url};
use std::path::PathBuf;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two reads of a response: a stalled registry fails the pull, a slow one does not.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

struct Endpoint {
    host: RegistryHost,
    client: Client,
    /// The `Authorization` value that last worked (or was issued) for this host.
    authorization: Option<String>,
}

pub struct Session<'a> {
    reference: &'a Reference,
    endpoints: Vec<Endpoint>,
    creds: Credentials,
}

/// The manifest to pull, and the digest of what the reference resolved to (an index or
/// the manifest itself): the latter is the image's repo digest.
pub struct Resolved {
    pub repo_digest: String,
    pub manifest: ImageManifest,
}

/// A manifest body as fetched.
struct Fetched {
    bytes: Vec<u8>,
    content_type: Option<String>,
}

impl<'a> Session<'a> {
    pub fn new(
        reference: &'a Reference,
        hosts: Vec<RegistryHost>,
        auth: Option<&RegistryAuth>,
    ) -> Result<Session<'a>, ImageError> {
        let creds = Credentials::from_auth(auth)?;
        let endpoints = hosts
            .into_iter()
            .map(|host| {
                Ok(Endpoint {
                    client: build_client(&host)?,
                    host,
                    authorization: None,
                })
            })
            .collect::<Result<_, ImageError>>()?;
        Ok(Session {
            reference,
            endpoints,
            creds,
        })
    }

    /// Resolves the reference to a single-platform manifest, verifying every digest.
    pub async fn resolve(&mut self) -> Result<Resolved, ImageError> {
        let expected = self.reference.digest.clone();
        let target = self.reference.manifest_ref().to_string();
        let fetched = self
            .fetch_manifest_any(&target, expected.as_deref())
            .await?;
        let repo_digest = sha256_digest(&fetched.bytes);
        let what = format!("manifest {}", self.reference);
        let manifest =
            match manifest::parse(&fetched.bytes, fetched.content_type.as_deref(), &what)? {
                Manifest::Image(m) => m,
                Manifest::Index(index) => {
                    let arch = manifest::host_architecture();
                    let desc = manifest::select_platform(&index, arch)
                        .ok_or_else(|| ImageError::NoMatchingPlatform {
                            reference: self.reference.to_string(),
                            platform: format!("linux/{arch}"),
                        })?
                        .clone();
                    self.fetch_platform_manifest(&desc).await?
                }
            };
        Ok(Resolved {
            repo_digest,
            manifest,
        })
    }

    async fn fetch_platform_manifest(
        &mut self,
        desc: &Descriptor,
    ) -> Result<ImageManifest, ImageError> {
        let fetched = self
            .fetch_manifest_any(&desc.digest, Some(&desc.digest))
            .await?;
        let what = format!("manifest {}", desc.digest);
        let ct = fetched
            .content_type
            .as_deref()
            .or(Some(desc.media_type.as_str()));
        match manifest::parse(&fetched.bytes, ct, &what)? {
            Manifest::Image(m) => Ok(m),
            Manifest::Index(_) => Err(ImageError::Malformed {
                what,
                reason: "an index nested in an index".into(),
            }),
        }
    }

    /// Tries, in order, each host that may `resolve` (for a tag) or `pull` (for a
    /// digest, which the content must then match; a mismatch moves on to the next host).
    async fn fetch_manifest_any(
        &mut self,
        target: &str,
        expected: Option<&str>,
    ) -> Result<Fetched, ImageError> {
        let resolving = expected.is_none();
        let mut last = None;
        for i in self.usable(resolving) {
            let result = self.fetch_manifest(i, target).await.and_then(|f| {
                expected.map_or(Ok(()), |d| verify(d, &sha256_digest(&f.bytes)))?;
                Ok(f)
            });
            match result {
                Ok(f) => return Ok(f),
                Err(e) => {
                    tracing::debug!(host = %self.endpoints[i].host.api_root, error = %e, "manifest fetch failed");
                    last = Some(more_telling(last, e));
                }
            }
        }
        Err(last.unwrap_or_else(|| self.no_host(resolving)))
    }

    async fn fetch_manifest(&mut self, i: usize, target: &str) -> Result<Fetched, ImageError> {
        let url = self.url(i, "manifests", target)?;
        let what = format!("manifest {}", self.reference);
        let mut resp = self.get(i, &url, manifest::ACCEPT, &what).await?;
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err(&url))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > manifest::MAX_MANIFEST_BYTES {
                return Err(ImageError::TooLarge {
                    digest: target.into(),
                    expected: manifest::MAX_MANIFEST_BYTES,
                });
            }
        }
        Ok(Fetched {
            bytes,
            content_type,
        })
    }

    /// Downloads a blob into the store (verified), trying each `pull` host in order.
    pub async fn fetch_blob(
        &mut self,
        desc: &Descriptor,
        store: &BlobStore,
    ) -> Result<PathBuf, ImageError> {
        let mut last = None;
        for i in self.usable(false) {
            match self.download(i, desc, store).await {
                Ok(p) => return Ok(p),
                Err(e) => {
                    tracing::debug!(host = %self.endpoints[i].host.api_root, error = %e, "blob fetch failed");
                    last = Some(more_telling(last, e));
                }
            }
        }
        Err(last.unwrap_or_else(|| self.no_host(false)))
    }

    async fn download(
        &mut self,
        i: usize,
        desc: &Descriptor,
        store: &BlobStore,
    ) -> Result<PathBuf, ImageError> {
        let url = self.url(i, "blobs", &desc.digest)?;
        let what = format!("blob {}", desc.digest);
        let mut resp = self.get(i, &url, "*/*", &what).await?;
        let expected = Expected {
            digest: &desc.digest,
            size: desc.size,
        };
        let mut w = store.writer()?;
        while let Some(chunk) = resp.chunk().await.map_err(http_err(&url))? {
            w.write(&chunk, &expected)?;
        }
        // The commit fsyncs: off the async threads.
        let (store, digest, size) = (store.clone(), desc.digest.clone(), desc.size);
        tokio::task::spawn_blocking(move || {
            w.commit(
                &store,
                &Expected {
                    digest: &digest,
                    size,
                },
            )
        })
        .await
        .map_err(|e| ImageError::Task(format!("blob commit: {e}")))?
    }

    fn usable(&self, resolving: bool) -> Vec<usize> {
        (0..self.endpoints.len())
            .filter(|&i| {
                let c = self.endpoints[i].host.capabilities;
                if resolving { c.resolve } else { c.pull }
            })
            .collect()
    }

    fn no_host(&self, resolving: bool) -> ImageError {
        ImageError::NoUsableHost {
            registry: self.reference.registry.clone(),
            action: if resolving { "resolve" } else { "pull" },
        }
    }

    fn url(&self, i: usize, kind: &str, target: &str) -> Result<Url, ImageError> {
        let host = &self.endpoints[i].host;
        let root = host.api_root.as_str().trim_end_matches('/');
        let s = format!("{root}/{}/{kind}/{target}", self.reference.repository);
        let mut url = Url::parse(&s).map_err(|_| ImageError::InvalidReference(s.clone()))?;
        if host.mirror {
            url.query_pairs_mut()
                .append_pair("ns", &self.reference.registry);
        }
        Ok(url)
    }

    /// GET with the host's headers and current authorization; on a 401, answers the
    /// challenge once and retries.
    async fn get(
        &mut self,
        i: usize,
        url: &Url,
        accept: &str,
        what: &str,
    ) -> Result<Response, ImageError> {
        for attempt in 0..2 {
            let ep = &self.endpoints[i];
            let mut req = ep.client.get(url.clone()).header(ACCEPT, accept);
            for (k, v) in &ep.host.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some(a) = &ep.authorization {
                req = req.header(AUTHORIZATION, a.as_str());
            }
            let resp = req.send().await.map_err(http_err(url))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let header = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let auth = self.answer_challenge(i, url, &header).await?;
                self.endpoints[i].authorization = Some(auth);
                continue;
            }
            return check_status(resp, url, what);
        }
        Err(ImageError::Unauthorized {
            url: url.to_string(),
            status: StatusCode::UNAUTHORIZED.as_u16(),
        })
    }

    async fn answer_challenge(
        &self,
        i: usize,
        url: &Url,
        header: &str,
    ) -> Result<String, ImageError> {
        let unauthorized = || ImageError::Unauthorized {
            url: url.to_string(),
            status: 401,
        };
        let challenge = parse_challenge(header).ok_or_else(unauthorized)?;
        match challenge.scheme.as_str() {
            "basic" => self.creds.basic_header().ok_or_else(unauthorized),
            "bearer" => match &self.creds {
                Credentials::Bearer(t) => Ok(format!("Bearer {t}")),
                _ => Ok(format!(
                    "Bearer {}",
                    self.fetch_token(i, url, &challenge).await?
                )),
            },
            _ => Err(ImageError::BadChallenge {
                url: url.to_string(),
                reason: format!("unsupported scheme {:?}", challenge.scheme),
            }),
        }
    }

    /// Gets a token from the challenge's realm: GET with basic credentials (or none), or
    /// the OAuth2 refresh-token POST for an identity token.
    async fn fetch_token(&self, i: usize, url: &Url, c: &Challenge) -> Result<String, ImageError> {
        let bad = |reason: &str| ImageError::BadChallenge {
            url: url.to_string(),
            reason: reason.into(),
        };
        let realm = c.param("realm").ok_or_else(|| bad("no realm"))?;
        let realm = Url::parse(realm).map_err(|_| bad("realm is not a URL"))?;
        let default_scope = format!("repository:{}:pull", self.reference.repository);
        let scope = c.param("scope").unwrap_or(&default_scope);
        let service = c.param("service").unwrap_or("");
        let client = &self.endpoints[i].client;
        let req = match &self.creds {
            Credentials::Refresh { token, .. } => client.post(realm.clone()).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("service", service),
                ("scope", scope),
                ("client_id", "crius"),
            ]),
            creds => {
                let mut q = realm.clone();
                q.query_pairs_mut().append_pair("scope", scope);
                if !service.is_empty() {
                    q.query_pairs_mut().append_pair("service", service);
                }
                let req = client.get(q);
                match creds {
                    Credentials::Basic { username, password } => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let resp = req.send().await.map_err(http_err(&realm))?;
        let resp = check_status(resp, &realm, "token")?;
        let body: TokenResponse = resp.json().await.map_err(http_err(&realm))?;
        body.into_token()
            .ok_or_else(|| bad("token endpoint returned no token"))
    }
}

fn build_client(host: &RegistryHost) -> Result<Client, ImageError> {
    let mut b = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("crius/", env!("CARGO_PKG_VERSION")));
    if host.skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    for ca in &host.ca {
        let pem = std::fs::read(ca).map_err(ImageError::io("reading CA", ca))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(tls_err(ca))?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    // One client identity per connection: the first configured pair is the one offered.
    if let Some((cert, key)) = host.client.first() {
        let mut pem =
            std::fs::read(cert).map_err(ImageError::io("reading client certificate", cert))?;
        if let Some(key) = key {
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(ImageError::io("reading client key", key))?);
        }
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(tls_err(cert))?);
    }
    b.build().map_err(http_err(&host.api_root))
}

fn tls_err(path: &std::path::Path) -> impl FnOnce(reqwest::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Tls { path, source }
}

fn check_status(resp: Response, url: &Url, what: &str) -> Result<Response, ImageError> {
    let status = resp.status();
    let url = url.to_string();
    match status {
        s if s.is_success() => Ok(resp),
        StatusCode::NOT_FOUND => Err(ImageError::NotFound {
            what: what.into(),
            url,
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ImageError::Unauthorized {
            url,
            status: status.as_u16(),
        }),
        _ => Err(ImageError::Registry {
            url,
            status: status.as_u16(),
        }),
    }
}

/// Of two hosts' failures, the earlier host's (the one configured first) is kept, unless
/// it was a transport failure and the later one a definite answer (not found, access
/// refused, bad content): typically a mirror that is down, then the upstream's answer.
fn more_telling(prev: Option<ImageError>, new: ImageError) -> ImageError {
    let transport =
        |e: &ImageError| matches!(e, ImageError::Http { .. } | ImageError::Registry { .. });
    match prev {
        Some(p) if !transport(&p) || transport(&new) => p,
        _ => new,
    }
}

fn verify(expected: &str, actual: &str) -> Result<(), ImageError> {
    if expected != actual {
        return Err(ImageError::DigestMismatch {
            expected: expected.into(),
            actual: actual.into(),
        });
    }
    Ok(())
}

fn http_err(url: &Url) -> impl FnOnce(reqwest::Error) -> ImageError {
    let url = url.to_string();
    move |source| ImageError::Http { url, source }
}
