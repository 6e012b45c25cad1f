//! Interface counters of a pod's network namespace, read as the kernel shows them to a
//! thread inside it (`/proc/thread-self/net/dev`).
//!
//! `setns` changes only the calling thread, so the read runs on a short-lived std thread
//! that joins the pinned namespace, reads, and exits: no pool thread ever carries a pod's
//! namespace into unrelated work.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};

/// One interface's counters (cumulative since it was created).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx(8 fields) tx(8 fields)`.
pub fn parse(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(Interface {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace pinned at `netns`. Blocking: call it from
/// the blocking pool.
pub fn read(netns: &Path) -> Result<Vec<Interface>> {
    let ns = File::open(netns).map_err(|e| Error::io("opening", netns, e))?;
    let path = netns.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("netns-stats".into())
        .spawn(move || -> Result<String> {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("joining", &path, e.into()))?;
            let dev = PathBuf::from("/proc/thread-self/net/dev");
            std::fs::read_to_string(&dev).map_err(|e| Error::io("reading", dev, e))
        })
        .map_err(|e| Error::io("spawning a thread for", netns, e))?;
    let text = thread
        .join()
        .map_err(|_| Error::Internal("the netns stats thread panicked".into()))??;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1234567    8901    2    3    0     0          0         0   765432     4321    4    5    0     0       0          0
broken: 1 2 3
";

    #[test]
    fn counters_by_interface() {
        let all = parse(DEV);
        assert_eq!(all.len(), 2, "the headers and a short line are skipped");
        assert_eq!(all[0].name, "lo");
        let eth0 = &all[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!((eth0.rx_bytes, eth0.rx_packets), (1_234_567, 8901));
        assert_eq!((eth0.rx_errors, eth0.rx_dropped), (2, 3));
        assert_eq!((eth0.tx_bytes, eth0.tx_packets), (765_432, 4321));
        assert_eq!((eth0.tx_errors, eth0.tx_dropped), (4, 5));
    }

    #[test]
    fn reads_the_namespace_it_is_given() {
        // Our own namespace, through the same setns thread: lo is always there.
        let all = read(Path::new("/proc/self/ns/net")).unwrap();
        assert!(all.iter().any(|i| i.name == "lo"), "{all:?}");
        assert!(read(Path::new("/nonexistent/ns")).is_err());
    }
}
