//! Registry authentication: CRI credentials and `WWW-Authenticate` challenges.

use super::{ImageError, RegistryAuth};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Credentials as the registry protocol uses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A token given to the registry as is.
    Bearer(String),
    /// An OAuth2 refresh token, exchanged at the token realm (`username` may be empty).
    Refresh {
        username: String,
        token: String,
    },
}

impl Credentials {
    pub fn from_auth(auth: Option<&RegistryAuth>) -> Result<Credentials, ImageError> {
        let Some(a) = auth else {
            return Ok(Credentials::Anonymous);
        };
        if !a.registry_token.is_empty() {
            return Ok(Credentials::Bearer(a.registry_token.clone()));
        }
        if !a.identity_token.is_empty() {
            return Ok(Credentials::Refresh {
                username: a.username.clone(),
                token: a.identity_token.clone(),
            });
        }
        if !a.username.is_empty() {
            return Ok(Credentials::Basic {
                username: a.username.clone(),
                password: a.password.clone(),
            });
        }
        if !a.auth.is_empty() {
            let decoded = STANDARD
                .decode(a.auth.trim())
                .map_err(|_| ImageError::InvalidAuth("auth is not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| ImageError::InvalidAuth("auth is not UTF-8"))?;
            let (username, password) = text
                .split_once(':')
                .ok_or(ImageError::InvalidAuth("auth is not user:password"))?;
            return Ok(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    /// `Authorization` value for a `Basic` challenge, when there is a user and password.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

/// A parsed `WWW-Authenticate` header: scheme (lowercased) and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="https://auth",service="reg",scope="repository:a:pull,push"`.
/// Quoted values may contain commas and `\"` escapes.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.push((key.trim().to_string(), value.trim().to_string()));
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// The token endpoint's answer; registries use either field name.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        [self.token, self.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("Service"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:library/busybox:pull,push")
        );
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        let c = parse_challenge(r#"Bearer realm=http://a/t, error="in\"valid""#).unwrap();
        assert_eq!(c.param("realm"), Some("http://a/t"));
        assert_eq!(c.param("error"), Some("in\"valid"));
        assert_eq!(parse_challenge("Basic").unwrap().params, vec![]);
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn credentials_from_cri_auth() {
        let a = |f: fn(&mut RegistryAuth)| {
            let mut x = RegistryAuth::default();
            f(&mut x);
            Credentials::from_auth(Some(&x))
        };
        assert_eq!(
            Credentials::from_auth(None).unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(a(|_| {}).unwrap(), Credentials::Anonymous);
        let basic = Credentials::Basic {
            username: "u".into(),
            password: "p:q".into(),
        };
        assert_eq!(a(|x| x.auth = STANDARD.encode("u:p:q")).unwrap(), basic);
        assert_eq!(
            a(|x| {
                x.username = "u".into();
                x.password = "p:q".into()
            })
            .unwrap(),
            basic
        );
        assert_eq!(
            basic.basic_header().unwrap(),
            format!("Basic {}", STANDARD.encode("u:p:q"))
        );
        assert_eq!(
            a(|x| x.registry_token = "t".into()).unwrap(),
            Credentials::Bearer("t".into())
        );
        assert!(matches!(
            a(|x| x.auth = "!!".into()),
            Err(ImageError::InvalidAuth(_))
        ));
        assert!(matches!(
            a(|x| x.auth = STANDARD.encode("nocolon")),
            Err(ImageError::InvalidAuth(_))
        ));
    }
}
