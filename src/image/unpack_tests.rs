use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use tar::{Builder, EntryType, Header};

/// Appends an entry with raw (unvalidated) path and link bytes, as a hostile layer would.
fn raw(b: &mut Builder<Vec<u8>>, path: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..path.len()].copy_from_slice(path.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut Builder<Vec<u8>>, path: &str, data: &[u8]) {
    raw(b, path, EntryType::Regular, "", data);
}

/// `<t>/outside/sentinel` and the extraction root `<t>/deep/a/b`, so `..` has somewhere
/// to escape to.
struct Fixture {
    t: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("outside")).unwrap();
        fs::write(t.path().join("outside/sentinel"), b"safe").unwrap();
        fs::create_dir_all(t.path().join("deep/a/b")).unwrap();
        Fixture { t }
    }
    fn root(&self) -> PathBuf {
        self.t.path().join("deep/a/b")
    }
    fn extract(&self, tar: Vec<u8>) -> Result<String, ImageError> {
        extract(&tar[..], &self.root(), "sha256:test")
    }
    /// Nothing outside the root changed.
    fn assert_contained(&self) {
        let mut top: Vec<_> = fs::read_dir(self.t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["deep", "outside"]);
        assert_eq!(
            fs::read_dir(self.t.path().join("outside")).unwrap().count(),
            1
        );
        assert_eq!(
            fs::read(self.t.path().join("outside/sentinel")).unwrap(),
            b"safe"
        );
        assert_eq!(fs::read_dir(self.t.path().join("deep")).unwrap().count(), 1);
        assert_eq!(
            fs::read_dir(self.t.path().join("deep/a")).unwrap().count(),
            1
        );
    }
}

#[test]
fn extracts_metadata_and_computes_diff_id() {
    let f = Fixture::new();
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(12345);
    b.append_data(&mut h, "d/", &[][..]).unwrap();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.k", &b"v"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
    ])
    .unwrap();
    let mut h = Header::new_gnu();
    h.set_mode(0o4755);
    h.set_uid(7);
    h.set_gid(8);
    h.set_mtime(999);
    h.set_size(2);
    b.append_data(&mut h, "d/suid", &b"hi"[..]).unwrap();
    raw(&mut b, "d/hard", EntryType::Link, "d/suid", b"");
    raw(&mut b, "sym", EntryType::Symlink, "/etc/passwd", b"");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_size(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    b.append_data(&mut h, "null", &[][..]).unwrap();
    raw(&mut b, "fifo", EntryType::Fifo, "", b"");
    let tar = b.into_inner().unwrap();
    let diff_id = f.extract(tar.clone()).unwrap();
    assert_eq!(diff_id, super::super::blobs::sha256_digest(&tar));

    let r = f.root();
    let d = fs::metadata(r.join("d")).unwrap();
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
        (0o750, 1000, 1001, 12345)
    );
    let s = fs::metadata(r.join("d/suid")).unwrap();
    assert_eq!(
        (s.mode() & 0o7777, s.uid(), s.gid(), s.mtime()),
        (0o4755, 7, 8, 999)
    );
    assert_eq!(
        xattr::get(r.join("d/suid"), "user.k").unwrap(),
        Some(b"v".to_vec())
    );
    let redirect = xattr::get(r.join("d/suid"), "trusted.overlay.redirect").unwrap();
    assert_eq!(redirect, None);
    assert_eq!(fs::metadata(r.join("d/hard")).unwrap().ino(), s.ino());
    assert_eq!(
        fs::read_link(r.join("sym")).unwrap(),
        Path::new("/etc/passwd")
    );
    let n = fs::metadata(r.join("null")).unwrap();
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(
        fs::symlink_metadata(r.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    f.assert_contained();
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let f = Fixture::new();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "etc/.wh.gone", b"");
    file(&mut b, "var/.wh..wh..opq", b"");
    file(&mut b, "var/new", b"x");
    file(&mut b, ".wh..wh.plnk", b"");
    file(&mut b, "x/.wh...", b"");
    // Deleted and recreated within the layer: the new directory must hide the lower one.
    file(&mut b, ".wh.re1", b"");
    file(&mut b, "re1/x", b"");
    file(&mut b, ".wh.re2", b"");
    raw(&mut b, "re2", EntryType::Directory, "", b"");
    f.extract(b.into_inner().unwrap()).unwrap();
    let r = f.root();
    let w = fs::metadata(r.join("etc/gone")).unwrap();
    assert!(w.file_type().is_char_device());
    assert_eq!(w.rdev(), 0);
    assert!(!r.join("etc/.wh.gone").exists());
    assert_eq!(
        xattr::get(r.join("var"), OPAQUE_XATTR).unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!r.join("var/.wh..wh..opq").exists());
    assert_eq!(fs::read(r.join("var/new")).unwrap(), b"x");
    assert!(r.join("x").is_dir());
    for d in ["re1", "re2"] {
        assert!(fs::symlink_metadata(r.join(d)).unwrap().is_dir());
        assert_eq!(
            xattr::get(r.join(d), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
    }
    f.assert_contained();
}

#[test]
fn dotdot_and_absolute_paths_are_confined() {
    let f = Fixture::new();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "../../../outside/sentinel", b"pwned");
    file(&mut b, "/abs", b"a");
    file(&mut b, "x/../../../../y", b"y");
    f.extract(b.into_inner().unwrap()).unwrap();
    let r = f.root();
    assert_eq!(fs::read(r.join("outside/sentinel")).unwrap(), b"pwned");
    assert_eq!(fs::read(r.join("abs")).unwrap(), b"a");
    assert_eq!(fs::read(r.join("y")).unwrap(), b"y");
    f.assert_contained();
}

#[test]
fn writes_through_symlinks_are_refused() {
    let outside = |f: &Fixture| f.t.path().join("outside").display().to_string();
    for (link, path) in [("OUT", "evil/sentinel"), ("../../../outside", "evil/new")] {
        let f = Fixture::new();
        let target = link.replace("OUT", &outside(&f));
        let mut b = Builder::new(Vec::new());
        raw(&mut b, "evil", EntryType::Symlink, &target, b"");
        file(&mut b, path, b"pwned");
        let e = f.extract(b.into_inner().unwrap()).unwrap_err();
        assert!(matches!(e, ImageError::UnsafeEntry { .. }), "{e}");
        f.assert_contained();
    }
}

#[test]
fn replacing_a_symlink_or_device_never_writes_through_it() {
    let f = Fixture::new();
    let sentinel = f.t.path().join("outside/sentinel").display().to_string();
    let mut b = Builder::new(Vec::new());
    raw(&mut b, "f", EntryType::Symlink, &sentinel, b"");
    file(&mut b, "f", b"replaced");
    raw(
        &mut b,
        "d",
        EntryType::Symlink,
        &f.t.path().join("outside").display().to_string(),
        b"",
    );
    raw(&mut b, "d", EntryType::Directory, "", b"");
    file(&mut b, "d/inner", b"in");
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_size(0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev", &[][..]).unwrap();
    file(&mut b, "dev", b"plain");
    f.extract(b.into_inner().unwrap()).unwrap();
    let r = f.root();
    assert!(fs::symlink_metadata(r.join("f")).unwrap().is_file());
    assert_eq!(fs::read(r.join("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(r.join("d")).unwrap().is_dir());
    assert!(fs::symlink_metadata(r.join("dev")).unwrap().is_file());
    f.assert_contained();
}

#[test]
fn hard_links_must_stay_inside() {
    let bad = [
        ("../../../outside/sentinel", None),
        ("/etc/passwd", None),
        ("lnk/sentinel", Some("OUT")),
        ("somedir", None),
    ];
    for (target, symlink) in bad {
        let f = Fixture::new();
        let mut b = Builder::new(Vec::new());
        if let Some(s) = symlink {
            let out = f.t.path().join("outside").display().to_string();
            raw(
                &mut b,
                "lnk",
                EntryType::Symlink,
                &s.replace("OUT", &out),
                b"",
            );
        }
        raw(&mut b, "somedir", EntryType::Directory, "", b"");
        raw(&mut b, "hl", EntryType::Link, target, b"");
        let e = f.extract(b.into_inner().unwrap()).unwrap_err();
        assert!(matches!(e, ImageError::UnsafeEntry { .. }), "{target}: {e}");
        f.assert_contained();
        assert_eq!(
            fs::metadata(f.t.path().join("outside/sentinel"))
                .unwrap()
                .nlink(),
            1
        );
    }
}

#[test]
fn gzip_layers_and_zstd_is_a_clear_error() {
    use std::io::Write;
    let f = Fixture::new();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "hello", b"world");
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let diff_id = f.extract(gz.finish().unwrap()).unwrap();
    assert_eq!(diff_id, super::super::blobs::sha256_digest(&tar));
    assert_eq!(fs::read(f.root().join("hello")).unwrap(), b"world");
    let zstd = vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let e = f.extract(zstd).unwrap_err();
    assert!(matches!(e, ImageError::UnsupportedCompression { .. }));
}

#[test]
fn failed_unpack_leaves_no_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Builder::new(Vec::new());
    file(&mut b, "a", b"a");
    let tar = b.into_inner().unwrap();
    let blob = t.path().join("blob");
    fs::write(&blob, &tar).unwrap();
    let snaps = t.path().join("snapshots");
    fs::create_dir_all(&snaps).unwrap();
    let good = super::super::blobs::sha256_digest(&tar);
    let wrong = super::super::blobs::sha256_digest(b"x");
    let usage = super::super::usage::Ledger::default();
    let mut req = UnpackRequest {
        blob: &blob,
        layer: &good,
        diff_id: &wrong,
        chain_id: &wrong,
        snapshots: &snaps,
        usage: &usage,
    };
    assert!(matches!(
        unpack_layer(&req),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 0);
    req.diff_id = &good;
    req.chain_id = &good;
    let dir = unpack_layer(&req).unwrap();
    assert_eq!(fs::read(dir.join("fs/a")).unwrap(), b"a");
    assert_eq!(unpack_layer(&req).unwrap(), dir);
    assert_eq!(fs::read_dir(&snaps).unwrap().count(), 1);
    // Counted once, as a walk of the new snapshot sees it (its usage file included).
    let figure = super::super::usage::measure(&dir);
    assert_eq!(usage.total(), figure);
    assert_eq!(super::super::usage::recorded_snapshot(&dir), Some(figure));
}
