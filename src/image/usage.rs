//! Disk use of the image store, counted as content comes and goes, so `ImageFsInfo` costs
//! the same on a store of any size (kubelet calls it every few seconds, and CRI clients on
//! every new connection).
//!
//! The figure is the one a full walk of the store root gives: allocated bytes (st_blocks ×
//! 512) and inodes, lstat (symlinks not followed), hard links counted once. It is split
//! in two:
//! - content, counted once when it appears and kept in a [`Ledger`]: each blob (fstat at
//!   commit), each image record (stat after its write), each snapshot (a walk of just that
//!   snapshot while it is still private, on the unpack's blocking thread, recorded in
//!   `<snapshot>/usage` so a restart reads it back instead of walking);
//! - the store's own directories and the ingest dir's downloads in progress, whose sizes
//!   change with every entry added or removed and cannot be derived from the content:
//!   stat'ed on demand, a fixed handful of syscalls.
//!
//! Like containerd's snapshotters, which compute a committed snapshot's usage once at
//! commit and keep it in their metadata, rather than its CRI plugin's periodic re-walk.
//! Hard links between two different entries would be counted twice; the store never
//! makes them (each snapshot is extracted on its own, links stay inside a layer).

use super::ImageError;
use super::lease::Leases;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::ops::{Add, AddAssign};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The file in a snapshot's directory (beside `fs`) that holds the snapshot's figure.
pub const USAGE_FILE: &str = "usage";

/// Allocated bytes and inodes of some part of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figure {
    pub bytes: u64,
    pub inodes: u64,
}

impl Figure {
    fn of(m: &fs::Metadata) -> Figure {
        Figure {
            bytes: m.blocks() * 512,
            inodes: 1,
        }
    }

    fn saturating_sub(self, o: Figure) -> Figure {
        Figure {
            bytes: self.bytes.saturating_sub(o.bytes),
            inodes: self.inodes.saturating_sub(o.inodes),
        }
    }

    /// Fixed width, so rewriting a measured usage file never changes its own size.
    fn encode(self) -> String {
        format!("{:020} {:020}\n", self.bytes, self.inodes)
    }

    fn decode(s: &str) -> Option<Figure> {
        let mut it = s.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(bytes)), Some(Ok(inodes)), None) => Some(Figure { bytes, inodes }),
            _ => None,
        }
    }
}

impl Add for Figure {
    type Output = Figure;
    fn add(self, o: Figure) -> Figure {
        Figure {
            bytes: self.bytes + o.bytes,
            inodes: self.inodes + o.inodes,
        }
    }
}

impl AddAssign for Figure {
    fn add_assign(&mut self, o: Figure) {
        *self = *self + o;
    }
}

/// The walk: everything under `path` (itself included). Entries that vanish or cannot be
/// read are skipped, as `du` does: a figure is better than an error here.
pub fn measure(path: &Path) -> Figure {
    let mut seen = HashSet::new();
    let mut total = Figure::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            total += Figure::of(&m);
        }
        if m.is_dir() {
            stack.extend(
                fs::read_dir(&p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    total
}

/// An open file's figure (one fstat): a blob at commit.
pub fn measure_file(f: &fs::File) -> Option<Figure> {
    f.metadata().ok().map(|m| Figure::of(&m))
}

/// Measures a snapshot directory and writes the figure into its usage file, which the
/// figure includes: the file is created first with a placeholder of the final length,
/// so the walk sees it at its final size, then overwritten in place.
pub fn record_snapshot(dir: &Path) -> Result<Figure, ImageError> {
    let path = dir.join(USAGE_FILE);
    let placeholder = format!("{}\n", "-".repeat(Figure::default().encode().len() - 1));
    let mut f = fs::File::create(&path).map_err(ImageError::io("creating", &path))?;
    f.write_all(placeholder.as_bytes())
        .map_err(ImageError::io("writing", &path))?;
    let figure = measure(dir);
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(figure.encode().as_bytes()))
        .map_err(ImageError::io("writing", &path))?;
    Ok(figure)
}

/// The figure a snapshot's usage file holds; `None` if it is missing or unreadable (a
/// store from before usage files, a crash before the file reached the disk, or an
/// interrupted measurement's placeholder): such a snapshot has to be measured again.
pub fn recorded_snapshot(dir: &Path) -> Option<Figure> {
    let text = fs::read_to_string(dir.join(USAGE_FILE)).ok()?;
    Figure::decode(&text)
}

/// The store's directories themselves plus whatever the ingest dir holds (downloads in
/// progress: few, and gone once their pulls settle). Not recursive: a fixed cost.
pub fn uncounted(dirs: &[PathBuf], ingest: &Path) -> Figure {
    let mut total = Figure::default();
    let stat = |p: &Path| fs::symlink_metadata(p).ok().map(|m| Figure::of(&m));
    for d in dirs {
        total += stat(d).unwrap_or_default();
    }
    for e in fs::read_dir(ingest).into_iter().flatten().flatten() {
        total += stat(&e.path()).unwrap_or_default();
    }
    total
}

/// Fills the ledger at open from what is on disk: blobs and records are stat'ed (one
/// syscall each), snapshots read back from their usage files. Returns the snapshots whose
/// usage file is missing or unreadable: they need a walk, which the caller must not wait
/// for.
pub fn rebuild(ledger: &Ledger, blobs: &Path, records: &Path, snapshots: &Path) -> Vec<PathBuf> {
    for p in children(blobs).into_iter().chain(children(records)) {
        ledger.set(p.clone(), measure(&p));
    }
    let mut unmeasured = Vec::new();
    for p in children(snapshots) {
        let is_dir = fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        match (is_dir, recorded_snapshot(&p)) {
            (true, Some(f)) => ledger.set(p, f),
            (true, None) => unmeasured.push(p),
            (false, _) => ledger.set(p.clone(), measure(&p)),
        }
    }
    unmeasured
}

/// Measures `snapshots` on a background thread and records each figure. Each is leased
/// (by its chain id) while measured, so garbage collection cannot delete it mid-walk and
/// leave a figure behind for a snapshot that is gone.
pub fn spawn_backfill(
    ledger: Arc<Ledger>,
    leases: Arc<Leases>,
    snapshots: Vec<PathBuf>,
) -> Option<std::thread::JoinHandle<()>> {
    if snapshots.is_empty() {
        return None;
    }
    let run = move || {
        for dir in snapshots {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let mut lease = leases.lease();
            lease.hold(&format!("sha256:{name}"));
            if !dir.is_dir() {
                continue;
            }
            // Without its usage file the snapshot is walked again at the next open, but
            // it is still counted now.
            let figure = record_snapshot(&dir).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "recording snapshot usage");
                measure(&dir)
            });
            ledger.set(dir, figure);
        }
        tracing::debug!("image store usage fully counted");
    };
    let spawned = std::thread::Builder::new()
        .name("image-usage".into())
        .spawn(run);
    spawned
        .inspect_err(|e| tracing::warn!(error = %e, "image usage will miss unmeasured snapshots"))
        .ok()
}

fn children(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// The figure of every piece of content, by path, and their sum.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<Entries>);

#[derive(Debug, Default)]
struct Entries {
    by_path: HashMap<PathBuf, Figure>,
    total: Figure,
}

impl Ledger {
    /// Records `path`'s figure, replacing an older one (a record rewritten, a blob
    /// committed again by a concurrent pull).
    pub fn set(&self, path: PathBuf, figure: Figure) {
        let mut e = self.lock();
        if let Some(old) = e.by_path.insert(path, figure) {
            e.total = e.total.saturating_sub(old);
        }
        e.total += figure;
    }

    /// Drops `path`'s figure once it has been deleted.
    pub fn forget(&self, path: &Path) {
        let mut e = self.lock();
        if let Some(old) = e.by_path.remove(path) {
            e.total = e.total.saturating_sub(old);
        }
    }

    pub fn total(&self) -> Figure {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update leaves the map and the total consistent before it can panic.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_file_counts_itself_and_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("snap");
        fs::create_dir_all(dir.join("fs/bin")).unwrap();
        fs::write(dir.join("fs/bin/a"), vec![7u8; 10_000]).unwrap();
        fs::hard_link(dir.join("fs/bin/a"), dir.join("fs/b")).unwrap();
        assert_eq!(recorded_snapshot(&dir), None);
        let f = record_snapshot(&dir).unwrap();
        assert_eq!(f, measure(&dir));
        assert_eq!(f.inodes, 5, "snap, fs, bin, a (linked twice), usage");
        assert_eq!(recorded_snapshot(&dir), Some(f));
        fs::write(dir.join(USAGE_FILE), "--------\n").unwrap();
        assert_eq!(recorded_snapshot(&dir), None);
    }

    #[test]
    fn ledger_replaces_and_forgets() {
        let l = Ledger::default();
        let f = |bytes, inodes| Figure { bytes, inodes };
        l.set("a".into(), f(4096, 1));
        l.set("b".into(), f(8192, 3));
        l.set("a".into(), f(8192, 1));
        assert_eq!(l.total(), f(16384, 4));
        l.forget(Path::new("b"));
        l.forget(Path::new("missing"));
        assert_eq!(l.total(), f(8192, 1));
    }
}
