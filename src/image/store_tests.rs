use super::*;
use crate::error::{Classify, Kind};
use crate::image::testreg::{FakeRegistry, TestImage, build_image, serve};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

struct Env {
    _t: tempfile::TempDir,
    root: PathBuf,
    certs: PathBuf,
    reg: std::sync::Arc<FakeRegistry>,
}

impl Env {
    /// A store whose docker.io goes to the fake registry through a mirror entry, with an
    /// unreachable `server` behind it (never needed when the mirror answers).
    async fn new(reg: FakeRegistry) -> Env {
        let t = tempfile::tempdir().unwrap();
        let reg = serve(reg).await;
        let certs = t.path().join("certs.d");
        fs::create_dir_all(certs.join("docker.io")).unwrap();
        let toml = format!(
            "server = \"http://127.0.0.1:9\"\n[host.\"http://{}\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
            reg.addr()
        );
        fs::write(certs.join("docker.io/hosts.toml"), toml).unwrap();
        Env {
            root: t.path().join("store"),
            certs,
            _t: t,
            reg,
        }
    }
    fn open(&self) -> std::sync::Arc<ImageStore> {
        std::sync::Arc::new(ImageStore::open(self.root.clone(), self.certs.clone()).unwrap())
    }
}

fn busybox() -> TestImage {
    build_image(
        &[
            &[("bin/sh", "shell")],
            &[("etc/passwd", "root"), ("bin/ls", "ls")],
        ],
        false,
    )
}

/// The counted figures must be what a fresh walk of the whole store gives.
async fn assert_counted(store: &ImageStore, step: &str) {
    let u = store.fs_usage().await.unwrap();
    let walked = disk_usage(&store.root);
    assert_eq!((u.used_bytes, u.inodes_used), walked, "after {step}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v = list_names(dir);
    v.sort();
    v
}

#[tokio::test]
async fn pull_records_snapshots_and_lookups() {
    let env = Env::new(FakeRegistry::default()).await;
    let img = busybox();
    img.publish(&env.reg, "library/busybox", "latest");
    let store = env.open();
    let got = store.pull("busybox", None).await.unwrap();
    assert_eq!(got.id, img.config_digest);
    assert_eq!(got.repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(
        got.repo_digests,
        [format!("docker.io/library/busybox@{}", img.manifest_digest)]
    );
    let layer_bytes: usize = img.layers.iter().map(|l| l.len()).sum();
    assert_eq!(got.size as usize, layer_bytes + img.config.len());
    assert_eq!(got.chain_ids, chain_ids(&img.diff_ids));
    let dirs = store.snapshot_dirs(&got);
    assert_eq!(fs::read(dirs[0].join("bin/ls")).unwrap(), b"ls");
    assert_eq!(fs::read(dirs[1].join("bin/sh")).unwrap(), b"shell");
    assert!(!dirs[0].join("bin/sh").exists());

    let hex = &got.id[7..];
    for key in [
        got.id.as_str(),
        hex,
        &hex[..12],
        "busybox",
        "docker.io/library/busybox:latest",
        &got.repo_digests[0],
        &format!("busybox@{}", img.manifest_digest),
    ] {
        assert_eq!(store.get(key).map(|i| i.id), Some(got.id.clone()), "{key}");
    }
    assert!(store.get("busybox:other").is_none());
    assert!(store.get("Bad Ref").is_none());

    // Reopening finds the record; pulling again downloads nothing.
    drop(store);
    let store = env.open();
    assert_eq!(store.list().len(), 1);
    let before = env.reg.blob_requests.load(Ordering::SeqCst);
    store
        .pull("docker.io/library/busybox:latest", None)
        .await
        .unwrap();
    assert_eq!(env.reg.blob_requests.load(Ordering::SeqCst), before);
    let usage = store.fs_usage().await.unwrap();
    assert!(usage.used_bytes > 0 && usage.inodes_used > 5);
}

#[tokio::test]
async fn index_by_digest_and_tag_moves() {
    let env = Env::new(FakeRegistry::default()).await;
    let one = busybox();
    one.publish(&env.reg, "foo/bar", "v1");
    let index = one.index();
    let index_digest = env.reg.put_blob(&index);
    env.reg.put_manifest(
        "foo/bar",
        "latest",
        crate::image::manifest::OCI_INDEX,
        &index,
    );
    let store = env.open();
    let a = store.pull("foo/bar", None).await.unwrap();
    assert_eq!(a.id, one.config_digest);
    assert_eq!(
        a.repo_digests,
        [format!("docker.io/foo/bar@{index_digest}")]
    );
    let by_digest = store
        .pull(&format!("foo/bar@{}", one.manifest_digest), None)
        .await
        .unwrap();
    assert_eq!(by_digest.id, a.id);
    assert_eq!(by_digest.repo_tags, ["docker.io/foo/bar:latest"]);
    assert_eq!(by_digest.repo_digests.len(), 2);

    // A different image now carries :latest: the tag moves, the old image keeps its digests.
    let two = build_image(&[&[("bin/sh", "shell")], &[("new", "2")]], true);
    two.publish(&env.reg, "foo/bar", "latest");
    let b = store.pull("foo/bar:latest", None).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(store.get(&a.id).unwrap().repo_tags, Vec::<String>::new());
    assert_eq!(store.get("foo/bar").unwrap().id, b.id);
    // The first layer is shared: one snapshot serves both images.
    assert_eq!(a.chain_ids[0], b.chain_ids[0]);
    let snaps = names(&env.root.join("snapshots"));
    assert_eq!(snaps.len(), 3);
    drop(store);
    let store = env.open();
    assert_eq!(store.get(&a.id).unwrap().repo_tags.len(), 0);
}

#[tokio::test]
async fn remove_collects_unshared_content_but_keeps_in_use() {
    let env = Env::new(FakeRegistry::default()).await;
    let one = busybox();
    one.publish(&env.reg, "library/one", "latest");
    let two = build_image(&[&[("bin/sh", "shell")], &[("two", "2")]], false);
    two.publish(&env.reg, "library/two", "latest");
    let store = env.open();
    let a = store.pull("one", None).await.unwrap();
    let b = store.pull("two", None).await.unwrap();
    let keep: HashSet<String> = [a.chain_ids[1].clone()].into();
    store.remove("one", &keep).unwrap();
    assert!(store.get(&a.id).is_none());
    assert!(
        !env.root
            .join(format!("images/{}.json", &a.id[7..]))
            .exists()
    );
    // Shared bottom layer (b uses it) and the kept top layer survive; a's blobs go.
    let snaps = names(&env.root.join("snapshots"));
    let hex = |c: &str| c[7..].to_string();
    let mut want = vec![
        hex(&a.chain_ids[1]),
        hex(&b.chain_ids[0]),
        hex(&b.chain_ids[1]),
    ];
    want.sort();
    assert_eq!(snaps, want);
    assert!(!store.blobs.exists(&a.id) && store.blobs.exists(&b.id));
    assert!(!store.blobs.exists(&a.layer_digests[1]));
    // Idempotent; prune and the next removal collect what is no longer kept.
    store.remove("one", &HashSet::new()).unwrap();
    store.prune(&HashSet::new());
    assert_eq!(names(&env.root.join("snapshots")).len(), 2);
    store.remove(&b.id[7..19], &HashSet::new()).unwrap();
    assert!(names(&env.root.join("snapshots")).is_empty());
    assert!(names(&env.root.join("blobs/sha256")).is_empty());
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn bearer_auth() {
    let reg = FakeRegistry {
        auth: Some(("user".into(), "secret".into())),
        ..Default::default()
    };
    let env = Env::new(reg).await;
    busybox().publish(&env.reg, "library/busybox", "latest");
    let store = env.open();
    let e = store.pull("busybox", None).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
    let wrong = RegistryAuth {
        username: "user".into(),
        password: "nope".into(),
        ..Default::default()
    };
    let e = store.pull("busybox", Some(&wrong)).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
    use base64::Engine;
    let good = RegistryAuth {
        auth: base64::engine::general_purpose::STANDARD.encode("user:secret"),
        ..Default::default()
    };
    store.pull("busybox", Some(&good)).await.unwrap();
    assert!(env.reg.token_requests.load(Ordering::SeqCst) >= 3);
    let refresh = RegistryAuth {
        identity_token: crate::image::testreg::REFRESH.into(),
        ..Default::default()
    };
    store.pull("busybox", Some(&refresh)).await.unwrap();
    let stale = RegistryAuth {
        identity_token: "stale".into(),
        ..Default::default()
    };
    let e = store.pull("busybox", Some(&stale)).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
}

#[tokio::test]
async fn basic_auth() {
    let reg = FakeRegistry {
        auth: Some(("user".into(), "secret".into())),
        basic: true,
        ..Default::default()
    };
    let env = Env::new(reg).await;
    busybox().publish(&env.reg, "library/busybox", "latest");
    let store = env.open();
    let e = store.pull("busybox", None).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
    let good = RegistryAuth {
        username: "user".into(),
        password: "secret".into(),
        ..Default::default()
    };
    store.pull("busybox", Some(&good)).await.unwrap();
    assert_eq!(env.reg.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn failures_leave_nothing_behind() {
    let env = Env::new(FakeRegistry::default()).await;
    let store = env.open();
    let e = store.pull("missing", None).await.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
    assert_eq!(
        store.pull("UPPER", None).await.unwrap_err().kind(),
        Kind::InvalidArgument
    );

    // The second layer's blob is served with the wrong content.
    let img = busybox();
    img.publish(&env.reg, "library/busybox", "latest");
    let bad = sha2::Sha256::digest(&img.layers[1]);
    let bad = format!("sha256:{}", hex::encode(bad));
    env.reg
        .blobs
        .lock()
        .unwrap()
        .insert(bad, b"tampered".to_vec());
    let e = store.pull("busybox", None).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Internal, "{e}");
    assert!(store.list().is_empty());
    assert!(names(&env.root.join("images")).is_empty());
    assert!(names(&env.root.join("ingest")).is_empty());
    assert_counted(&store, "a failed pull").await;
    for s in names(&env.root.join("snapshots")) {
        assert!(!s.starts_with('.'), "temp snapshot {s} left");
    }
    assert_eq!(
        names(&env.root.join("snapshots")).len(),
        1,
        "only the verified first layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_agree() {
    let env = Env::new(FakeRegistry::default()).await;
    busybox().publish(&env.reg, "library/busybox", "latest");
    let store = env.open();
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.pull("busybox", None).await.map(|i| i.id) })
        })
        .collect();
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.list().len(), 1);
    assert_eq!(names(&env.root.join("snapshots")).len(), 2);
    assert!(names(&env.root.join("ingest")).is_empty());
    assert_counted(&store, "concurrent pulls of one image").await;
}

#[test]
fn open_cleans_crash_leftovers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    fs::create_dir_all(root.join("snapshots/.tmp-abc/fs")).unwrap();
    fs::create_dir_all(root.join("ingest")).unwrap();
    fs::write(root.join("ingest/dl-1"), b"partial").unwrap();
    fs::create_dir_all(root.join("images")).unwrap();
    fs::write(root.join("images/.x.json.tmp"), b"{").unwrap();
    let store =
        std::sync::Arc::new(ImageStore::open(root.clone(), t.path().join("certs")).unwrap());
    assert!(store.list().is_empty());
    assert!(names(&root.join("snapshots")).is_empty());
    assert!(names(&root.join("ingest")).is_empty());
    assert!(names(&root.join("images")).is_empty());
}

#[test]
fn chain_id_formula() {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let ids = chain_ids(&[d('a'), d('b')]);
    assert_eq!(ids[0], d('a'));
    let want = Sha256::digest(format!("{} {}", d('a'), d('b')).as_bytes());
    assert_eq!(ids[1], format!("sha256:{}", hex::encode(want)));
}

/// A pull from a real registry (a `docker-registry` on loopback): set
/// CRIUS_TEST_REGISTRY=127.0.0.1:5002 with `library/busybox:latest` pushed to it.
#[tokio::test]
async fn pull_from_real_registry() {
    let Ok(addr) = std::env::var("CRIUS_TEST_REGISTRY") else {
        eprintln!("skipped: CRIUS_TEST_REGISTRY is not set");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let certs = t.path().join("certs.d");
    fs::create_dir_all(certs.join("docker.io")).unwrap();
    // A bare host:port is plain HTTP; a URL may say https, with extra host keys (e.g.
    // `skip_verify = true` or `ca = "/path/ca.crt"`) in CRIUS_TEST_REGISTRY_HOST_KEYS.
    let url = if addr.starts_with("http") {
        addr
    } else {
        format!("http://{addr}")
    };
    let extra = std::env::var("CRIUS_TEST_REGISTRY_HOST_KEYS").unwrap_or_default();
    let toml = format!("[host.\"{url}\"]\ncapabilities = [\"pull\", \"resolve\"]\n{extra}\n");
    fs::write(certs.join("docker.io/hosts.toml"), toml).unwrap();
    let store = std::sync::Arc::new(ImageStore::open(t.path().join("store"), certs).unwrap());
    // Registry credentials as "user:password", for a registry with htpasswd auth.
    let auth = std::env::var("CRIUS_TEST_REGISTRY_AUTH").ok().map(|a| {
        use base64::Engine;
        RegistryAuth {
            auth: base64::engine::general_purpose::STANDARD.encode(a),
            ..Default::default()
        }
    });
    let img = store.pull("busybox", auth.as_ref()).await.unwrap();
    eprintln!(
        "pulled {} {:?} {:?} size {}",
        img.id, img.repo_tags, img.repo_digests, img.size
    );
    let dirs = store.snapshot_dirs(&img);
    assert!(dirs.iter().any(|d| d.join("bin/busybox").is_file()));
    for d in &dirs {
        eprintln!("{}: {:?}", d.display(), names(d));
    }
    // More references to pull, e.g. a docker-v2s2 copy of the image: comma separated.
    for r in std::env::var("CRIUS_TEST_REGISTRY_EXTRA")
        .unwrap_or_default()
        .split(',')
    {
        if !r.is_empty() {
            let i = store.pull(r, auth.as_ref()).await.unwrap();
            eprintln!("pulled {r}: {} {:?}", i.id, i.repo_digests);
            for d in store.snapshot_dirs(&i) {
                let out = std::process::Command::new("ls")
                    .arg("-lR")
                    .arg(&d)
                    .output()
                    .unwrap();
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
    let again = store
        .pull(&img.repo_digests[0], auth.as_ref())
        .await
        .unwrap();
    assert_eq!(again.id, img.id);
    store.remove("busybox", &HashSet::new()).unwrap();
    assert!(store.get("busybox").is_none());
}

/// The snapshots stacked as overlay lowerdirs, topmost first, show the image's filesystem:
/// whiteouts hide lower files, opaque directories hide lower contents.
#[tokio::test]
async fn snapshots_stack_as_overlay() {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let env = Env::new(FakeRegistry::default()).await;
    let img = build_image(
        &[
            &[("etc/motd", "hi"), ("etc/keep", "k"), ("opq/a", "a")],
            &[
                ("etc/.wh.motd", ""),
                ("opq/.wh..wh..opq", ""),
                ("opq/b", "b"),
            ],
        ],
        false,
    );
    img.publish(&env.reg, "library/layers", "latest");
    let store = env.open();
    let got = store.pull("layers", None).await.unwrap();
    let lower: Vec<String> = store
        .snapshot_dirs(&got)
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let target = env.root.join("mnt");
    fs::create_dir_all(&target).unwrap();
    let opts = format!("lowerdir={}", lower.join(":"));
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .unwrap();
    let seen = (
        target.join("etc/motd").exists(),
        fs::read(target.join("etc/keep")).ok(),
        names(&target.join("opq")),
    );
    umount2(&target, MntFlags::MNT_DETACH).unwrap();
    assert_eq!(seen, (false, Some(b"k".to_vec()), vec!["b".to_string()]));
}

/// A mirror serving wrong content for a digest is skipped for the next host.
#[tokio::test]
async fn bad_mirror_content_falls_through_to_next_host() {
    let env = Env::new(FakeRegistry::default()).await;
    let good = serve(FakeRegistry::default()).await;
    let img = busybox();
    img.publish(&good, "library/busybox", "latest");
    img.publish(&env.reg, "library/busybox", "latest");
    let key = ("library/busybox".to_string(), img.manifest_digest.clone());
    env.reg.manifests.lock().unwrap().get_mut(&key).unwrap().1 = b"{}".to_vec();
    let toml = format!(
        "server = \"http://{}\"\n[host.\"http://{}\"]\n",
        good.addr(),
        env.reg.addr()
    );
    fs::write(env.certs.join("docker.io/hosts.toml"), toml).unwrap();
    let store = env.open();
    let by_digest = format!("busybox@{}", img.manifest_digest);
    let got = store.pull(&by_digest, None).await.unwrap();
    assert_eq!(got.id, img.config_digest);
}

/// The daemon holds `Arc<ImageStore>` and awaits `pull` inside tonic handlers.
#[test]
fn store_is_sync_and_pull_future_is_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<ImageStore>();
    let t = tempfile::tempdir().unwrap();
    let store =
        std::sync::Arc::new(ImageStore::open(t.path().join("s"), t.path().join("c")).unwrap());
    let auth = RegistryAuth::default();
    let fut = store.pull("busybox", Some(&auth));
    send(&fut);
}

#[path = "store_usage_tests.rs"]
mod usage_tests;
