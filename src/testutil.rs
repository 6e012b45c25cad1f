//! Fixtures shared by the root tests of several modules.

use std::path::Path;
use std::process::Command;

/// Copies Debian's dynamic /bin/busybox and the libraries `ldd` lists into `rootfs`, with
/// a link per applet in `applets` and an empty /tmp: the smallest real container rootfs.
pub fn busybox_rootfs(rootfs: &Path, applets: &[&str]) {
    let copy = |src: &Path| {
        let dst = rootfs.join(src.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, &dst).unwrap();
    };
    copy(Path::new("/bin/busybox"));
    let ldd = Command::new("ldd").arg("/bin/busybox").output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) {
            copy(Path::new(lib));
        }
    }
    for applet in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
}
