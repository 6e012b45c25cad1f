//! Content-addressed blobs: `<root>/blobs/sha256/<hex>`. A blob is written to
//! `<root>/ingest/`, hashed while written, and renamed into place only once its digest
//! and size match, so a path under `blobs/` always holds verified content. The store's
//! usage ledger learns each blob's figure as it is committed and forgets it on removal.

use super::ImageError;
use super::reference::is_valid_digest;
use super::usage::{Ledger, measure_file};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    ingest: PathBuf,
    usage: Arc<Ledger>,
}

/// What the writer must have received before it may be committed.
pub struct Expected<'a> {
    pub digest: &'a str,
    pub size: u64,
}

impl BlobStore {
    pub fn new(root: &Path, usage: Arc<Ledger>) -> Result<BlobStore, ImageError> {
        let store = BlobStore {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
            usage,
        };
        for d in [&store.blobs, &store.ingest] {
            fs::create_dir_all(d).map_err(ImageError::io("creating", d))?;
        }
        Ok(store)
    }

    /// `blobs/sha256`, holding every blob.
    pub fn dir(&self) -> &Path {
        &self.blobs
    }

    /// Where downloads in progress live.
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }

    /// Removes downloads a crash (or a cancelled pull) left behind.
    pub fn clean_ingest(&self) -> Result<(), ImageError> {
        remove_children(&self.ingest)
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        if !is_valid_digest(digest) {
            return Err(ImageError::Malformed {
                what: "descriptor".into(),
                reason: format!("unsupported digest {digest:?}"),
            });
        }
        Ok(self.blobs.join(&digest["sha256:".len()..]))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(ImageError::io("reading", p))
    }

    /// Digests of every stored blob.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let entries = fs::read_dir(&self.blobs).map_err(ImageError::io("listing", &self.blobs))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|hex| format!("sha256:{hex}"))
            .filter(|d| is_valid_digest(d))
            .collect())
    }

    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("removing", p)(e))
            }
            _ => {
                self.usage.forget(&p);
                Ok(())
            }
        }
    }

    pub fn writer(&self) -> Result<BlobWriter, ImageError> {
        let path = self.ingest.join(format!("dl-{}", random_hex()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(ImageError::io("creating", &path))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
        })
    }
}

/// A download in progress; dropping it without [`BlobWriter::commit`] deletes the file.
pub struct BlobWriter {
    file: Option<fs::File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    /// Appends a chunk, refusing to grow beyond `limit` bytes (the descriptor's size).
    pub fn write(&mut self, chunk: &[u8], expected: &Expected<'_>) -> Result<(), ImageError> {
        self.size += chunk.len() as u64;
        if self.size > expected.size {
            return Err(ImageError::TooLarge {
                digest: expected.digest.into(),
                expected: expected.size,
            });
        }
        self.hasher.update(chunk);
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.write_all(chunk)
            .map_err(ImageError::io("writing", &self.path))
    }

    /// Verifies digest and size, then moves the file to its content address.
    pub fn commit(
        mut self,
        store: &BlobStore,
        expected: &Expected<'_>,
    ) -> Result<PathBuf, ImageError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != expected.digest {
            return Err(ImageError::DigestMismatch {
                expected: expected.digest.into(),
                actual,
            });
        }
        if self.size != expected.size {
            return Err(ImageError::Malformed {
                what: format!("blob {}", expected.digest),
                reason: format!("{} bytes, descriptor says {}", self.size, expected.size),
            });
        }
        let dest = store.path(expected.digest)?;
        let mut figure = None;
        if let Some(f) = self.file.take() {
            f.sync_all()
                .map_err(ImageError::io("syncing", &self.path))?;
            // After the sync the allocation is final; the rename does not change it.
            figure = measure_file(&f);
        }
        // Another pull may have committed the same content: the rename replaces it with
        // identical bytes, and readers holding the old file keep reading it.
        fs::rename(&self.path, &dest).map_err(ImageError::io("renaming to", &dest))?;
        self.path = PathBuf::new();
        if let Some(f) = figure {
            store.usage.set(dest.clone(), f);
        }
        Ok(dest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub fn random_hex() -> String {
    let mut b = [0u8; 8];
    // A failure of the OS random source leaves zeros; callers create with O_EXCL anyway.
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

pub fn remove_children(dir: &Path) -> Result<(), ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::io("listing", dir)(e)),
    };
    for e in entries.flatten() {
        let p = e.path();
        let r = if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(ImageError::io("removing", &p))?;
    }
    Ok(())
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_and_drop_cleans() {
        let t = tempfile::tempdir().unwrap();
        let usage = Arc::new(Ledger::default());
        let s = BlobStore::new(t.path(), usage.clone()).unwrap();
        let data = b"hello";
        let d = sha256_digest(data);
        let exp = Expected {
            digest: &d,
            size: 5,
        };
        let mut w = s.writer().unwrap();
        w.write(data, &exp).unwrap();
        let p = w.commit(&s, &exp).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data);
        assert!(s.exists(&d));
        assert_eq!(s.list().unwrap(), vec![d.clone()]);
        let counted = usage.total();
        assert_eq!(counted, super::super::usage::measure(&p));

        let wrong = sha256_digest(b"other");
        let exp = Expected {
            digest: &wrong,
            size: 5,
        };
        let mut w = s.writer().unwrap();
        w.write(data, &exp).unwrap();
        assert!(matches!(
            w.commit(&s, &exp),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!s.exists(&wrong));
        let exp = Expected {
            digest: &d,
            size: 3,
        };
        let mut w = s.writer().unwrap();
        assert!(matches!(
            w.write(data, &exp),
            Err(ImageError::TooLarge { .. })
        ));
        drop(w);
        assert_eq!(fs::read_dir(t.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(usage.total(), counted, "failed commits count nothing");
        s.remove(&d).unwrap();
        assert_eq!(usage.total(), Default::default());
    }
}
