//! Resolving the container process's uid, gid and supplementary groups from the image's
//! `User` and the CRI security context, using the image's own /etc/passwd and /etc/group.
//!
//! The rootfs is untrusted image content: the files are opened only if `etc` is a real
//! directory and the file itself is a regular file (no symlinks followed, so a link to the
//! host's /etc/passwd is treated as absent).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1::LinuxContainerSecurityContext;

use super::error::SpecError;

/// Larger passwd/group files are truncated; real ones are a few KiB.
const MAX_DB_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the groups listing the user, then the CRI
    /// supplemental groups, without duplicates.
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

impl ResolvedUser {
    /// ContainerStatus `user`: the identity the process actually runs with.
    pub fn to_cri(&self) -> k8s_cri::v1::ContainerUser {
        k8s_cri::v1::ContainerUser {
            linux: Some(k8s_cri::v1::LinuxContainerUser {
                uid: self.uid.into(),
                gid: self.gid.into(),
                supplemental_groups: self.additional_gids.iter().map(|&g| g.into()).collect(),
            }),
        }
    }
}

/// Resolves the user as containerd does: a CRI `run_as_username` wins over `run_as_user`,
/// either wins over the image user; `run_as_group` replaces the group part.
pub fn resolve_user(
    rootfs: &Path,
    image_user: &str,
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<ResolvedUser, SpecError> {
    let (user_part, group_part) = requested(image_user, sc)?;
    let passwd = parse_passwd(&read_db(rootfs, "passwd")?);
    let groups = parse_group(&read_db(rootfs, "group")?);

    let (uid, username, passwd_gid) = match user_part.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd.iter().find(|e| e.uid == uid);
            (uid, entry.map(|e| e.name.clone()), entry.map(|e| e.gid))
        }
        Err(_) if user_part.is_empty() => {
            let entry = passwd.iter().find(|e| e.uid == 0);
            (0, entry.map(|e| e.name.clone()), entry.map(|e| e.gid))
        }
        Err(_) => {
            let entry = passwd
                .iter()
                .find(|e| e.name == user_part)
                .ok_or_else(|| SpecError::UserNotFound(user_part.clone()))?;
            (entry.uid, Some(entry.name.clone()), Some(entry.gid))
        }
    };
    let gid = match group_part {
        None => passwd_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or(SpecError::GroupNotFound(g))?,
        },
    };

    let mut additional_gids = vec![gid];
    // Strict: only the primary and the CRI groups, none that the image's /etc/group adds.
    let strict = sc.is_some_and(|s| {
        s.supplemental_groups_policy == k8s_cri::v1::SupplementalGroupsPolicy::Strict as i32
    });
    let listed = groups.iter().filter(|g| {
        !strict
            && username
                .as_ref()
                .is_some_and(|name| g.members.iter().any(|m| m == name))
    });
    let supplemental = sc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]);
    let supplemental = supplemental
        .iter()
        .map(|&g| id("supplemental_groups", g))
        .collect::<Result<Vec<_>, _>>()?;
    for g in listed.map(|g| g.gid).chain(supplemental) {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The (user, optional group) strings the request asks for.
fn requested(
    image_user: &str,
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<(String, Option<String>), SpecError> {
    let (image_name, image_group) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string()).filter(|g| !g.is_empty())),
        None => (image_user.to_string(), None),
    };
    let cri_user = match sc {
        Some(s) if !s.run_as_username.is_empty() => Some(s.run_as_username.clone()),
        Some(s) => match &s.run_as_user {
            Some(v) => Some(id("run_as_user", v.value)?.to_string()),
            None => None,
        },
        None => None,
    };
    let cri_group = match sc.and_then(|s| s.run_as_group.as_ref()) {
        Some(v) => Some(id("run_as_group", v.value)?.to_string()),
        None => None,
    };
    Ok(match (cri_user, cri_group) {
        // A CRI user drops the image's group: the group then comes from passwd.
        (Some(user), group) => (user, group),
        // Refused earlier (`validate`): a group needs a CRI user.
        (None, Some(group)) => (image_name, Some(group)),
        (None, None) => (image_name, image_group),
    })
}

fn id(field: &'static str, value: i64) -> Result<u32, SpecError> {
    u32::try_from(value)
        .map_err(|_| SpecError::invalid(field, value.to_string(), "must be between 0 and 2^32-1"))
}

/// The contents of `<rootfs>/etc/<name>`, or empty when it is absent or not a regular
/// file inside the rootfs.
fn read_db(rootfs: &Path, name: &str) -> Result<String, SpecError> {
    let etc = rootfs.join("etc");
    match std::fs::symlink_metadata(&etc) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(String::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => return Err(SpecError::Io { path: etc, source }),
    }
    let path = etc.join(name);
    let Some(file) = open_regular(&path)? else {
        return Ok(String::new());
    };
    let mut bytes = Vec::new();
    file.take(MAX_DB_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|source| SpecError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn open_regular(path: &PathBuf) -> Result<Option<File>, SpecError> {
    // O_NOFOLLOW refuses a symlink; O_NONBLOCK keeps a FIFO from blocking the open.
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(source) => {
            return Err(SpecError::Io {
                path: path.clone(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| SpecError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(meta.is_file().then_some(file))
}

/// `name:password:uid:gid:gecos:home:shell`; malformed lines are skipped like libc does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// `name:password:gid:member,member`.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            let members = f.get(3).copied().unwrap_or("");
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{Int64Value, SupplementalGroupsPolicy};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1::/:/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        broken line\n\
        nogroup:x:2000:3000::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:app\n\
        app:x:1000:\n\
        video:x:44:app,other\n\
        audio:x:29:other\n\
        staff:x:50:\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir etc");
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).expect("passwd");
        std::fs::write(dir.path().join("etc/group"), GROUP).expect("group");
        dir
    }

    fn sc(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> LinuxContainerSecurityContext {
        let mut s = LinuxContainerSecurityContext::default();
        f(&mut s);
        s
    }

    fn user(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
        }
    }

    #[test]
    fn image_user_forms() {
        let root = rootfs();
        let cases: &[(&str, ResolvedUser)] = &[
            ("", user(0, 0, &[0])),
            ("root", user(0, 0, &[0])),
            ("app", user(1000, 1000, &[1000, 1, 44])),
            ("1000", user(1000, 1000, &[1000, 1, 44])),
            ("1000:50", user(1000, 50, &[50, 1, 44])),
            ("app:staff", user(1000, 50, &[50, 1, 44])),
            ("app:", user(1000, 1000, &[1000, 1, 44])),
            ("4242", user(4242, 0, &[0])),
            ("4242:4242", user(4242, 4242, &[4242])),
            ("nogroup", user(2000, 3000, &[3000])),
        ];
        for (image_user, want) in cases {
            let got = resolve_user(root.path(), image_user, None).expect(image_user);
            assert_eq!(&got, want, "image user {image_user:?}");
        }
    }

    #[test]
    fn security_context_overrides_image_user() {
        let root = rootfs();
        let uid = |v| Some(Int64Value { value: v });
        let cases = [
            (
                sc(|s| s.run_as_user = uid(1000)),
                user(1000, 1000, &[1000, 1, 44]),
            ),
            (
                sc(|s| s.run_as_username = "daemon".into()),
                user(1, 1, &[1]),
            ),
            (
                sc(|s| {
                    s.run_as_user = uid(0);
                    s.run_as_username = "app".into();
                }),
                user(1000, 1000, &[1000, 1, 44]),
            ),
            (
                sc(|s| {
                    s.run_as_user = uid(1000);
                    s.run_as_group = uid(29);
                }),
                user(1000, 29, &[29, 1, 44]),
            ),
            (sc(|s| s.run_as_group = uid(29)), user(1, 29, &[29])),
            (
                sc(|s| s.supplemental_groups = vec![44, 7, 7]),
                user(1, 50, &[50, 44, 7]),
            ),
            (
                sc(|s| {
                    s.run_as_user = uid(1000);
                    s.supplemental_groups = vec![7];
                    s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
                }),
                user(1000, 1000, &[1000, 7]),
            ),
        ];
        for (ctx, want) in cases {
            let got = resolve_user(root.path(), "daemon:staff", Some(&ctx)).expect("resolve");
            assert_eq!(got, want, "security context {ctx:?}");
        }
    }

    #[test]
    fn unknown_names_and_bad_ids_are_rejected() {
        let root = rootfs();
        let err = resolve_user(root.path(), "nobody", None).unwrap_err();
        assert_eq!(err.to_string(), "unable to find user nobody");
        let err = resolve_user(root.path(), "app:wheel", None).unwrap_err();
        assert_eq!(err.to_string(), "unable to find group wheel");
        let neg = sc(|s| s.run_as_user = Some(Int64Value { value: -1 }));
        assert!(matches!(
            resolve_user(root.path(), "", Some(&neg)),
            Err(SpecError::Input(
                crate::validation::InputError::Invalid { .. }
            ))
        ));
    }

    #[test]
    fn missing_or_symlinked_files_allow_only_numeric_ids() {
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            resolve_user(empty.path(), "12:34", None).expect("numeric"),
            user(12, 34, &[34])
        );
        assert!(matches!(
            resolve_user(empty.path(), "app", None),
            Err(SpecError::UserNotFound(_))
        ));

        // A passwd symlinked to a file outside the rootfs must not be read.
        let outside = rootfs();
        let linked = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(linked.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(
            outside.path().join("etc/passwd"),
            linked.path().join("etc/passwd"),
        )
        .expect("symlink");
        assert!(matches!(
            resolve_user(linked.path(), "app", None),
            Err(SpecError::UserNotFound(_))
        ));

        // Likewise a symlinked etc directory.
        let etc_link = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path().join("etc"), etc_link.path().join("etc"))
            .expect("symlink");
        assert!(matches!(
            resolve_user(etc_link.path(), "app", None),
            Err(SpecError::UserNotFound(_))
        ));
    }
}
