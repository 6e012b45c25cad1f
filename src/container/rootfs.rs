//! The container root filesystem: an overlay of the image's layer snapshots (read-only,
//! shared) under a per-container writable upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, Result};

pub struct Overlay<'a> {
    /// Snapshot dirs, topmost first (overlay's lowerdir order).
    pub lower: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
    /// An empty dir used as the only lower layer of an image without layers.
    pub empty: &'a Path,
    pub target: &'a Path,
    /// For a pod with its own user namespace: the layers are id-mapped through it.
    pub idmap: Option<IdMapped<'a>>,
}

/// How the layers of a container in a pod user namespace are shown: through the pod's
/// user namespace (overlayfs itself cannot be id-mapped, measured EINVAL, so each layer
/// is), with upper and work owned by the namespace's root.
#[derive(Clone, Copy)]
pub struct IdMapped<'a> {
    pub userns: &'a Path,
    /// Host uid and gid of the namespace's root.
    pub root_uid: u32,
    pub root_gid: u32,
    /// Where the id-mapped layers are attached while the overlay is mounted; emptied
    /// and removed after, since overlayfs keeps its own copies.
    pub scratch: &'a Path,
}

/// Mounts the overlay at `target`, creating the upper, work and target dirs.
pub fn mount_overlay(o: &Overlay<'_>) -> Result<()> {
    for d in [o.upper, o.work, o.target] {
        std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let empty = [o.empty.to_path_buf()];
    let layers = if o.lower.is_empty() {
        std::fs::create_dir_all(o.empty).map_err(|e| Error::io("creating", o.empty, e))?;
        &empty[..]
    } else {
        o.lower
    };
    let Some(idmap) = o.idmap else {
        return mount_layers(o, layers);
    };
    let result = map_layers(o, layers, &idmap).and_then(|mapped| mount_layers(o, &mapped));
    let cleanup = clear_scratch(idmap.scratch);
    if result.is_err() {
        let _ = unmount(o.target);
    }
    result.and(cleanup)
}

/// Attaches an id-mapped copy of each layer under `scratch/<i>` and gives upper and work
/// to the namespace's root. Returns the copies, in the same order.
fn map_layers(o: &Overlay<'_>, layers: &[PathBuf], idmap: &IdMapped) -> Result<Vec<PathBuf>> {
    let userns =
        std::fs::File::open(idmap.userns).map_err(|e| Error::io("opening", idmap.userns, e))?;
    let (uid, gid) = (
        Some(nix::unistd::Uid::from_raw(idmap.root_uid)),
        Some(nix::unistd::Gid::from_raw(idmap.root_gid)),
    );
    for d in [o.upper, o.work] {
        nix::unistd::chown(d, uid, gid).map_err(|e| Error::io("chown", d, e.into()))?;
    }
    let mut mapped = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let dir = idmap.scratch.join(i.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        crate::runtime::mount_idmapped(layer, &dir, &userns)?;
        mapped.push(dir);
    }
    Ok(mapped)
}

/// Unmounts and removes every `scratch/<i>`, then `scratch`; idempotent.
pub fn clear_scratch(scratch: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(scratch) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", scratch, e)),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        unmount(&dir)?;
        std::fs::remove_dir(&dir).map_err(|e| Error::io("removing", &dir, e))?;
    }
    std::fs::remove_dir(scratch).map_err(|e| Error::io("removing", scratch, e))
}

fn mount_layers(o: &Overlay<'_>, layers: &[PathBuf]) -> Result<()> {
    let parts: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
    let lower = parts.join(":");
    for p in std::iter::once(o.upper).chain([o.work]) {
        if p.to_string_lossy().contains([',', ':']) {
            return Err(Error::InvalidArgument(format!(
                "overlay path {p:?} contains ',' or ':'"
            )));
        }
    }
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        o.upper.display(),
        o.work.display()
    );
    // The kernel takes mount data up to one page; beyond that overlay fails with EINVAL
    // and a long layer list needs the short-path trick (a later issue: many-layer images).
    mount(
        Some("overlay"),
        o.target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::io("mounting overlay on", o.target, e.into()))
}

/// Unmounts `target` if it is mounted; idempotent.
pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point; ENOENT: already gone.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmounting", target, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    /// Layers id-mapped through a user namespace mapped 0 → 1000: the merged tree shows
    /// the root-owned layer file as host uid 1000, the namespace's root can write, and
    /// no scratch mount stays behind (overlayfs holds its own copies of the layers).
    #[test]
    fn idmapped_layers_make_the_rootfs_the_namespace_roots() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let p = |s: &str| tmp.path().join(s);
        std::fs::create_dir_all(p("layer")).unwrap();
        std::fs::write(p("layer/f"), "x").unwrap();
        let mut holder = Command::new("unshare")
            .args(["-U", "sleep", "30"])
            .spawn()
            .unwrap();
        let userns = PathBuf::from(format!("/proc/{}/ns/user", holder.id()));
        let own = std::fs::metadata("/proc/self/ns/user").unwrap().ino();
        while std::fs::metadata(&userns).unwrap().ino() == own {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{}/{file}", holder.id());
            std::fs::write(path, "0 1000 100000\n").unwrap();
        }
        let (lower, scratch) = ([p("layer")], p("scratch"));
        let (upper, work, empty, target) = (p("upper"), p("work"), p("empty"), p("rootfs"));
        let mounted = mount_overlay(&Overlay {
            lower: &lower,
            upper: &upper,
            work: &work,
            empty: &empty,
            target: &target,
            idmap: Some(IdMapped {
                userns: &userns,
                root_uid: 1000,
                root_gid: 1000,
                scratch: &scratch,
            }),
        });
        let write = Command::new("nsenter")
            .arg(format!("--user={}", userns.display()))
            .args(["sh", "-c", "echo y > \"$0\"/new && stat -c %u \"$0\"/f"])
            .arg(&target)
            .output();
        let seen = std::fs::metadata(target.join("f")).map(|m| m.uid());
        let _ = unmount(&target);
        let _ = (holder.kill(), holder.wait());
        mounted.unwrap();
        let write = write.unwrap();
        assert!(
            write.status.success(),
            "{}",
            String::from_utf8_lossy(&write.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&write.stdout).trim(), "0");
        assert_eq!(seen.unwrap(), 1000);
        assert_eq!(std::fs::metadata(upper.join("new")).unwrap().uid(), 1000);
        assert!(!scratch.exists(), "scratch left");
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !info.contains(&*tmp.path().to_string_lossy()),
            "mounts left"
        );
    }
}
