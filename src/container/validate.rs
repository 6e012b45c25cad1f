//! CreateContainer request validation: reject what would be unsafe or meaningless before
//! any resource is acquired, with messages that say which field is wrong and why.
//!
//! The path rules matter for safety: names end up in directory names, `log_path` is joined
//! onto the pod's log directory, and mount paths are resolved by the runtime.

use std::path::{Component, Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, Device, Mount, MountPropagation, PodSandboxConfig};

use super::error::SpecError;
use crate::validation::{InputError, check_abs_path, check_name, has_parent, no_nul};

pub fn validate_container_config(
    c: &ContainerConfig,
    sandbox: &PodSandboxConfig,
) -> Result<(), SpecError> {
    let meta = c.metadata.as_ref().ok_or(InputError::Missing {
        field: "container metadata",
    })?;
    check_name("container name", &meta.name)?;
    let image = c.image.as_ref().map_or("", |i| i.image.as_str());
    if image.is_empty() {
        return Err(InputError::Missing {
            field: "container image",
        }
        .into());
    }
    if !c.log_path.is_empty() {
        log_path(Path::new(&sandbox.log_directory), &c.log_path)?;
    }
    for m in &c.mounts {
        check_mount(m)?;
    }
    for d in &c.devices {
        check_device(d)?;
    }
    for kv in &c.envs {
        check_env(&kv.key, &kv.value)?;
    }
    for arg in c.command.iter().chain(&c.args) {
        no_nul("command argument", arg)?;
    }
    if !c.cdi_devices.is_empty() {
        return Err(SpecError::unsupported("CDI devices"));
    }
    if !c.working_dir.is_empty() {
        check_abs_path("working_dir", &c.working_dir)?;
    }
    check_user(c)?;
    super::spec::check_namespace_options(c, sandbox)
}

/// api.proto: run_as_group "should only be specified when RunAsUser or RunAsUsername is
/// specified; otherwise, the runtime MUST error".
fn check_user(c: &ContainerConfig) -> Result<(), SpecError> {
    let Some(sc) = c.linux.as_ref().and_then(|l| l.security_context.as_ref()) else {
        return Ok(());
    };
    crate::sandbox::validate::check_user_namespace(sc.namespace_options.as_ref())?;
    match &sc.run_as_group {
        Some(g) if sc.run_as_user.is_none() && sc.run_as_username.is_empty() => {
            Err(SpecError::invalid(
                "run_as_group",
                g.value.to_string(),
                "needs run_as_user or run_as_username",
            ))
        }
        _ => Ok(()),
    }
}

/// A host path or image volume, as api.proto's `Mount` allows it.
fn check_mount(m: &Mount) -> Result<(), SpecError> {
    check_abs_path("mount container_path", &m.container_path)?;
    if m.recursive_read_only && !m.readonly {
        return Err(SpecError::invalid(
            "mount recursive_read_only",
            &m.container_path,
            "a recursive read-only mount must also be readonly",
        ));
    }
    if m.recursive_read_only && m.propagation != MountPropagation::PropagationPrivate as i32 {
        return Err(SpecError::invalid(
            "mount recursive_read_only",
            &m.container_path,
            "a recursive read-only mount needs private propagation",
        ));
    }
    let Some(image) = m.image.as_ref().filter(|i| !i.image.is_empty()) else {
        if !m.image_sub_path.is_empty() {
            return Err(SpecError::invalid(
                "mount image_sub_path",
                &m.image_sub_path,
                "only an image volume has a sub path",
            ));
        }
        return Ok(check_abs_path("mount host_path", &m.host_path)?);
    };
    let reason = if !m.host_path.is_empty() {
        "an image volume must not have a host_path too"
    } else if !m.readonly {
        "an image volume must be readonly"
    } else if m.image_sub_path.starts_with('/') {
        "image_sub_path must be relative to the image's root"
    } else if has_parent(Path::new(&m.image_sub_path)) {
        "image_sub_path must not contain '..'"
    } else if m.image_sub_path.contains('\0') {
        "image_sub_path must not contain NUL bytes"
    } else {
        return Ok(no_nul("mount image", &image.image)?);
    };
    let value = format!("{} ({})", m.container_path, m.image_sub_path);
    Err(SpecError::invalid("image volume mount", value, reason))
}

/// A device the container gets: its host node, its path inside, and cgroup access.
fn check_device(d: &Device) -> Result<(), SpecError> {
    check_abs_path("device host_path", &d.host_path)?;
    check_abs_path("device container_path", &d.container_path)?;
    if d.permissions.is_empty() || !d.permissions.chars().all(|c| "rwm".contains(c)) {
        return Err(SpecError::invalid(
            "device permissions",
            &d.permissions,
            "must be one or more of 'r', 'w' and 'm'",
        ));
    }
    Ok(())
}

/// Where a container's log file goes: `container_log_path` (relative, from the kubelet)
/// joined onto the pod's log directory, refusing anything that could escape it.
pub fn log_path(sandbox_log_dir: &Path, container_log_path: &str) -> Result<PathBuf, SpecError> {
    if sandbox_log_dir.as_os_str().is_empty() {
        return Err(SpecError::invalid(
            "log_path",
            container_log_path,
            "the pod sandbox has no log_directory to put it in",
        ));
    }
    if !sandbox_log_dir.is_absolute() || has_parent(sandbox_log_dir) {
        return Err(SpecError::invalid(
            "pod log_directory",
            sandbox_log_dir.to_string_lossy(),
            "must be an absolute path without '..'",
        ));
    }
    no_nul("log_path", container_log_path)?;
    let rel = Path::new(container_log_path);
    if rel.is_absolute() {
        return Err(SpecError::invalid(
            "log_path",
            container_log_path,
            "must be relative to the pod's log_directory",
        ));
    }
    if has_parent(rel) {
        return Err(SpecError::invalid(
            "log_path",
            container_log_path,
            "must not contain '..'",
        ));
    }
    let rel: PathBuf = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        return Err(SpecError::invalid(
            "log_path",
            container_log_path,
            "must name a file",
        ));
    }
    Ok(sandbox_log_dir.join(rel))
}

fn check_env(key: &str, value: &str) -> Result<(), SpecError> {
    let reason = if key.is_empty() {
        "environment variable names must not be empty"
    } else if key.contains('=') {
        "environment variable names must not contain '='"
    } else if key.contains('\0') || value.contains('\0') {
        "environment variables must not contain NUL bytes"
    } else {
        return Ok(());
    };
    Err(SpecError::invalid("env", key, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{ContainerMetadata, Device, ImageSpec, KeyValue, Mount};

    fn sandbox(log_dir: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            log_directory: log_dir.into(),
            ..Default::default()
        }
    }

    fn valid() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "web".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            log_path: "web/0.log".into(),
            working_dir: "/srv".into(),
            ..Default::default()
        }
    }

    fn check(f: impl FnOnce(&mut ContainerConfig)) -> Result<(), SpecError> {
        let mut c = valid();
        f(&mut c);
        validate_container_config(&c, &sandbox("/var/log/pods/ns_pod_uid"))
    }

    fn mount(container: &str, host: &str) -> Mount {
        Mount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        }
    }

    fn device(host: &str, permissions: &str) -> Device {
        Device {
            host_path: host.into(),
            container_path: "/dev/x".into(),
            permissions: permissions.into(),
        }
    }

    fn image_mount(sub_path: &str) -> Mount {
        Mount {
            container_path: "/mnt/image".into(),
            image: Some(ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            }),
            image_sub_path: sub_path.into(),
            ..Default::default()
        }
    }

    fn ro_image_mount(sub_path: &str) -> Mount {
        Mount {
            readonly: true,
            ..image_mount(sub_path)
        }
    }

    #[test]
    fn accepts_a_valid_config() {
        check(|c| c.mounts = vec![ro_image_mount(""), ro_image_mount("etc/./ssl")])
            .expect("image volumes");
        check(|c| c.devices = vec![device("/dev/fuse", "mrw")]).expect("device");
        check(|c| {
            c.mounts = vec![mount("/d", "/h")];
            c.mounts[0].readonly = true;
            c.mounts[0].recursive_read_only = true;
        })
        .expect("rro");
        check(|_| {}).expect("valid");
        check(|c| c.log_path.clear()).expect("no log path");
        check(|c| c.working_dir.clear()).expect("no working dir");
        check(|c| c.mounts = vec![mount("/data", "/var/lib/data/./x")]).expect("mount");
        check(|c| {
            c.envs = vec![KeyValue {
                key: "A".into(),
                value: "b=c".into(),
            }]
        })
        .expect("env value may contain '='");
    }

    #[test]
    fn rejects_bad_fields() {
        type Mutation = fn(&mut ContainerConfig);
        let cases: &[(&str, Mutation)] = &[
            ("no metadata", |c| c.metadata = None),
            ("empty name", |c| c.metadata.as_mut().unwrap().name.clear()),
            ("slash in name", |c| {
                c.metadata.as_mut().unwrap().name = "a/b".into()
            }),
            ("dots in name", |c| {
                c.metadata.as_mut().unwrap().name = "..".into()
            }),
            ("NUL in name", |c| {
                c.metadata.as_mut().unwrap().name = "a\0".into()
            }),
            ("no image", |c| c.image = None),
            ("group without user", |c| {
                let sc = c.linux.get_or_insert_with(Default::default);
                let sc = sc.security_context.get_or_insert_with(Default::default);
                sc.run_as_group = Some(k8s_cri::v1::Int64Value { value: 5 });
            }),
            ("empty image", |c| c.image.as_mut().unwrap().image.clear()),
            ("absolute log", |c| c.log_path = "/etc/passwd".into()),
            ("escaping log", |c| c.log_path = "../../x.log".into()),
            ("inner dotdot log", |c| c.log_path = "a/../../x.log".into()),
            ("relative mount", |c| c.mounts = vec![mount("data", "/h")]),
            ("empty mount", |c| c.mounts = vec![mount("/data", "")]),
            ("host dotdot", |c| c.mounts = vec![mount("/d", "/h/../etc")]),
            ("container dotdot", |c| {
                c.mounts = vec![mount("/d/..", "/h")]
            }),
            ("empty env key", |c| c.envs = vec![KeyValue::default()]),
            ("env key with =", |c| {
                c.envs = vec![KeyValue {
                    key: "A=B".into(),
                    value: String::new(),
                }]
            }),
            ("NUL arg", |c| c.args = vec!["a\0b".into()]),
            ("relative cwd", |c| c.working_dir = "srv".into()),
            ("empty device", |c| c.devices = vec![Device::default()]),
            ("device perms", |c| {
                c.devices = vec![device("/dev/null", "x")]
            }),
            ("relative device", |c| {
                c.devices = vec![device("/dev/null", "rw")];
                c.devices[0].container_path = "null".into();
            }),
            ("rro not ro", |c| {
                c.mounts = vec![mount("/d", "/h")];
                c.mounts[0].recursive_read_only = true;
            }),
            ("rro rslave", |c| {
                c.mounts = vec![mount("/d", "/h")];
                c.mounts[0].readonly = true;
                c.mounts[0].recursive_read_only = true;
                c.mounts[0].propagation = MountPropagation::PropagationHostToContainer as i32;
            }),
            ("image volume rw", |c| c.mounts = vec![image_mount("")]),
            ("image and host path", |c| {
                c.mounts = vec![image_mount("")];
                c.mounts[0].readonly = true;
                c.mounts[0].host_path = "/h".into();
            }),
            ("sub path escape", |c| {
                c.mounts = vec![ro_image_mount("a/../../x")]
            }),
            ("absolute sub path", |c| {
                c.mounts = vec![ro_image_mount("/etc")]
            }),
            ("sub path on host mount", |c| {
                c.mounts = vec![mount("/d", "/h")];
                c.mounts[0].image_sub_path = "etc".into();
            }),
        ];
        for (what, mutate) in cases {
            let err = check(*mutate).expect_err(what);
            let kind = crate::error::Classify::kind(&err);
            assert_eq!(kind, crate::error::Kind::InvalidArgument, "{what}: {err}");
        }
        let err = check(|c| c.cdi_devices = vec![Default::default()]).expect_err("cdi");
        assert_eq!(
            crate::error::Classify::kind(&err),
            crate::error::Kind::Unimplemented
        );
    }

    #[test]
    fn log_path_needs_a_sandbox_log_directory() {
        let err = validate_container_config(&valid(), &sandbox("")).expect_err("no dir");
        assert!(err.to_string().contains("no log_directory"), "{err}");
        let err = validate_container_config(&valid(), &sandbox("rel/dir")).expect_err("rel");
        assert!(err.to_string().contains("log_directory"), "{err}");
    }

    #[test]
    fn log_path_joins_inside_the_directory() {
        let dir = Path::new("/var/log/pods/p");
        let cases = [
            ("c/0.log", Some("/var/log/pods/p/c/0.log")),
            ("./c.log", Some("/var/log/pods/p/c.log")),
            ("c..log", Some("/var/log/pods/p/c..log")),
            ("../c.log", None),
            ("/c.log", None),
            (".", None),
            ("", None),
        ];
        for (rel, want) in cases {
            let got = log_path(dir, rel).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "log path {rel:?}");
        }
    }

    #[test]
    fn error_messages_name_the_field() {
        let err = check(|c| c.metadata.as_mut().unwrap().name = "a/b".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid container name \"a/b\": must not contain '/'"
        );
        let err = check(|c| c.image = None).unwrap_err();
        assert_eq!(err.to_string(), "container image is required");
    }
}
