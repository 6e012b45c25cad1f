//! Crash-safe records: one JSON file per object, written to a temporary file, fsynced and
//! renamed over the old one, so a reader (or a daemon restarted after SIGKILL) sees either
//! the old or the new record, never a torn one.

use crate::error::{Classify, Kind};
use serde::{Serialize, de::DeserializeOwned};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod registry;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoding {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encoding record {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Classify for StoreError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Writes `bytes` to `path` atomically (temp file in the same dir, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("renaming to", path))?;
    if let Ok(d) = fs::File::open(dir) {
        // Best effort: the rename is durable once the directory entry is.
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode {
        path: path.into(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode {
                    path: path.into(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// A directory of objects, each in `<dir>/<id>/<file>`.
#[derive(Debug, Clone)]
pub struct RecordDir {
    dir: PathBuf,
    file: &'static str,
}

impl RecordDir {
    pub fn new(dir: PathBuf, file: &'static str) -> Self {
        RecordDir { dir, file }
    }

    pub fn object_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn save<T: Serialize>(&self, id: &str, value: &T) -> Result<(), StoreError> {
        write_json(&self.object_dir(id).join(self.file), value)
    }

    /// Every readable record. A directory without a record file (a create that crashed
    /// before its first save) is returned in the second list so recovery can delete it.
    /// A record that does not decode (another version's, or damaged by hand) is renamed
    /// to `<file>.corrupt` and skipped with a warning, its directory left for a person:
    /// one bad file must not keep the daemon from starting.
    pub fn load_all<T: DeserializeOwned>(&self) -> Result<(Vec<T>, Vec<PathBuf>), StoreError> {
        let mut found = Vec::new();
        let mut orphans = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((found, orphans)),
            Err(e) => return Err(io("listing", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("listing", &self.dir))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let record = path.join(self.file);
            match read_json(&record) {
                Ok(Some(v)) => found.push(v),
                Ok(None) if record.with_extension("json.corrupt").exists() => {}
                Ok(None) => orphans.push(path),
                Err(StoreError::Decode { path: bad, source }) => {
                    let aside = bad.with_extension("json.corrupt");
                    tracing::warn!(record = %bad.display(), error = %source,
                        "skipping a record that does not decode; renamed to {}", aside.display());
                    let _ = fs::rename(&bad, &aside);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((found, orphans))
    }

    /// Deletes the object's whole directory; a missing one is not an error.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let d = self.object_dir(id);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &d)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct R {
        a: u32,
    }

    #[test]
    fn save_load_remove() {
        let t = tempfile::tempdir().unwrap();
        let d = RecordDir::new(t.path().join("objs"), "rec.json");
        assert!(d.load_all::<R>().unwrap().0.is_empty());
        d.save("x", &R { a: 1 }).unwrap();
        d.save("x", &R { a: 2 }).unwrap();
        fs::create_dir_all(t.path().join("objs/half")).unwrap();
        let (all, orphans) = d.load_all::<R>().unwrap();
        assert_eq!(all, vec![R { a: 2 }]);
        assert_eq!(orphans, vec![t.path().join("objs/half")]);
        d.remove("x").unwrap();
        d.remove("x").unwrap();
        assert!(d.load_all::<R>().unwrap().0.is_empty());
    }

    #[test]
    fn undecodable_record_is_set_aside_and_the_rest_load() {
        let t = tempfile::tempdir().unwrap();
        let d = RecordDir::new(t.path().to_path_buf(), "rec.json");
        d.save("good", &R { a: 3 }).unwrap();
        fs::create_dir_all(t.path().join("y")).unwrap();
        fs::write(t.path().join("y/rec.json"), b"{\"a\":").unwrap();
        let (all, orphans) = d.load_all::<R>().unwrap();
        assert_eq!(all, vec![R { a: 3 }]);
        assert!(
            orphans.is_empty(),
            "a corrupt record's dir is kept, not deleted"
        );
        assert!(t.path().join("y/rec.json.corrupt").exists());
        assert!(!t.path().join("y/rec.json").exists());
        let (all, orphans) = d.load_all::<R>().unwrap();
        assert_eq!(
            (all.len(), orphans.len()),
            (1, 0),
            "still kept on the next start"
        );
    }
}
