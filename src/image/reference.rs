//! Image references, normalized the way kubelet and the docker tooling expect:
//! `busybox` is `docker.io/library/busybox:latest`.

use super::ImageError;
use std::fmt;

pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// A fully normalized reference. `tag` is `None` only when a digest was given alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag` when a tag is present.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// What to ask the registry's manifest endpoint for: the digest wins over the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Parses and normalizes `s`; errors are `ImageError::InvalidReference`.
pub fn normalize(s: &str) -> Result<Reference, ImageError> {
    let bad = || ImageError::InvalidReference(s.to_string());
    if s.is_empty() || s.len() > MAX_NAME_LEN + 80 || is_full_hex_id(s) {
        return Err(bad());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_valid_digest(d) {
                return Err(bad());
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(t) = tag
        && !is_valid_tag(t)
    {
        return Err(bad());
    }
    let (registry, repository) = split_registry(name);
    if !is_valid_registry(&registry) || !is_valid_repository(&repository) {
        return Err(bad());
    }
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(bad());
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `sha256:<64 lowercase hex>` (the only algorithm the store uses).
pub fn is_valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(is_full_hex_id)
}

pub fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[slash..].rfind(':') {
        Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
        None => (s, None),
    }
}

/// The first component is a registry when it looks like a host: it has a '.' or ':', is
/// `localhost`, or has uppercase letters (which a repository path cannot have), as in
/// docker's `splitDockerDomain`. Otherwise the name is on Docker Hub.
fn split_registry(name: &str) -> (String, String) {
    let (registry, repo) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    if registry == DEFAULT_REGISTRY && !repo.contains('/') {
        return (registry, format!("library/{repo}"));
    }
    (registry, repo)
}

fn is_valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_valid_registry(r: &str) -> bool {
    // "[::1]" or "[::1]:5000": an IPv6 literal, whose colons are not a port separator.
    if let Some(rest) = r.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(is_port);
        return ip.parse::<std::net::Ipv6Addr>().is_ok() && port_ok;
    }
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if port.is_some_and(|p| !is_port(p)) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_valid_repository(repo: &str) -> bool {
    !repo.is_empty() && repo.split('/').all(is_valid_component)
}

fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_valid_references() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x:y", "localhost/x:y"),
            (
                "127.0.0.1:5000/a/b/c:v1.2-rc_3",
                "127.0.0.1:5000/a/b/c:v1.2-rc_3",
            ),
            (
                "gcr.io/k8s-staging/a__b.c--d",
                "gcr.io/k8s-staging/a__b.c--d:latest",
            ),
        ];
        for (input, want) in cases {
            let r = normalize(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = normalize(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        let r = normalize(&format!("quay.io/a/b:v1@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.name(), "quay.io/a/b");
    }

    #[test]
    fn rejects_invalid_references() {
        let bad = [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "foo/Bar",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            &format!("busybox@{}", D.to_uppercase()),
            "busybox:",
            "busybox:-tag",
            "busybox:a/b",
            "/busybox",
            "busybox/",
            "a//b",
            "a_-b",
            "-a",
            "host:port/x",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a b",
            "a@",
        ];
        for input in bad {
            let e = normalize(input).expect_err(input);
            assert_eq!(
                crate::error::Classify::kind(&e),
                crate::error::Kind::InvalidArgument
            );
        }
    }

    #[test]
    fn registry_detection_follows_docker() {
        // Uppercase marks a host, which may have it; a repository path may not.
        let r = normalize("Foo.io/bar").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("Foo.io", "bar")
        );
        assert_eq!(normalize("Foo/bar").unwrap().registry, "Foo");
        assert!(normalize("foo/Bar").is_err());
        let r = normalize("[::1]:5000/x/y:t").unwrap();
        assert_eq!(r.to_string(), "[::1]:5000/x/y:t");
        assert_eq!(normalize("[fe80::1]/x").unwrap().registry, "[fe80::1]");
        assert!(normalize("[::1/x").is_err());
        assert!(normalize("[zz]:5000/x").is_err());
        assert!(normalize("host:123456/x").is_err());
    }
}
