//! `usage_nano_cores`: the CPU rate between a container's (or pod's) previous sample and
//! this one. Only the previous cumulative sample is kept per object, and objects that are
//! gone are dropped at the next list call.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Clone, Copy)]
struct Sample {
    usage_ns: u64,
    at_ns: i64,
}

#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, Sample>>,
}

/// Nanoseconds of CPU per second of wall time between two samples; `None` when time did
/// not advance or the counter went back (a new cgroup under the same id).
fn rate(prev: Sample, now: Sample) -> Option<u64> {
    let wall = now.at_ns.checked_sub(prev.at_ns).filter(|w| *w > 0)?;
    let used = now.usage_ns.checked_sub(prev.usage_ns)?;
    Some((used as u128 * 1_000_000_000 / wall as u128) as u64)
}

impl CpuRates {
    /// Records `usage_ns` at `at_ns` for `id` and returns the rate since its previous
    /// sample (none for the first; like containerd, kubelet then sees no rate yet).
    pub fn sample(&self, id: &str, usage_ns: u64, at_ns: i64) -> Option<u64> {
        let now = Sample { usage_ns, at_ns };
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let prev = last.insert(id.to_string(), now)?;
        match rate(prev, now) {
            Some(r) => Some(r),
            None if now.at_ns <= prev.at_ns => {
                // Two calls in the same instant: keep the older sample to rate against.
                last.insert(id.to_string(), prev);
                None
            }
            None => None,
        }
    }

    /// Forgets every object not in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.retain(|id, _| live.contains(id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_cpu_time_over_wall_time() {
        let r = CpuRates::default();
        assert_eq!(r.sample("c", 1_000_000_000, 10_000_000_000), None, "first");
        // 0.5 s of CPU in 2 s of wall time: a quarter of a core.
        let q = r.sample("c", 1_500_000_000, 12_000_000_000);
        assert_eq!(q, Some(250_000_000));
        // Two cores fully busy for 1 s.
        let two = r.sample("c", 3_500_000_000, 13_000_000_000);
        assert_eq!(two, Some(2_000_000_000));
    }

    #[test]
    fn a_counter_going_back_or_no_time_passing_gives_no_rate() {
        let r = CpuRates::default();
        r.sample("c", 5_000, 1_000);
        assert_eq!(r.sample("c", 6_000, 1_000), None, "same instant");
        assert_eq!(
            r.sample("c", 7_000, 2_000),
            Some(2_000_000_000),
            "vs the kept"
        );
        assert_eq!(r.sample("c", 10, 3_000), None, "counter reset");
        assert_eq!(r.sample("c", 1_010, 4_000), Some(1_000_000_000), "rebased");
    }

    #[test]
    fn gone_objects_are_dropped() {
        let r = CpuRates::default();
        r.sample("a", 1, 1);
        r.sample("b", 1, 1);
        r.retain(&HashSet::from(["b".to_string()]));
        assert_eq!(r.len(), 1);
        assert_eq!(r.sample("a", 2, 2), None, "a starts over");
    }
}
