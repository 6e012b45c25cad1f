//! Failure injection for the end-to-end tests, compiled into debug builds only.
//!
//! `CRIUS_FAULTS=point:count[,point:count]` in the daemon's environment makes the named
//! step fail its next `count` times (once when no count is given), as if the resource
//! behind it had failed. The tests use it to prove that RunPodSandbox and
//! CreateContainer roll back everything they acquired and that a retry then succeeds.
//! Release builds contain only the no-op.

use crate::error::Result;

/// Fails with an `Internal` error if `point` is armed; a no-op in release builds.
pub fn inject(point: &'static str) -> Result<()> {
    #[cfg(debug_assertions)]
    if armed::take(point) {
        return Err(crate::error::Error::Internal(format!(
            "injected fault at {point}"
        )));
    }
    let _ = point;
    Ok(())
}

#[cfg(debug_assertions)]
mod armed {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    static FAULTS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();

    pub fn parse(spec: &str) -> HashMap<String, u32> {
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.trim().split_once(':') {
                Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
                None => (s.trim().to_string(), 1),
            })
            .collect()
    }

    pub fn take(point: &str) -> bool {
        let faults = FAULTS
            .get_or_init(|| Mutex::new(parse(&std::env::var("CRIUS_FAULTS").unwrap_or_default())));
        let Ok(mut faults) = faults.lock() else {
            return false;
        };
        match faults.get_mut(point) {
            Some(n) if *n > 0 => {
                *n -= 1;
                tracing::warn!(point, "injecting a fault");
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    #[test]
    fn counts_default_to_once() {
        let f = parse("overlay-mount, monitor-spawn:2,,");
        assert_eq!(f.get("overlay-mount"), Some(&1));
        assert_eq!(f.get("monitor-spawn"), Some(&2));
        assert_eq!(f.len(), 2);
    }
}
