//! The counted disk usage against a full walk of the store, through pulls, removals,
//! garbage collection and reopening.

use super::*;

/// Every step that adds or deletes content keeps the counted usage equal to a walk.
#[tokio::test]
async fn usage_is_counted_as_content_comes_and_goes() {
    let env = Env::new(FakeRegistry::default()).await;
    busybox().publish(&env.reg, "library/one", "latest");
    let two = build_image(&[&[("bin/sh", "shell")], &[("two", "2")]], false);
    two.publish(&env.reg, "library/two", "latest");
    let store = env.open();
    assert_counted(&store, "opening an empty store").await;
    store.pull("one", None).await.unwrap();
    assert_counted(&store, "a pull").await;
    let b = store.pull("two", None).await.unwrap();
    assert_counted(&store, "a pull sharing a layer").await;
    store.pull("one", None).await.unwrap();
    assert_counted(&store, "pulling again (record rewritten)").await;
    // :latest of one moves to a third image: the first image's record is rewritten.
    let three = build_image(&[&[("bin/sh", "shell")], &[("three", "3")]], true);
    three.publish(&env.reg, "library/one", "latest");
    store.pull("one", None).await.unwrap();
    assert_counted(&store, "a tag moving").await;

    let keep: HashSet<String> = [b.chain_ids[1].clone()].into();
    store.remove("two", &keep).unwrap();
    assert_counted(&store, "a removal keeping a snapshot in use").await;
    store.prune(&HashSet::new());
    assert_counted(&store, "a prune").await;

    drop(store);
    let store = env.open();
    assert_counted(&store, "reopening").await;
    store.remove(&three.config_digest, &HashSet::new()).unwrap();
    assert_counted(&store, "a removal after reopening").await;
}

/// A store from before usage files: open answers at once, and a background walk of
/// each snapshot brings the figure to the walked one (and writes the usage files).
#[tokio::test]
async fn usage_of_snapshots_without_usage_file_is_measured_in_background() {
    let env = Env::new(FakeRegistry::default()).await;
    busybox().publish(&env.reg, "library/busybox", "latest");
    let store = env.open();
    let img = store.pull("busybox", None).await.unwrap();
    drop(store);
    let snapshots = env.root.join("snapshots");
    for s in names(&snapshots) {
        fs::remove_file(snapshots.join(s).join(usage::USAGE_FILE)).unwrap();
    }
    let store = env.open();
    store.wait_for_backfill();
    assert_counted(&store, "measuring old snapshots").await;
    for s in names(&snapshots) {
        assert!(
            usage::recorded_snapshot(&snapshots.join(&s)).is_some(),
            "{s}"
        );
    }
    store.remove(&img.id, &HashSet::new()).unwrap();
    assert_counted(&store, "removing measured snapshots").await;
}

/// ImageFsInfo on a store of many small files, counted vs walked. Prints, asserts
/// nothing about time: `cargo test --bins fs_usage_cost -- --ignored
/// --nocapture`.
#[tokio::test]
#[ignore = "slow: unpacks 50,000 files"]
async fn fs_usage_cost_on_a_large_store() {
    let env = Env::new(FakeRegistry::default()).await;
    let paths: Vec<String> = (0..50_000).map(|i| format!("d{}/f{i}", i % 100)).collect();
    let files: Vec<(&str, &str)> = paths.iter().map(|p| (p.as_str(), "x")).collect();
    build_image(&[&files], false).publish(&env.reg, "library/big", "latest");
    let store = env.open();
    store.pull("big", None).await.unwrap();
    let time = std::time::Instant::now();
    let walked = disk_usage(&store.root);
    let walk = time.elapsed();
    let rounds = 100u32;
    let time = std::time::Instant::now();
    for _ in 0..rounds {
        store.fs_usage().await.unwrap();
    }
    let counted = time.elapsed() / rounds;
    eprintln!(
        "{} inodes: full walk {walk:?}, counted fs_usage {counted:?}",
        walked.1
    );
    assert_counted(&store, "a large pull").await;
}
