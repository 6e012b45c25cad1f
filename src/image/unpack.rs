//! Layer extraction into snapshots, with OCI whiteouts turned into overlay whiteouts.
//!
//! A layer comes from a registry and is hostile until proven otherwise. Every entry path is
//! cleaned lexically (`..` cannot climb above the snapshot, a leading `/` is dropped), and
//! every parent directory is checked with `lstat`: a symlink (or any non-directory) on the
//! way is refused, so nothing an earlier entry created can redirect a later write. Files
//! are created with `O_CREAT|O_EXCL|O_NOFOLLOW` after removing whatever was there, so no
//! write goes through a symlink or a device node. Each layer is extracted into a fresh,
//! private directory, so no other writer can race these checks.

use super::ImageError;
use super::blobs::random_hex;
use super::usage::{Ledger, record_snapshot};
use filetime::FileTime;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// One layer to turn into the snapshot `<snapshots>/<chain id hex>/fs`.
pub struct UnpackRequest<'a> {
    pub blob: &'a Path,
    /// The layer's blob digest, for error messages.
    pub layer: &'a str,
    /// The config's diff id: sha256 of the uncompressed tar, checked before committing.
    pub diff_id: &'a str,
    pub chain_id: &'a str,
    pub snapshots: &'a Path,
    /// Learns the new snapshot's figure when it is renamed into place.
    pub usage: &'a Ledger,
}

pub fn snapshot_dir(snapshots: &Path, chain_id: &str) -> PathBuf {
    let hex = chain_id.strip_prefix("sha256:").unwrap_or(chain_id);
    snapshots.join(hex)
}

/// Extracts the layer unless its snapshot exists. The snapshot appears whole or not at all:
/// it is built in `.tmp-*` and renamed; a concurrent pull that wins the rename is fine.
/// It is measured while still private, so its usage file is in place from the start.
pub fn unpack_layer(req: &UnpackRequest<'_>) -> Result<PathBuf, ImageError> {
    let target = snapshot_dir(req.snapshots, req.chain_id);
    if target.join("fs").is_dir() {
        return Ok(target);
    }
    let tmp = req.snapshots.join(format!(".tmp-{}", random_hex()));
    let result = build_snapshot(req, &tmp).and_then(|()| record_snapshot(&tmp));
    let figure = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    match fs::rename(&tmp, &target) {
        Ok(()) => {
            req.usage.set(target.clone(), figure);
            Ok(target)
        }
        Err(_) if target.join("fs").is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(ImageError::io("renaming to", &target)(e))
        }
    }
}

fn build_snapshot(req: &UnpackRequest<'_>, tmp: &Path) -> Result<(), ImageError> {
    let fs_dir = tmp.join("fs");
    fs::create_dir_all(&fs_dir).map_err(ImageError::io("creating", &fs_dir))?;
    // The image's root directory: not subject to the daemon's umask.
    fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
        .map_err(ImageError::io("chmod", &fs_dir))?;
    let file = fs::File::open(req.blob).map_err(ImageError::io("opening", req.blob))?;
    let diff_id = extract(file, &fs_dir, req.layer)?;
    if diff_id != req.diff_id {
        return Err(ImageError::DigestMismatch {
            expected: req.diff_id.into(),
            actual: diff_id,
        });
    }
    Ok(())
}

/// Decompresses (by magic number), extracts into `dest`, and returns the diff id.
pub fn extract(compressed: impl Read, dest: &Path, layer: &str) -> Result<String, ImageError> {
    let mut input = BufReader::new(compressed);
    let head = input
        .fill_buf()
        .map_err(ImageError::io("reading layer", layer))?;
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(ImageError::UnsupportedCompression {
            layer: layer.into(),
            compression: "zstd",
        });
    } else {
        Box::new(input)
    };
    let mut hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
    };
    extract_tar(&mut hashing, dest, layer)?;
    // The diff id covers the whole stream, including the tar trailer the parser skipped.
    io::copy(&mut hashing, &mut io::sink()).map_err(ImageError::io("reading layer", layer))?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What one extraction carries from entry to entry.
struct Extraction<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directory mtimes, applied last because creating children changes them.
    dir_times: Vec<(PathBuf, FileTime)>,
}

fn extract_tar(r: impl Read, root: &Path, layer: &str) -> Result<(), ImageError> {
    let read_err = ImageError::io("reading layer", layer);
    let mut archive = tar::Archive::new(r);
    let mut x = Extraction {
        root,
        layer,
        dir_times: Vec::new(),
    };
    let entries = archive.entries().map_err(read_err)?;
    for entry in entries {
        let mut entry = entry.map_err(ImageError::io("reading layer", layer))?;
        x.apply(&mut entry)?;
    }
    for (dir, mtime) in x.dir_times.iter().rev() {
        filetime::set_symlink_file_times(dir, *mtime, *mtime)
            .map_err(ImageError::io("setting times", dir))?;
    }
    Ok(())
}

/// `path` made relative and free of `.`/`..`; `None` for the root itself.
pub fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl Extraction<'_> {
    fn unsafe_entry(&self, entry: &Path, reason: &'static str) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.into(),
            entry: entry.into(),
            reason,
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry
            .path()
            .map_err(ImageError::io("reading layer", self.layer))?
            .into_owned();
        let Some(rel) = clean_path(&raw) else {
            return Ok(()); // "./": the snapshot root keeps its own metadata
        };
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_WHITEOUT {
            return set_opaque(&self.ensure_dir(parent_rel, &raw)?);
        }
        if name.starts_with(".wh..wh.") {
            return Ok(()); // aufs metadata (hard link dirs): meaningless for overlay
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let dir = self.ensure_dir(parent_rel, &raw)?;
            return self.whiteout(&dir.join(hidden), hidden);
        }
        let parent = self.ensure_dir(parent_rel, &raw)?;
        let target = parent.join(rel.file_name().unwrap_or_default());
        self.create(entry, &target, &raw)
    }

    /// An overlay whiteout: a 0:0 character device where the lower file was.
    fn whiteout(&self, target: &Path, hidden: &str) -> Result<(), ImageError> {
        // ".wh.." or ".wh..." would name the directory itself or its parent.
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Ok(());
        }
        remove_existing(target)?;
        mknod(target, nix::sys::stat::SFlag::S_IFCHR, 0, 0)
    }

    /// Walks `rel` from the root, creating missing directories and refusing anything that
    /// is not a real directory (a symlink could point anywhere).
    fn ensure_dir(&self, rel: &Path, raw: &Path) -> Result<PathBuf, ImageError> {
        let mut cur = self.root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if is_whiteout(&m) => {
                    remove_existing(&cur)?;
                    create_dir(&cur, 0o755)?;
                    set_opaque(&cur)?;
                }
                Ok(_) => return Err(self.unsafe_entry(raw, "path goes through a non-directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(&cur, 0o755)?,
                Err(e) => return Err(ImageError::io("inspecting", &cur)(e)),
            }
        }
        Ok(cur)
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        raw: &Path,
    ) -> Result<(), ImageError> {
        use tar::EntryType as T;
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let dev = (
            h.device_major().ok().flatten(),
            h.device_minor().ok().flatten(),
        );
        match kind {
            T::Directory => {
                let existing = fs::symlink_metadata(target).ok();
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    remove_existing(target)?;
                    create_dir(target, 0o755)?;
                }
                // Deleted and recreated in one layer: the lower directory stays hidden.
                if existing.as_ref().is_some_and(is_whiteout) {
                    set_opaque(target)?;
                }
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_existing(target)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(target)
                    .map_err(ImageError::io("creating", target))?;
                io::copy(entry, &mut f).map_err(ImageError::io("writing", target))?;
            }
            T::Symlink => {
                let link = self.link_name(entry, raw)?;
                remove_existing(target)?;
                std::os::unix::fs::symlink(&link, target)
                    .map_err(ImageError::io("creating symlink", target))?;
            }
            T::Link => return self.hard_link(entry, target, raw),
            T::Char | T::Block | T::Fifo => {
                use nix::sys::stat::SFlag;
                let flag = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                remove_existing(target)?;
                mknod(target, flag, dev.0.unwrap_or(0), dev.1.unwrap_or(0))?;
            }
            // Pax/GNU headers are folded into entries by the parser; skip anything else.
            _ => return Ok(()),
        }
        self.set_metadata(entry, target, mode)
    }

    fn link_name<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &Path,
    ) -> Result<PathBuf, ImageError> {
        match entry.link_name() {
            Ok(Some(l)) => Ok(l.into_owned()),
            Ok(None) => Err(self.unsafe_entry(raw, "link without a target")),
            Err(e) => Err(ImageError::io("reading layer", self.layer)(e)),
        }
    }

    /// Hard links may only point at something already extracted into this snapshot.
    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        target: &Path,
        raw: &Path,
    ) -> Result<(), ImageError> {
        let link = self.link_name(entry, raw)?;
        let Some(src_rel) = clean_path(&link) else {
            return Err(self.unsafe_entry(raw, "hard link to the root"));
        };
        let parent = src_rel.parent().unwrap_or(Path::new(""));
        let src = self
            .existing_dir(parent, raw)?
            .join(src_rel.file_name().unwrap_or_default());
        match fs::symlink_metadata(&src) {
            Ok(m) if !m.is_dir() => {}
            Ok(_) => return Err(self.unsafe_entry(raw, "hard link to a directory")),
            Err(_) => return Err(self.unsafe_entry(raw, "hard link to a missing file")),
        }
        if src == target {
            return Ok(());
        }
        remove_existing(target)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink source is linked, not followed.
        fs::hard_link(&src, target).map_err(ImageError::io("linking", target))
    }

    /// Like `ensure_dir` but creates nothing: the path must already be real directories.
    fn existing_dir(&self, rel: &Path, raw: &Path) -> Result<PathBuf, ImageError> {
        let mut cur = self.root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir()) {
                return Err(self.unsafe_entry(raw, "hard link through a non-directory"));
            }
        }
        Ok(cur)
    }

    /// Owner, then mode (chown clears set-id bits), then xattrs (chown clears file
    /// capabilities), then times.
    fn set_metadata<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        mode: u32,
    ) -> Result<(), ImageError> {
        let h = entry.header();
        let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
        let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok());
        let mtime = FileTime::from_unix_time(h.mtime().unwrap_or(0) as i64, 0);
        let is_symlink = h.entry_type() == tar::EntryType::Symlink;
        let is_dir = h.entry_type() == tar::EntryType::Directory;
        std::os::unix::fs::lchown(target, uid, gid).map_err(ImageError::io("chown", target))?;
        if !is_symlink {
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
                .map_err(ImageError::io("chmod", target))?;
        }
        for (name, value) in pax_xattrs(entry, self.layer)? {
            set_xattr(target, &name, &value)?;
        }
        if is_dir {
            self.dir_times.push((target.to_path_buf(), mtime));
        } else {
            filetime::set_symlink_file_times(target, mtime, mtime)
                .map_err(ImageError::io("setting times", target))?;
        }
        Ok(())
    }
}

fn pax_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    layer: &str,
) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let Some(exts) = entry
        .pax_extensions()
        .map_err(ImageError::io("reading layer", layer))?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for ext in exts.flatten() {
        // Overlay's own xattrs (opaque, redirect, metacopy) steer the kernel's lookups:
        // only whiteout conversion may set them, never the layer.
        if let Ok(key) = ext.key()
            && let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
            && !name.starts_with("trusted.overlay.")
        {
            out.push((name.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

fn create_dir(path: &Path, mode: u32) -> Result<(), ImageError> {
    fs::create_dir(path).map_err(ImageError::io("creating", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", path))
}

fn set_opaque(dir: &Path) -> Result<(), ImageError> {
    xattr::set(dir, OPAQUE_XATTR, b"y").map_err(ImageError::io("setting opaque xattr on", dir))
}

/// Layer xattrs the snapshot's filesystem cannot hold (no support, or a namespace that
/// refuses this kind of file, like `user.*` on symlinks) are dropped, as containerd does.
fn set_xattr(target: &Path, name: &str, value: &[u8]) -> Result<(), ImageError> {
    match xattr::set(target, name, value) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) => {
            tracing::warn!(path = %target.display(), xattr = name, error = %e, "dropping layer xattr");
            Ok(())
        }
        r => r.map_err(ImageError::io("setting xattr on", target)),
    }
}

/// Deletes whatever is at `target` (never following a symlink); absent is fine.
fn remove_existing(target: &Path) -> Result<(), ImageError> {
    let r = match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(target),
        Ok(_) => fs::remove_file(target),
    };
    r.map_err(ImageError::io("removing", target))
}

fn mknod(
    target: &Path,
    kind: nix::sys::stat::SFlag,
    major: u32,
    minor: u32,
) -> Result<(), ImageError> {
    let dev = nix::sys::stat::makedev(major.into(), minor.into());
    nix::sys::stat::mknod(
        target,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev,
    )
    .map_err(|e| ImageError::io("mknod", target)(io::Error::from(e)))
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
