//! Leases: what pulls in progress depend on, so garbage collection leaves it alone.
//!
//! A pull takes a lease on a blob digest or chain id *before* checking whether it exists;
//! garbage collection holds the table for its whole run. So either the collector sees the
//! lease and skips the key, or it finishes deleting first and the pull sees it missing.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lease counts by key (blob digest or chain id).
#[derive(Default)]
pub struct Leases(Mutex<HashMap<String, usize>>);

impl Leases {
    pub fn lease(&self) -> Lease<'_> {
        Lease {
            table: self,
            keys: Vec::new(),
        }
    }

    /// The table, locked: no lease can be taken while the guard lives.
    pub fn table(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // Every update is a single map operation, so a panic elsewhere cannot leave the
        // table half-updated: a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The keys one pull holds; released when dropped.
pub struct Lease<'a> {
    table: &'a Leases,
    keys: Vec<String>,
}

impl Lease<'_> {
    pub fn hold(&mut self, key: &str) {
        *self.table.table().entry(key.to_string()).or_default() += 1;
        self.keys.push(key.to_string());
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut t = self.table.table();
        for k in &self.keys {
            if let Some(n) = t.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    t.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_releases() {
        let leases = Leases::default();
        let mut a = leases.lease();
        let mut b = leases.lease();
        a.hold("x");
        b.hold("x");
        b.hold("y");
        assert_eq!(leases.table().get("x"), Some(&2));
        drop(b);
        assert_eq!(leases.table().get("x"), Some(&1));
        assert!(!leases.table().contains_key("y"));
        drop(a);
        assert!(leases.table().is_empty());
    }
}
