//! The image store: records, the pull pipeline, lookup, removal and garbage collection.
//!
//! Nothing a pull writes is visible until verified: blobs are renamed into place after
//! their digest matched, snapshots after their diff id matched, and the record last. A
//! pull holds a lease on every blob and snapshot it uses, and garbage collection (which
//! runs holding the lease table) skips leased ones, so a removal racing a pull cannot
//! delete what the pull is about to reference.
//!
//! Disk use is counted as content is written and deleted (see `usage`), never walked on
//! request.

use super::blobs::BlobStore;
use super::lease::{Lease, Leases};
use super::manifest::Descriptor;
use super::reference::{self, is_full_hex_id, is_lower_hex};
use super::registry::Session;
use super::unpack::{UnpackRequest, snapshot_dir, unpack_layer};
use super::usage::{self, Ledger};
use super::{FsUsage, Image, ImageError, RegistryAuth, hosts};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

/// Shortest id prefix `get` accepts, so short names are not mistaken for ids.
const MIN_ID_PREFIX: usize = 4;

pub struct ImageStore {
    root: PathBuf,
    registry_config_dir: PathBuf,
    blobs: BlobStore,
    snapshots: PathBuf,
    records: PathBuf,
    images: RwLock<HashMap<String, Image>>,
    leases: Arc<Leases>,
    usage: Arc<Ledger>,
    /// Measures snapshots found without a usage file at open (a store from before them).
    backfill: Mutex<Option<JoinHandle<()>>>,
}

impl ImageStore {
    /// Opens (creating) the store, drops leftovers of interrupted pulls, loads records.
    pub fn open(root: PathBuf, registry_config_dir: PathBuf) -> Result<ImageStore, ImageError> {
        let usage = Arc::new(Ledger::default());
        let blobs = BlobStore::new(&root, usage.clone())?;
        blobs.clean_ingest()?;
        let snapshots = root.join("snapshots");
        let records = root.join("images");
        for d in [&snapshots, &records] {
            fs::create_dir_all(d).map_err(ImageError::io("creating", d))?;
        }
        remove_dot_entries(&snapshots)?;
        let images = load_records(&records)?;
        let leases = Arc::new(Leases::default());
        let unmeasured = usage::rebuild(&usage, blobs.dir(), &records, &snapshots);
        let backfill = usage::spawn_backfill(usage.clone(), leases.clone(), unmeasured);
        Ok(ImageStore {
            root,
            registry_config_dir,
            blobs,
            snapshots,
            records,
            images: RwLock::new(images),
            leases,
            usage,
            backfill: Mutex::new(backfill),
        })
    }

    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<Image, ImageError> {
        let r = reference::normalize(reference)?;
        let hosts = hosts::hosts_for(&self.registry_config_dir, &r.registry)?;
        let mut session = Session::new(&r, hosts, auth)?;
        let resolved = session.resolve().await?;
        let m = &resolved.manifest;
        let mut lease = self.leases.lease();
        let config = self
            .fetch_config(&mut session, &m.config, &mut lease)
            .await?;
        let diff_ids = checked_diff_ids(&config, m.layers.len(), &m.config.digest)?;
        let chain_ids = chain_ids(&diff_ids);
        let mut unpacks = Vec::new();
        let layers = LayerPlan {
            layers: &m.layers,
            diff_ids: &diff_ids,
            chain_ids: &chain_ids,
        };
        let fetched = self
            .fetch_layers(&mut session, &layers, &mut lease, &mut unpacks)
            .await;
        // Even after a failed download, wait for started unpacks: nothing of this pull
        // may still be running (or leased) once it returns.
        let unpacked = await_all(unpacks).await;
        fetched?;
        unpacked?;
        let image = Image {
            id: m.config.digest.clone(),
            repo_tags: r.tagged_name().into_iter().collect(),
            repo_digests: vec![format!("{}@{}", r.name(), resolved.repo_digest)],
            size: m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>(),
            config,
            chain_ids,
            layer_digests: m.layers.iter().map(|l| l.digest.clone()).collect(),
        };
        // Record writes fsync: off the async threads.
        let this = self.clone();
        let image = tokio::task::spawn_blocking(move || this.commit(image))
            .await
            .map_err(|e| ImageError::Task(format!("image record: {e}")))??;
        drop(lease);
        tracing::info!(reference = %r, id = %image.id, "pulled image");
        Ok(image)
    }

    async fn fetch_config(
        &self,
        session: &mut Session<'_>,
        desc: &Descriptor,
        lease: &mut Lease<'_>,
    ) -> Result<oci_spec::image::ImageConfiguration, ImageError> {
        lease.hold(&desc.digest);
        if !self.blobs.exists(&desc.digest) {
            if desc.size > super::manifest::MAX_MANIFEST_BYTES {
                return Err(ImageError::TooLarge {
                    digest: desc.digest.clone(),
                    expected: super::manifest::MAX_MANIFEST_BYTES,
                });
            }
            session.fetch_blob(desc, &self.blobs).await?;
        }
        let bytes = self.blobs.read(&desc.digest)?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Decode {
            what: format!("image config {}", desc.digest),
            source,
        })
    }

    /// Downloads each layer that has no snapshot yet and starts its unpack, so layer n
    /// unpacks on a blocking thread while layer n+1 downloads.
    async fn fetch_layers(
        &self,
        session: &mut Session<'_>,
        plan: &LayerPlan<'_>,
        lease: &mut Lease<'_>,
        unpacks: &mut Vec<UnpackTask>,
    ) -> Result<(), ImageError> {
        let zipped = plan.layers.iter().zip(plan.diff_ids).zip(plan.chain_ids);
        for ((layer, diff_id), chain_id) in zipped {
            // A snapshot that exists (kept for a container, or shared) needs no blob.
            lease.hold(chain_id);
            if snapshot_dir(&self.snapshots, chain_id).join("fs").is_dir() {
                continue;
            }
            lease.hold(&layer.digest);
            if !self.blobs.exists(&layer.digest) {
                session.fetch_blob(layer, &self.blobs).await?;
            }
            unpacks.push(self.spawn_unpack(layer, diff_id, chain_id)?);
        }
        Ok(())
    }

    fn spawn_unpack(
        &self,
        layer: &Descriptor,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<UnpackTask, ImageError> {
        let blob = self.blobs.path(&layer.digest)?;
        let snapshots = self.snapshots.clone();
        let usage = self.usage.clone();
        let (layer, diff_id, chain_id) = (
            layer.digest.clone(),
            diff_id.to_string(),
            chain_id.to_string(),
        );
        Ok(tokio::task::spawn_blocking(move || {
            unpack_layer(&UnpackRequest {
                blob: &blob,
                layer: &layer,
                diff_id: &diff_id,
                chain_id: &chain_id,
                snapshots: &snapshots,
                usage: &usage,
            })
        }))
    }

    /// Records the image, merging names into an existing record of the same id and taking
    /// its tags away from any other image (a tag names one image).
    fn commit(&self, mut image: Image) -> Result<Image, ImageError> {
        let mut images = self.images.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = images.get(&image.id) {
            image.repo_tags = union(&old.repo_tags, &image.repo_tags);
            image.repo_digests = union(&old.repo_digests, &image.repo_digests);
        }
        let mut changed = Vec::new();
        for other in images.values_mut().filter(|o| o.id != image.id) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !image.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                changed.push(other.clone());
            }
        }
        for img in changed.iter().chain(std::iter::once(&image)) {
            self.write_record(img)?;
        }
        images.insert(image.id.clone(), image.clone());
        Ok(image)
    }

    fn write_record(&self, img: &Image) -> Result<(), ImageError> {
        let path = self.record_path(&img.id);
        crate::store::write_json(&path, img)?;
        // One stat after the write's fsync keeps the count exact as records are rewritten.
        self.usage.set(path.clone(), usage::measure(&path));
        Ok(())
    }

    pub fn list(&self) -> Vec<Image> {
        let images = self.images.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Image> = images.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// By id (`sha256:<hex>` or bare hex), tag, repo digest, or unique id prefix.
    pub fn get(&self, reference_or_id: &str) -> Option<Image> {
        let images = self.images.read().unwrap_or_else(PoisonError::into_inner);
        find(&images, reference_or_id).cloned()
    }

    /// Where images and container layers live: the image filesystem's id in stats.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What a walk of the root reports once pulls and removals have settled, without
    /// the walk: the counted content plus a stat of each of the store's directories.
    pub async fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        let dirs = self.store_dirs();
        let ingest = self.blobs.ingest_dir().to_path_buf();
        let uncounted = tokio::task::spawn_blocking(move || usage::uncounted(&dirs, &ingest))
            .await
            .map_err(|e| ImageError::Usage(e.to_string()))?;
        let measuring = self.backfill.lock().unwrap_or_else(PoisonError::into_inner);
        if measuring.as_ref().is_some_and(|h| !h.is_finished()) {
            tracing::debug!("image usage is low until older snapshots are measured");
        }
        let total = self.usage.total() + uncounted;
        Ok(FsUsage {
            mountpoint: self.root.clone(),
            used_bytes: total.bytes,
            inodes_used: total.inodes,
        })
    }

    /// The directories the store is made of, whose own sizes are not counted content.
    fn store_dirs(&self) -> Vec<PathBuf> {
        let blobs = self.blobs.dir();
        let mut dirs = vec![
            self.root.clone(),
            blobs.to_path_buf(),
            self.blobs.ingest_dir().to_path_buf(),
            self.snapshots.clone(),
            self.records.clone(),
        ];
        dirs.extend(blobs.parent().map(Path::to_path_buf));
        dirs
    }

    /// Waits until snapshots found without a usage file at open are counted.
    #[cfg(test)]
    pub fn wait_for_backfill(&self) {
        let handle = self.backfill.lock().unwrap().take();
        if let Some(h) = handle {
            h.join().unwrap();
        }
    }

    /// Overlay lowerdirs for the image, topmost layer first.
    pub fn snapshot_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image
            .chain_ids
            .iter()
            .rev()
            .map(|c| snapshot_dir(&self.snapshots, c).join("fs"))
            .collect()
    }

    fn record_path(&self, id: &str) -> PathBuf {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        self.records.join(format!("{hex}.json"))
    }
}

fn find<'a>(images: &'a HashMap<String, Image>, s: &str) -> Option<&'a Image> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if is_full_hex_id(hex) {
        return images.get(&format!("sha256:{hex}"));
    }
    if let Ok(r) = reference::normalize(s) {
        let hit = match (&r.digest, r.tagged_name()) {
            (Some(d), _) => {
                let rd = format!("{}@{d}", r.name());
                images.values().find(|i| i.repo_digests.contains(&rd))
            }
            (None, Some(t)) => images.values().find(|i| i.repo_tags.contains(&t)),
            (None, None) => None,
        };
        if hit.is_some() {
            return hit;
        }
    }
    if hex.len() < MIN_ID_PREFIX || !is_lower_hex(hex) {
        return None;
    }
    let mut matches = images.values().filter(|i| {
        i.id.strip_prefix("sha256:")
            .unwrap_or(&i.id)
            .starts_with(hex)
    });
    match (matches.next(), matches.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

type UnpackTask = tokio::task::JoinHandle<Result<PathBuf, ImageError>>;

/// An image's layers with their config diff ids and computed chain ids, index-aligned.
struct LayerPlan<'a> {
    layers: &'a [Descriptor],
    diff_ids: &'a [String],
    chain_ids: &'a [String],
}

/// Awaits every task; the first failure is the result.
async fn await_all(tasks: Vec<UnpackTask>) -> Result<(), ImageError> {
    let mut first = None;
    for task in tasks {
        let result = match task.await {
            Ok(r) => r.map(drop),
            Err(e) => Err(ImageError::Task(format!("unpack: {e}"))),
        };
        if let Err(e) = result {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The config's diff ids, one per layer, each a well-formed digest (they become paths).
fn checked_diff_ids(
    config: &oci_spec::image::ImageConfiguration,
    layers: usize,
    config_digest: &str,
) -> Result<Vec<String>, ImageError> {
    let diff_ids = config.rootfs().diff_ids().clone();
    let malformed = |reason: String| ImageError::Malformed {
        what: format!("image config {config_digest}"),
        reason,
    };
    if let Some(bad) = diff_ids.iter().find(|d| !reference::is_valid_digest(d)) {
        return Err(malformed(format!("unsupported diff id {bad:?}")));
    }
    if diff_ids.len() != layers {
        return Err(malformed(format!(
            "{layers} layers but {} diff ids",
            diff_ids.len()
        )));
    }
    Ok(diff_ids)
}

/// chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n]).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
    out
}

fn list_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes `.tmp-*` snapshot builds a crash interrupted.
fn remove_dot_entries(dir: &Path) -> Result<(), ImageError> {
    for name in list_names(dir).into_iter().filter(|n| n.starts_with('.')) {
        let p = dir.join(name);
        fs::remove_dir_all(&p).map_err(ImageError::io("removing", &p))?;
    }
    Ok(())
}

fn load_records(dir: &Path) -> Result<HashMap<String, Image>, ImageError> {
    let mut images = HashMap::new();
    for name in list_names(dir) {
        let path = dir.join(&name);
        if name.starts_with('.') {
            // A record write that crashed before its rename.
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        match crate::store::read_json::<Image>(&path) {
            Ok(Some(img)) => {
                images.insert(img.id.clone(), img);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping unreadable image record"),
        }
    }
    Ok(images)
}

/// Allocated bytes and inodes under `root`, hard links counted once: the walk `fs_usage`
/// once did on every call, kept apart from `usage::measure` as the tests' oracle.
#[cfg(test)]
fn disk_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
            inodes += 1;
        }
        if m.is_dir() {
            stack.extend(
                fs::read_dir(&p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    (bytes, inodes)
}

#[path = "gc.rs"]
mod gc;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
