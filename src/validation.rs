//! Checks of request strings that end up in file names, paths, hostnames and files the
//! containers read. One set of rules, used by pod and container validation alike.

use std::path::{Component, Path};

use crate::error::{Classify, Kind};

/// Names, namespaces and uids longer than a DNS subdomain are refused.
pub const MAX_NAME_LEN: usize = 253;
/// Linux's HOST_NAME_MAX.
pub const MAX_HOSTNAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: &'static str,
    },
}

impl InputError {
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: &'static str,
    ) -> Self {
        InputError::Invalid {
            field: field.into(),
            value: value.into(),
            reason,
        }
    }
}

impl Classify for InputError {
    fn kind(&self) -> Kind {
        Kind::InvalidArgument
    }
}

/// Names, namespaces and uids become parts of file and directory names.
pub fn check_name(field: &'static str, value: &str) -> Result<(), InputError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_NAME_LEN {
        "must be at most 253 bytes"
    } else if value.contains('/') {
        "must not contain '/'"
    } else if value.contains("..") {
        "must not contain '..'"
    } else if value.contains('\0') {
        "must not contain NUL bytes"
    } else {
        return Ok(());
    };
    Err(InputError::invalid(field, value, reason))
}

/// A non-empty absolute path without `..` components or NUL bytes.
pub fn check_abs_path(field: &'static str, value: &str) -> Result<(), InputError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.contains('\0') {
        "must not contain NUL bytes"
    } else if !value.starts_with('/') {
        "must be an absolute path"
    } else if has_parent(Path::new(value)) {
        "must not contain '..' components"
    } else {
        return Ok(());
    };
    Err(InputError::invalid(field, value, reason))
}

pub fn no_nul(field: &'static str, value: &str) -> Result<(), InputError> {
    if value.contains('\0') {
        return Err(InputError::invalid(
            field,
            value,
            "must not contain NUL bytes",
        ));
    }
    Ok(())
}

pub fn has_parent(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

/// What the kernel and DNS both accept: dot-separated RFC 1123 labels (letters, digits,
/// '-' not at either end) of 1 to 63 bytes, at most 64 bytes in all (HOST_NAME_MAX).
pub fn check_hostname(hostname: &str) -> Result<(), InputError> {
    match hostname_problem(hostname) {
        None => Ok(()),
        Some(reason) => Err(InputError::invalid("hostname", hostname, reason)),
    }
}

fn hostname_problem(hostname: &str) -> Option<&'static str> {
    if hostname.is_empty() {
        return Some("must not be empty");
    }
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Some("must be at most 64 characters");
    }
    for label in hostname.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some("each dot-separated label must have 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some("may only contain letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("labels must not start or end with '-'");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["a", "pod-1", "web.default", "A1", &"x".repeat(63)] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a b",
            "a\nb",
            ".a",
            "a.",
            &"x".repeat(64),
            &long,
        ] {
            let err = check_hostname(bad).expect_err(bad);
            assert_eq!(err.kind(), Kind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn names_cannot_escape_a_directory() {
        assert!(check_name("pod name", "web-1").is_ok());
        for bad in ["", "a/b", "..", "a\0b", &"n".repeat(254)] {
            assert!(check_name("pod name", bad).is_err(), "{bad:?}");
        }
        let msg = check_name("pod name", "a/b").unwrap_err().to_string();
        assert_eq!(msg, "invalid pod name \"a/b\": must not contain '/'");
    }

    #[test]
    fn absolute_paths_only() {
        assert!(check_abs_path("path", "/a/b").is_ok());
        for bad in ["", "a/b", "/a/../b", "/a\0"] {
            assert!(check_abs_path("path", bad).is_err(), "{bad:?}");
        }
    }
}
