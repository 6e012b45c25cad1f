//! Removal and garbage collection of images' blobs and snapshots, and their uncounting.

use super::{ImageStore, find, list_names};
use crate::image::usage;
use crate::image::{Image, ImageError};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::PoisonError;

impl ImageStore {
    /// RemoveImage: [`ImageStore::remove`] on the blocking pool (it deletes and fsyncs).
    pub async fn remove_image(
        self: &std::sync::Arc<Self>,
        reference_or_id: String,
        keep: HashSet<String>,
    ) -> Result<(), ImageError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.remove(&reference_or_id, &keep))
            .await
            .map_err(|e| ImageError::Task(format!("image removal: {e}")))?
    }

    /// Removes the image and collects blobs and snapshots nothing references any more.
    pub fn remove(&self, reference_or_id: &str, keep: &HashSet<String>) -> Result<(), ImageError> {
        let mut images = self.images.write().unwrap_or_else(PoisonError::into_inner);
        let Some(id) = find(&images, reference_or_id).map(|i| i.id.clone()) else {
            return Ok(());
        };
        let path = self.record_path(&id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ImageError::io("removing", path)(e));
            }
            _ => self.usage.forget(&path),
        }
        images.remove(&id);
        self.collect_garbage(&images, keep);
        Ok(())
    }

    /// Collects blobs and snapshots no image references and `keep` does not name: for
    /// the daemon to call once it knows its containers (e.g. after restart recovery).
    pub fn prune(&self, keep: &HashSet<String>) {
        let images = self.images.read().unwrap_or_else(PoisonError::into_inner);
        self.collect_garbage(&images, keep);
    }

    /// Best effort: what cannot be deleted now is retried at the next removal.
    fn collect_garbage(&self, images: &HashMap<String, Image>, keep: &HashSet<String>) {
        let leased = self.leases.table();
        let mut used: HashSet<String> = leased.keys().cloned().collect();
        for img in images.values() {
            used.insert(img.id.clone());
            used.extend(img.layer_digests.iter().cloned());
            used.extend(img.chain_ids.iter().cloned());
        }
        used.extend(keep.iter().map(|k| with_sha256(k)));
        match self.blobs.list() {
            Ok(blobs) => {
                for d in blobs.iter().filter(|d| !used.contains(*d)) {
                    if let Err(e) = self.blobs.remove(d) {
                        tracing::warn!(error = %e, "image garbage collection");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "image garbage collection"),
        }
        for hex in list_names(&self.snapshots) {
            if hex.starts_with('.') || used.contains(&with_sha256(&hex)) {
                continue;
            }
            let dir = self.snapshots.join(&hex);
            match fs::remove_dir_all(&dir) {
                Ok(()) => self.usage.forget(&dir),
                Err(e) => {
                    tracing::warn!(path = %dir.display(), error = %e, "removing unused snapshot");
                    // Partly deleted: count what is left until the next collection.
                    self.usage.set(dir.clone(), usage::measure(&dir));
                }
            }
        }
        drop(leased);
    }
}

fn with_sha256(s: &str) -> String {
    if s.starts_with("sha256:") {
        s.to_string()
    } else {
        format!("sha256:{s}")
    }
}
