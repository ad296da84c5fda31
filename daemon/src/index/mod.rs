//! The index: for each folder, this device's entries (by name and by
//! sequence), each peer's entries, the global winner per name and the
//! need-set, with counters, all kept incrementally.
//!
//! Writers change one name at a time and the global entry, need-set and
//! counters for that name are recomputed from the few devices' entries in
//! the same atomic batch, so no full recomputation ever happens. Each
//! folder has one writer at a time (a mutex); readers never block.
//!
//! A block map (hash → folder, name, offset) covers this device's files
//! (of at least one full block) in every folder, kept in the same batches,
//! so the puller finds a local copy of any block it needs.
//!
//! Only `db.rs` knows the storage engine.

pub mod codec;
pub mod db;
mod global;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use proto::message::{FileInfo, FileKind};
use proto::DeviceId;

pub use codec::{
    Counts, DeviceMeta, Entry, FolderMeta, Global, Summary, FLAG_IGNORED, FLAG_RECEIVE_ONLY,
};
pub use db::DbError;
use db::{key, Batch, Db};
pub use global::{equivalent, same_content};

/// The device number of this device in the index.
pub const LOCAL: u32 = 0;

/// The index database of one daemon.
#[derive(Clone)]
pub struct Index {
    db: Db,
    folders: Arc<Mutex<HashMap<String, Arc<FolderIndex>>>>,
}

impl Index {
    /// Opens the index in directory `path` with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, DbError> {
        let mut db = Db::open(path, cache_bytes)?;
        if db.schema() == 1 {
            build_block_map(&db)?;
            db.set_schema_current()?;
        }
        Ok(Self {
            db,
            folders: Arc::default(),
        })
    }

    /// Where this device has blocks with `hash`: (folder number, name,
    /// offset), at most `limit` of them. The places are as last indexed;
    /// a reader verifies what it reads.
    pub fn blocks_with(
        &self,
        hash: &[u8; 32],
        limit: usize,
    ) -> Result<Vec<(u32, String, u64)>, DbError> {
        let mut out = Vec::new();
        for r in self.db.scan(key::blocks(hash)).take(limit) {
            let (k, v) = r?;
            let bad = || DbError::Corrupt("block map entry".into());
            let (folder, name) = key::block_place(&k).ok_or_else(bad)?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
            let offset = <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| bad())?;
            out.push((folder, name, offset));
        }
        Ok(out)
    }

    /// The index of folder `id`, created (with a fresh index ID) on first use.
    pub fn folder(&self, id: &str) -> Result<Arc<FolderIndex>, DbError> {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = folders.get(id) {
            return Ok(f.clone());
        }
        let number = self.db.folder_number(id)?;
        let f = Arc::new(FolderIndex {
            db: self.db.clone(),
            number,
            id: id.to_string(),
            writer: Mutex::new(()),
            changes: tokio::sync::watch::channel(0).0,
            durable: tokio::sync::watch::channel(0).0,
        });
        if f.device_meta(LOCAL)?.index_id == 0 {
            let mut meta = f.device_meta(LOCAL)?;
            meta.index_id = new_index_id();
            let mut b = Batch::default();
            b.put(key::device_meta(number, LOCAL), meta.encode());
            self.db.apply(b)?;
            self.db.flush()?;
        }
        // What the database holds at open is on disk.
        let on_disk = f.device_meta(LOCAL)?.max_sequence;
        f.durable.send_replace(on_disk);
        folders.insert(id.to_string(), f.clone());
        Ok(f)
    }

    /// The number the index uses for a remote device.
    pub fn device_number(&self, id: &DeviceId) -> Result<u32, DbError> {
        self.db.device_number(id)
    }

    /// The device the index numbers `n`.
    pub fn device_by_number(&self, n: u32) -> Result<Option<DeviceId>, DbError> {
        self.db.device_by_number(n)
    }
}

/// Files smaller than this are not in the block map: fetching one again
/// costs a single round trip, and mapping them would grow the map (and the
/// database's memory, measured: +16 MiB at 20,000 small files) with the
/// number of files rather than the amount of data.
pub const MAP_MIN_SIZE: u64 = proto::block_size::MIN_BLOCK_SIZE as u64;

/// Puts a local file's blocks in the block map.
fn map_blocks(batch: &mut Batch, folder: u32, info: &FileInfo) {
    if info.kind != FileKind::File || info.deleted || info.size < MAP_MIN_SIZE {
        return;
    }
    for b in &info.blocks {
        batch.put(
            key::block(&b.hash, folder, info.name.as_str()),
            b.offset.to_be_bytes().to_vec(),
        );
    }
}

/// One block of a kept version's record: offset, then hash.
const VERSION_BLOCK_LEN: usize = 8 + 32;

/// Takes a local file's blocks out of the block map.
fn unmap_blocks(batch: &mut Batch, folder: u32, info: &FileInfo) {
    if info.size < MAP_MIN_SIZE {
        return;
    }
    for b in &info.blocks {
        batch.delete(key::block(&b.hash, folder, info.name.as_str()));
    }
}

/// Fills the block map from this device's entries (an index written before
/// the block map existed).
fn build_block_map(db: &Db) -> Result<(), DbError> {
    let mut batch = Batch::default();
    let mut n = 0;
    for r in db.scan(key::all_files()) {
        let (k, v) = r?;
        match key::file_owner(&k) {
            Some((folder, LOCAL)) => {
                map_blocks(&mut batch, folder, &Entry::decode(&v)?.info);
                n += 1;
            }
            _ => continue,
        }
        if n % 1000 == 0 {
            db.apply(std::mem::take(&mut batch))?;
        }
    }
    db.apply(batch)?;
    db.flush()
}

fn new_index_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// One folder's slice of the index.
pub struct FolderIndex {
    db: Db,
    number: u32,
    id: String,
    writer: Mutex<()>,
    /// Bumped after every committed write: pullers wait on it for new
    /// remote entries.
    changes: tokio::sync::watch::Sender<u64>,
    /// The highest local sequence known to be on disk. Index senders
    /// announce nothing above it: after a crash the index may fall back to
    /// an earlier state and reuse later sequence numbers, and a peer that
    /// had seen them under the same index ID would skip the real changes.
    durable: tokio::sync::watch::Sender<i64>,
}

impl FolderIndex {
    /// The folder ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The folder's number in the index (as in [`Index::blocks_with`]).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// A receiver that sees a new value after each committed write.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A receiver of the highest local sequence that is durable (see
    /// [`FolderIndex::flush`]): what may be announced to peers.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<i64> {
        self.durable.subscribe()
    }

    /// The entries that a device holds exactly at the global version of
    /// `name`, with the device numbers that hold it.
    pub fn global_file(&self, name: &str) -> Result<Option<(Global, FileInfo)>, DbError> {
        let Some(g) = self.global(name)? else {
            return Ok(None);
        };
        for &d in &g.devices {
            if let Some(e) = self.get(d, name)? {
                if e.info.version == g.version {
                    return Ok(Some((g, e.info)));
                }
            }
        }
        Ok(None)
    }

    /// A device's meta (zeroes if it has none).
    pub fn device_meta(&self, device: u32) -> Result<DeviceMeta, DbError> {
        match self.db.get(&key::device_meta(self.number, device))? {
            Some(v) => DeviceMeta::decode(&v),
            None => Ok(DeviceMeta::default()),
        }
    }

    /// The folder's global and need counters.
    pub fn folder_meta(&self) -> Result<FolderMeta, DbError> {
        match self.db.get(&key::folder_meta(self.number))? {
            Some(v) => FolderMeta::decode(&v),
            None => Ok(FolderMeta::default()),
        }
    }

    /// A device's entry for `name`.
    pub fn get(&self, device: u32, name: &str) -> Result<Option<Entry>, DbError> {
        self.db
            .get(&key::file(self.number, device, name))?
            .map(|v| Entry::decode(&v))
            .transpose()
    }

    /// The flags of a device's entry for `name`, without decoding the rest
    /// (the block server asks on every request).
    pub fn flags(&self, device: u32, name: &str) -> Result<Option<u32>, DbError> {
        self.db
            .get_with(&key::file(self.number, device, name), Entry::decode_flags)?
            .transpose()
    }

    /// Every entry of a device, in name order.
    pub fn entries(&self, device: u32) -> impl Iterator<Item = Result<Entry, DbError>> + use<> {
        self.db
            .scan(key::files(self.number, device))
            .map(|r| r.and_then(|(_, v)| Entry::decode(&v)))
    }

    /// A device's entry for `path` and every entry under it, in name order.
    pub fn entries_under(
        &self,
        device: u32,
        path: &str,
    ) -> impl Iterator<Item = Result<Entry, DbError>> + use<> {
        let itself = self.get(device, path).transpose();
        let under = self
            .db
            .scan(key::file(self.number, device, &format!("{path}/")))
            .map(|r| r.and_then(|(_, v)| Entry::decode(&v)));
        itself.into_iter().chain(under)
    }

    /// The names of a device's entries directly in directory `dir` (empty:
    /// the root), in name order, without reading what is under them: an
    /// entry's whole subtree is skipped with one seek. A name appears even
    /// if only entries under it are recorded.
    pub fn child_names(&self, device: u32, dir: &str) -> Result<Vec<String>, DbError> {
        let base = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let prefix = key::file(self.number, device, &base);
        let mut out: Vec<String> = Vec::new();
        let mut from = prefix.clone();
        'seek: loop {
            for k in self.db.keys_from(prefix.clone(), from.clone()) {
                let k = k?;
                let rest = &k[prefix.len()..];
                let slash = rest.iter().position(|&b| b == b'/');
                let child = &rest[..slash.unwrap_or(rest.len())];
                if out.last().map(String::as_bytes) != Some(child) {
                    let name = String::from_utf8(child.to_vec())
                        .map_err(|_| DbError::Corrupt("name".into()))?;
                    out.push(name);
                }
                if slash.is_some() {
                    // Past `child/…`: '0' is the byte after '/'.
                    from = [&prefix[..], child, b"0"].concat();
                    continue 'seek;
                }
            }
            // `a/…` sorts after `a.txt`: `a` may have come twice.
            out.sort_unstable();
            out.dedup();
            return Ok(out);
        }
    }

    /// This device's entries with a sequence above `after`, in sequence order.
    pub fn local_since(&self, after: i64) -> impl Iterator<Item = Result<Entry, DbError>> + '_ {
        self.db
            .scan_from(
                key::seqs(self.number),
                key::seq(self.number, after.saturating_add(1)),
            )
            .map(move |r| {
                let (_, name) = r?;
                let name = String::from_utf8(name).map_err(|_| DbError::Corrupt("name".into()))?;
                self.get(LOCAL, &name)?
                    .ok_or_else(|| DbError::Corrupt(format!("sequence points at missing {name}")))
            })
    }

    /// The global entry for `name`.
    pub fn global(&self, name: &str) -> Result<Option<Global>, DbError> {
        self.db
            .get(&key::global(self.number, name))?
            .map(|v| Global::decode(&v))
            .transpose()
    }

    /// The names this device needs with what each is (file, directory,
    /// deletion, size), in name order.
    pub fn need_summaries(
        &self,
    ) -> impl Iterator<Item = Result<(String, Summary), DbError>> + use<> {
        self.db.scan(key::needs(self.number)).map(|r| {
            let (k, v) = r?;
            let name = String::from_utf8(key::folder_name(&k).to_vec())
                .map_err(|_| DbError::Corrupt("name".into()))?;
            Ok((name, Summary::decode(&v)?))
        })
    }

    /// Makes every change so far durable. Until then a crash may lose whole
    /// recent batches (never parts of one): the index falls behind the disk
    /// and the next scan redoes the work.
    pub fn flush(&self) -> Result<(), DbError> {
        // Read before the flush: whatever was committed by then is in it.
        let committed = self.device_meta(LOCAL)?.max_sequence;
        self.db.flush()?;
        self.durable.send_if_modified(|d| {
            let newer = committed > *d;
            *d = (*d).max(committed);
            newer
        });
        Ok(())
    }

    /// Puts the blocks of a kept version (a copy, named `stored`, of the
    /// file `info` describes) in the block map, beside the record that
    /// takes them out again ([`FolderIndex::unmap_version`]).
    pub fn map_version(&self, stored: &str, info: &FileInfo) -> Result<(), DbError> {
        if info.kind != FileKind::File || info.deleted || info.size < MAP_MIN_SIZE {
            return Ok(());
        }
        let mut batch = Batch::default();
        let mut record = Vec::with_capacity(info.blocks.len() * VERSION_BLOCK_LEN);
        for b in &info.blocks {
            batch.put(
                key::block(&b.hash, self.number, stored),
                b.offset.to_be_bytes().to_vec(),
            );
            record.extend_from_slice(&b.offset.to_be_bytes());
            record.extend_from_slice(&b.hash);
        }
        batch.put(key::version_blocks(self.number, stored), record);
        self.db.apply(batch)
    }

    /// Takes a kept version's blocks out of the block map (it was removed
    /// or restored, or is about to be replaced).
    pub fn unmap_version(&self, stored: &str) -> Result<(), DbError> {
        let k = key::version_blocks(self.number, stored);
        let Some(record) = self.db.get(&k)? else {
            return Ok(());
        };
        let mut batch = Batch::default();
        for c in record.chunks_exact(VERSION_BLOCK_LEN) {
            if let Ok(hash) = <[u8; 32]>::try_from(&c[8..]) {
                batch.delete(key::block(&hash, self.number, stored));
            }
        }
        batch.delete(k);
        self.db.apply(batch)
    }

    /// Records local changes. Each gets the next sequence number; global
    /// entries, the need-set and counters follow in the same atomic batch.
    /// Returns the changes with their sequences.
    pub fn update_local(&self, mut changes: Vec<Entry>) -> Result<Vec<Entry>, DbError> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        dedup_by_name(&mut changes);
        let mut tx = Tx::new(self)?;
        for mut e in changes {
            let name = e.info.name.to_string();
            let old = self.get(LOCAL, &name)?;
            let mut meta = *tx.meta(LOCAL)?;
            if let Some(old) = &old {
                meta.counts.apply(Summary::of(&old.info), false);
                tx.batch.delete(key::seq(self.number, old.info.sequence));
                unmap_blocks(&mut tx.batch, self.number, &old.info);
            }
            map_blocks(&mut tx.batch, self.number, &e.info);
            meta.max_sequence += 1;
            e.info.sequence = meta.max_sequence;
            meta.counts.apply(Summary::of(&e.info), true);
            *tx.meta(LOCAL)? = meta;
            tx.batch.put(
                key::seq(self.number, e.info.sequence),
                name.clone().into_bytes(),
            );
            tx.batch
                .put(key::file(self.number, LOCAL, &name), e.encode());
            if tx.devices == [LOCAL] {
                tx.local_only(&name, old.as_ref().map(|o| &o.info), &e.info);
            } else {
                tx.recompute(&name, LOCAL, Some(&e.info))?;
            }
            tx.done.push(e);
        }
        tx.commit()
    }

    /// Records a remote device's entries (an IndexUpdate; for an Index,
    /// call [`FolderIndex::drop_device`] first).
    pub fn update_remote(&self, device: u32, mut files: Vec<FileInfo>) -> Result<(), DbError> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut dedup: Vec<Entry> = files
            .drain(..)
            .map(|info| Entry {
                info,
                inode: 0,
                flags: 0,
            })
            .collect();
        dedup_by_name(&mut dedup);
        let mut tx = Tx::new(self)?;
        for e in dedup {
            let name = e.info.name.to_string();
            let old = self.get(device, &name)?;
            let meta = tx.meta(device)?;
            if let Some(old) = &old {
                meta.counts.apply(Summary::of(&old.info), false);
            }
            meta.counts.apply(Summary::of(&e.info), true);
            meta.max_sequence = meta.max_sequence.max(e.info.sequence);
            tx.batch
                .put(key::file(self.number, device, &name), e.encode());
            tx.recompute(&name, device, Some(&e.info))?;
        }
        tx.commit().map(drop)
    }

    /// Forgets everything a remote device told us about this folder.
    pub fn drop_device(&self, device: u32) -> Result<(), DbError> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut tx = Tx::new(self)?;
        for r in self.db.scan(key::files(self.number, device)) {
            let (k, _) = r?;
            let name = String::from_utf8(key::file_name(&k).to_vec())
                .map_err(|_| DbError::Corrupt("name".into()))?;
            tx.batch.delete(k);
            tx.recompute(&name, device, None)?;
        }
        let meta = tx.meta(device)?;
        *meta = DeviceMeta {
            index_id: meta.index_id,
            ..DeviceMeta::default()
        };
        tx.commit().map(drop)
    }

    /// Sets the index ID we hold for a remote device's index.
    pub fn set_index_id(&self, device: u32, index_id: u64) -> Result<(), DbError> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut tx = Tx::new(self)?;
        tx.meta(device)?.index_id = index_id;
        tx.commit().map(drop)
    }

    /// Devices with any state in this folder (this device included).
    fn devices(&self) -> Result<Vec<u32>, DbError> {
        let mut out = vec![LOCAL];
        for r in self.db.scan(key::device_metas(self.number)) {
            let (k, _) = r?;
            if let Some(d) = key::device_of_meta(&k).filter(|&d| d != LOCAL) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Keeps the last change per name, in first-seen order.
fn dedup_by_name(changes: &mut Vec<Entry>) {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        last.insert(c.info.name.to_string(), i);
    }
    if last.len() == changes.len() {
        return;
    }
    let mut i = 0;
    changes.retain(|c| {
        let keep = last.get(c.info.name.as_str()) == Some(&i);
        i += 1;
        keep
    });
}

/// One write transaction: a batch plus the metas it changes.
struct Tx<'a> {
    f: &'a FolderIndex,
    batch: Batch,
    metas: HashMap<u32, DeviceMeta>,
    folder: FolderMeta,
    devices: Vec<u32>,
    done: Vec<Entry>,
}

impl<'a> Tx<'a> {
    fn new(f: &'a FolderIndex) -> Result<Self, DbError> {
        Ok(Self {
            f,
            batch: Batch::default(),
            metas: HashMap::new(),
            folder: f.folder_meta()?,
            devices: f.devices()?,
            done: Vec::new(),
        })
    }

    fn meta(&mut self, device: u32) -> Result<&mut DeviceMeta, DbError> {
        if !self.metas.contains_key(&device) {
            let m = self.f.device_meta(device)?;
            self.metas.insert(device, m);
            if !self.devices.contains(&device) {
                self.devices.push(device);
            }
        }
        Ok(self.metas.entry(device).or_default())
    }

    /// Recomputes `name`'s global entry and need status, given that
    /// `changed` now holds `new` (None: removed).
    fn recompute(
        &mut self,
        name: &str,
        changed: u32,
        new: Option<&FileInfo>,
    ) -> Result<(), DbError> {
        let n = self.f.number;
        let mut holders: Vec<(u32, FileInfo)> = Vec::with_capacity(self.devices.len());
        for &d in &self.devices {
            if d == changed {
                if let Some(fi) = new {
                    holders.push((d, fi.clone()));
                }
            } else if let Some(e) = self.f.get(d, name)? {
                holders.push((d, e.info));
            }
        }
        let winner = holders
            .iter()
            .fold(None::<&FileInfo>, |best, (_, fi)| match best {
                Some(b) if !global::beats(fi, b) => Some(b),
                _ => Some(fi),
            })
            .cloned();

        let old_global = self.f.global(name)?;
        if let Some(g) = &old_global {
            self.folder.global.apply(g.summary, false);
        }
        let gkey = key::global(n, name);
        match &winner {
            Some(w) => {
                // Only devices whose entry is as valid as the winner hold
                // it: an invalid entry (ignored there, a receive-only
                // change) at the same version has no content to give, and
                // taking it as the source would replace the file with an
                // empty one (Syncthing keeps invalid holders apart too).
                let g = Global {
                    version: w.version.clone(),
                    devices: holders
                        .iter()
                        .filter(|(_, fi)| fi.version == w.version && fi.invalid == w.invalid)
                        .map(|(d, _)| *d)
                        .collect(),
                    summary: Summary::of(w),
                };
                self.folder.global.apply(g.summary, true);
                self.batch.put(gkey, g.encode());
            }
            None => self.batch.delete(gkey),
        }

        let nkey = key::need(n, name);
        if let Some(v) = self.f.db.get(&nkey)? {
            self.folder.need.apply(Summary::decode(&v)?, false);
        }
        let local = holders.iter().find(|(d, _)| *d == LOCAL).map(|(_, fi)| fi);
        match winner.filter(|w| global::needs(local, w)) {
            Some(w) => {
                let s = Summary::of(&w);
                self.folder.need.apply(s, true);
                self.batch.put(nkey, s.encode());
            }
            None => self.batch.delete(nkey),
        }
        Ok(())
    }

    /// The global entry of a name when this device is the only one with any
    /// state in the folder: it is the local entry, and nothing is needed.
    /// Saves the reads `recompute` would make (the common case of a scan).
    fn local_only(&mut self, name: &str, old: Option<&FileInfo>, new: &FileInfo) {
        if let Some(o) = old {
            self.folder.global.apply(Summary::of(o), false);
        }
        let g = Global {
            version: new.version.clone(),
            devices: vec![LOCAL],
            summary: Summary::of(new),
        };
        self.folder.global.apply(g.summary, true);
        self.batch.put(key::global(self.f.number, name), g.encode());
    }

    fn commit(mut self) -> Result<Vec<Entry>, DbError> {
        for (d, m) in &self.metas {
            self.batch
                .put(key::device_meta(self.f.number, *d), m.encode());
        }
        self.batch
            .put(key::folder_meta(self.f.number), self.folder.encode());
        self.f.db.apply(self.batch)?;
        self.f.changes.send_modify(|n| *n += 1);
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests;
