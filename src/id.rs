//! Object ids (64 hex chars, as containerd and CRI-O use) and id-prefix lookup, so that
//! `crictl inspect 3f2a` works like it does with the others.

use crate::error::Error;

/// A fresh random id.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom only fails when the kernel has no entropy source at all; fall back to a
    // time-and-pid mix rather than failing a pod over it.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = now_ns() as u128 ^ ((std::process::id() as u128) << 64);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    hex::encode(bytes)
}

/// Unix time in nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Resolves a full id or a unique prefix among `ids`.
pub fn resolve<'a, I>(what: &'static str, wanted: &str, ids: I) -> Result<String, Error>
where
    I: IntoIterator<Item = &'a String>,
{
    if wanted.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what} id must not be empty"
        )));
    }
    let mut found: Option<&String> = None;
    for id in ids {
        if id == wanted {
            return Ok(id.clone());
        }
        if id.starts_with(wanted) {
            if found.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "{what} id prefix {wanted:?} is ambiguous"
                )));
            }
            found = Some(id);
        }
    }
    found.cloned().ok_or_else(|| Error::NotFound {
        what,
        id: wanted.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn prefix_resolution() {
        let ids = vec!["abc1".to_string(), "abd2".to_string()];
        assert_eq!(resolve("pod", "abc", &ids).unwrap(), "abc1");
        assert_eq!(resolve("pod", "abd2", &ids).unwrap(), "abd2");
        assert!(matches!(
            resolve("pod", "ab", &ids),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve("pod", "x", &ids),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            resolve("pod", "", &ids),
            Err(Error::InvalidArgument(_))
        ));
    }
}
