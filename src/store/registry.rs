//! The live set of one kind of object (pods, containers): records in memory and on disk,
//! names reserved while an object exists, and a lock per object for its operations.
//!
//! What the pod and container managers share lives here once:
//! - a name is reserved by a [`NameGuard`] that releases it when a failed create drops
//!   it, so the same request can be retried;
//! - every change to a record goes through [`Registry::save`], which writes the file off
//!   the async threads and in order, so the disk always holds the newest version;
//! - [`Entry::exclusive`] serializes lifecycle operations on one object (a stop waits for
//!   a start), [`Entry::shared`] lets work inside the object (creating containers in a
//!   pod) run side by side while keeping out an exclusive operation. Different objects
//!   never wait on each other.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{
    Mutex as AsyncMutex, OwnedRwLockWriteGuard, RwLock as AsyncRwLock, RwLockReadGuard,
};

use super::RecordDir;
use crate::error::{Error, Result, poisoned};
use crate::id;
use crate::task::blocking;

/// A record kept by a [`Registry`].
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn id(&self) -> &str;
    /// Unique among live objects of this kind (CRI metadata: name, attempt, ...).
    fn name_key(&self) -> String;
}

pub struct Entry<R> {
    record: Mutex<R>,
    op: Arc<AsyncRwLock<()>>,
    /// Held across a record write so two saves cannot land on disk out of order.
    write: AsyncMutex<()>,
}

impl<R: Record> Entry<R> {
    fn new(record: R) -> Arc<Self> {
        Arc::new(Entry {
            record: Mutex::new(record),
            op: Arc::new(AsyncRwLock::new(())),
            write: AsyncMutex::new(()),
        })
    }

    /// A copy of the record as it is now.
    pub fn get(&self) -> Result<R> {
        Ok(self.record.lock().map_err(poisoned)?.clone())
    }

    pub async fn exclusive(&self) -> Exclusive {
        self.op.clone().write_owned().await
    }

    pub async fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.op.read().await
    }
}

/// Entries loaded from disk, and object directories without a record.
pub type Loaded<R> = (Vec<Arc<Entry<R>>>, Vec<PathBuf>);

/// An exclusive hold of one object's operation lock.
pub type Exclusive = OwnedRwLockWriteGuard<()>;

/// A live object held for an exclusive operation, and its record as it was once held.
pub struct Held<R> {
    pub entry: Arc<Entry<R>>,
    pub record: R,
    /// Held for its drop: the lock is released with the hold.
    _op: Exclusive,
}

pub struct Registry<R> {
    what: &'static str,
    dir: RecordDir,
    entries: RwLock<HashMap<String, Arc<Entry<R>>>>,
    /// Name key -> id, including objects still being created.
    names: Arc<Mutex<HashMap<String, String>>>,
}

/// A reserved name; dropped without [`NameGuard::keep`], it is released.
pub struct NameGuard {
    names: Arc<Mutex<HashMap<String, String>>>,
    key: Option<String>,
}

impl NameGuard {
    /// The object now exists (or stays recorded): its name stays taken until it is
    /// removed.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        if let (Some(key), Ok(mut names)) = (self.key.take(), self.names.lock()) {
            names.remove(&key);
        }
    }
}

impl<R: Record> Registry<R> {
    pub fn new(what: &'static str, dir: PathBuf, file: &'static str) -> Self {
        Registry {
            what,
            dir: RecordDir::new(dir, file),
            entries: RwLock::new(HashMap::new()),
            names: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn object_dir(&self, id: &str) -> PathBuf {
        self.dir.object_dir(id)
    }

    /// The object with this id or unique id prefix.
    pub fn entry(&self, wanted: &str) -> Result<Arc<Entry<R>>> {
        let all = self.entries.read().map_err(poisoned)?;
        let id = id::resolve(self.what, wanted, all.keys())?;
        all.get(&id).cloned().ok_or(Error::NotFound {
            what: self.what,
            id,
        })
    }

    /// Like [`Registry::entry`], but an object that does not exist is `None`: for the
    /// calls CRI makes idempotent (stop and remove of something already gone).
    pub fn find(&self, wanted: &str) -> Result<Option<Arc<Entry<R>>>> {
        match self.entry(wanted) {
            Ok(e) => Ok(Some(e)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn get(&self, wanted: &str) -> Result<R> {
        self.entry(wanted)?.get()
    }

    /// For the calls CRI makes idempotent (stop, remove): the object held for an
    /// exclusive operation, or `None` when it does not exist or was removed while this
    /// call waited for its lock (saving it then would resurrect its record).
    pub async fn hold(&self, wanted: &str) -> Result<Option<Held<R>>> {
        let Some(entry) = self.find(wanted)? else {
            return Ok(None);
        };
        let op = entry.exclusive().await;
        let record = entry.get()?;
        if !self.is_current(&entry, record.id())? {
            return Ok(None);
        }
        Ok(Some(Held {
            entry,
            record,
            _op: op,
        }))
    }

    /// Whether `entry` is still the live object `id` (not removed while a caller waited
    /// for its lock): saving a removed object would resurrect its record.
    pub fn is_current(&self, entry: &Arc<Entry<R>>, id: &str) -> Result<bool> {
        let all = self.entries.read().map_err(poisoned)?;
        Ok(all.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)))
    }

    pub fn reserve_name(&self, key: String, id: &str) -> Result<NameGuard> {
        let mut names = self.names.lock().map_err(poisoned)?;
        if let Some(existing) = names.get(&key) {
            return Err(Error::AlreadyExists {
                what: self.what,
                name: key,
                id: existing.clone(),
            });
        }
        names.insert(key.clone(), id.to_string());
        Ok(NameGuard {
            names: self.names.clone(),
            key: Some(key),
        })
    }

    /// Records a new object (on disk first, then in memory) and returns its entry.
    pub async fn insert(&self, record: R) -> Result<Arc<Entry<R>>> {
        self.write(record.clone()).await?;
        let entry = Entry::new(record);
        let id = entry.get()?.id().to_string();
        self.entries
            .write()
            .map_err(poisoned)?
            .insert(id, entry.clone());
        Ok(entry)
    }

    /// Applies `change` to the record, on disk and then in memory.
    pub async fn save(&self, entry: &Entry<R>, change: impl FnOnce(&mut R)) -> Result<R> {
        let _write = entry.write.lock().await;
        let mut next = entry.get()?;
        change(&mut next);
        self.write(next.clone()).await?;
        *entry.record.lock().map_err(poisoned)? = next.clone();
        Ok(next)
    }

    async fn write(&self, record: R) -> Result<()> {
        let dir = self.dir.clone();
        blocking("record write", move || dir.save(record.id(), &record)).await
    }

    /// Drops the object from memory and disk, and frees its name.
    pub async fn forget(&self, record: &R) -> Result<()> {
        if let Ok(mut all) = self.entries.write() {
            all.remove(record.id());
        }
        if let Ok(mut names) = self.names.lock() {
            names.remove(&record.name_key());
        }
        let (dir, id) = (self.dir.clone(), record.id().to_string());
        blocking("record removal", move || dir.remove(&id)).await
    }

    /// Copies of the records that `keep` selects.
    pub fn select(&self, keep: impl Fn(&R) -> bool) -> Result<Vec<R>> {
        let all = self.entries.read().map_err(poisoned)?;
        let mut out = Vec::new();
        for e in all.values() {
            let r = e.record.lock().map_err(poisoned)?;
            if keep(&r) {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// Loads every record from disk into memory, names reserved; returns their entries
    /// and the object directories that have no record (a create cut short by a crash).
    pub fn load(&self) -> Result<Loaded<R>> {
        let (records, orphans) = self.dir.load_all::<R>()?;
        let mut loaded = Vec::with_capacity(records.len());
        for rec in records {
            self.names
                .lock()
                .map_err(poisoned)?
                .insert(rec.name_key(), rec.id().to_string());
            let id = rec.id().to_string();
            let entry = Entry::new(rec);
            self.entries
                .write()
                .map_err(poisoned)?
                .insert(id, entry.clone());
            loaded.push(entry);
        }
        Ok((loaded, orphans))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Obj {
        id: String,
        name: String,
        n: u32,
    }

    impl Record for Obj {
        fn id(&self) -> &str {
            &self.id
        }
        fn name_key(&self) -> String {
            self.name.clone()
        }
    }

    fn obj(id: &str, name: &str) -> Obj {
        Obj {
            id: id.into(),
            name: name.into(),
            n: 0,
        }
    }

    #[tokio::test]
    async fn a_dropped_name_guard_frees_the_name_for_a_retry() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::<Obj>::new("thing", t.path().into(), "obj.json");
        let guard = reg.reserve_name("web".into(), "a1").unwrap();
        let err = reg.reserve_name("web".into(), "b2").err().unwrap();
        assert!(matches!(err, Error::AlreadyExists { .. }));
        drop(guard);
        reg.reserve_name("web".into(), "b2").unwrap().keep();
        assert!(reg.reserve_name("web".into(), "c3").is_err(), "kept");
    }

    #[tokio::test]
    async fn saves_reach_disk_and_reload_with_names() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::<Obj>::new("thing", t.path().into(), "obj.json");
        reg.reserve_name("web".into(), "abc1").unwrap().keep();
        let e = reg.insert(obj("abc1", "web")).await.unwrap();
        reg.save(&e, |o| o.n = 7).await.unwrap();
        assert_eq!(reg.get("abc").unwrap().n, 7, "prefix lookup");
        assert!(reg.find("zzz").unwrap().is_none());

        let again = Registry::<Obj>::new("thing", t.path().into(), "obj.json");
        let (loaded, orphans) = again.load().unwrap();
        assert_eq!((loaded.len(), orphans.len()), (1, 0));
        assert_eq!(again.get("abc1").unwrap().n, 7);
        assert!(again.reserve_name("web".into(), "x").is_err());

        again.forget(&loaded[0].get().unwrap()).await.unwrap();
        assert!(again.find("abc1").unwrap().is_none());
        assert!(!t.path().join("abc1").exists());
        assert!(!again.is_current(&loaded[0], "abc1").unwrap());
        again.reserve_name("web".into(), "y").unwrap();
    }

    #[tokio::test]
    async fn a_hold_waits_for_the_holder_and_sees_a_removal_as_absence() {
        let t = tempfile::tempdir().unwrap();
        let reg = Arc::new(Registry::<Obj>::new("thing", t.path().into(), "obj.json"));
        assert!(reg.hold("abc1").await.unwrap().is_none(), "absent");
        reg.insert(obj("abc1", "web")).await.unwrap();
        let first = reg.hold("abc1").await.unwrap().expect("present");
        let waiter = tokio::spawn({
            let reg = reg.clone();
            async move { reg.hold("abc1").await.map(|h| h.is_some()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second hold waits for the first");
        reg.forget(&first.record).await.unwrap();
        drop(first);
        assert!(
            !waiter.await.unwrap().unwrap(),
            "removed while waiting: absent"
        );
    }
}
