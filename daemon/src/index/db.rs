//! The only module that knows sled: the key layout, the schema version, and
//! a narrow get / scan / atomic-batch interface. Replacing sled means
//! rewriting this file alone.
//!
//! Everything lives in one sled tree so that one batch (a file entry, its
//! sequence key, the global entry, the need-set and the counters) is applied
//! atomically: after a crash the index is some earlier consistent state.
//!
//! Keys (integers big-endian so ranges sort numerically):
//! ```text
//! 00                                   schema version (u32)
//! 01 folder-id                         folder number (u32)
//! 02 device-id (32 bytes)              device number (u32; 0 = this device)
//! 03 'F' | 03 'D'                      next folder / device number
//! 04 device number (u32)               device ID (32 bytes)
//! 10 folder device name                file entry (codec::Entry)
//! 11 folder seq(u64)                   name, for this device's entries only
//! 12 folder name                       global winner (codec::Global)
//! 13 folder name                       need-set member (codec::Summary)
//! 14 folder device                     per-device meta (codec::DeviceMeta)
//! 15 folder                            folder meta (codec::FolderMeta)
//! 16 hash[..8] folder name             block map: offset (u64) of a block
//!                                      whose hash starts so, in this
//!                                      device's file (readers verify)
//! 17 folder name                       a kept version's blocks in the block
//!                                      map: (offset u64, hash) each, so
//!                                      they can be taken out again
//! ```

use std::path::Path;

/// Version of the key layout and record formats; bump on any change.
pub const SCHEMA_VERSION: u32 = 2;

/// Older layouts that [`Db::open`] accepts, for the caller to migrate (see
/// [`Db::schema`]): version 1 lacked the block map.
const MIGRATABLE: &[u32] = &[1];

const SCHEMA: u8 = 0x00;
const FOLDER_NUM: u8 = 0x01;
const DEVICE_NUM: u8 = 0x02;
const NEXT_NUM: u8 = 0x03;
const DEVICE_BY_NUM: u8 = 0x04;
const FILE: u8 = 0x10;
const SEQ: u8 = 0x11;
const GLOBAL: u8 = 0x12;
const NEED: u8 = 0x13;
const DEVICE_META: u8 = 0x14;
const FOLDER_META: u8 = 0x15;
const BLOCK: u8 = 0x16;
const VERSION_BLOCKS: u8 = 0x17;

/// Why the index database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// sled failed (I/O, corruption, or the database is locked).
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
    /// The database was written by a newer or older layout.
    #[error("index database schema {found} is not {SCHEMA_VERSION}: remove the index directory to rebuild it by rescanning")]
    Schema {
        /// The version found.
        found: u32,
    },
    /// A stored record does not decode.
    #[error("index database record is corrupt: {0}")]
    Corrupt(String),
}

/// An open index database.
#[derive(Clone)]
pub struct Db {
    db: sled::Db,
    tree: sled::Tree,
    found_schema: u32,
}

/// Writes to apply together, atomically.
#[derive(Default)]
pub struct Batch(sled::Batch);

impl Batch {
    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert(key, value);
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.0.remove(key);
    }
}

impl Db {
    /// Opens (or creates) the database in directory `path`. `cache_bytes`
    /// bounds sled's page cache, which is most of the daemon's memory.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, DbError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            // We flush after each batch ourselves; no background timer.
            .flush_every_ms(None)
            .open()?;
        let tree = db.open_tree("index")?;
        let found_schema = match tree.get([SCHEMA])? {
            None => {
                tree.insert([SCHEMA], &SCHEMA_VERSION.to_be_bytes())?;
                tree.flush()?;
                SCHEMA_VERSION
            }
            Some(v) => {
                let found = decode_u32(&v)?;
                if found != SCHEMA_VERSION && !MIGRATABLE.contains(&found) {
                    return Err(DbError::Schema { found });
                }
                found
            }
        };
        Ok(Self {
            db,
            tree,
            found_schema,
        })
    }

    /// The layout version the database had when opened: below
    /// [`SCHEMA_VERSION`], the caller migrates and then calls
    /// [`Db::set_schema_current`].
    pub fn schema(&self) -> u32 {
        self.found_schema
    }

    /// Records that the database now has the current layout.
    pub fn set_schema_current(&mut self) -> Result<(), DbError> {
        self.tree.insert([SCHEMA], &SCHEMA_VERSION.to_be_bytes())?;
        self.db.flush()?;
        self.found_schema = SCHEMA_VERSION;
        Ok(())
    }

    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// `f` of the value at `key`, read in place (no copy).
    pub fn get_with<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> T,
    ) -> Result<Option<T>, DbError> {
        Ok(self.tree.get(key)?.map(|v| f(&v)))
    }

    /// All pairs whose key starts with `prefix`, in key order.
    pub fn scan(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), DbError>> + use<> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
    }

    /// Pairs with keys in `from..` that still start with `prefix`.
    pub fn scan_from(
        &self,
        prefix: Vec<u8>,
        from: Vec<u8>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), DbError>> + use<> {
        self.tree
            .range(from..)
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into))
    }

    /// The keys in `from..` that still start with `prefix` (values are not
    /// copied).
    pub fn keys_from(
        &self,
        prefix: Vec<u8>,
        from: Vec<u8>,
    ) -> impl Iterator<Item = Result<Vec<u8>, DbError>> + use<> {
        self.tree
            .range(from..)
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|r| r.map(|(k, _)| k.to_vec()).map_err(Into::into))
    }

    /// Applies a batch atomically. It is durable after the next
    /// [`Db::flush`]; a crash before that loses whole batches, never parts.
    pub fn apply(&self, batch: Batch) -> Result<(), DbError> {
        self.tree.apply_batch(batch.0)?;
        Ok(())
    }

    /// Makes every applied batch durable.
    pub fn flush(&self) -> Result<(), DbError> {
        self.db.flush()?;
        Ok(())
    }

    /// The number for `key_kind`'s `name`, allocated on first use.
    fn number(&self, kind: u8, next: u8, name: &[u8]) -> Result<u32, DbError> {
        let key = [&[kind][..], name].concat();
        if let Some(v) = self.tree.get(&key)? {
            return decode_u32(&v);
        }
        let next_key = [NEXT_NUM, next];
        let n = match self.tree.get(next_key)? {
            Some(v) => decode_u32(&v)?,
            None => 1, // Device 0 is this device.
        };
        let mut b = sled::Batch::default();
        b.insert(key.as_slice(), &n.to_be_bytes());
        b.insert(&next_key, &(n + 1).to_be_bytes());
        if kind == DEVICE_NUM {
            let rev = [&[DEVICE_BY_NUM][..], &n.to_be_bytes()].concat();
            b.insert(rev.as_slice(), name);
        }
        self.tree.apply_batch(b)?;
        self.db.flush()?;
        Ok(n)
    }

    /// The number of folder `id` (stable for the database's life).
    pub fn folder_number(&self, id: &str) -> Result<u32, DbError> {
        self.number(FOLDER_NUM, b'F', id.as_bytes())
    }

    /// The number of a remote device.
    pub fn device_number(&self, id: &proto::DeviceId) -> Result<u32, DbError> {
        self.number(DEVICE_NUM, b'D', id.as_bytes())
    }

    /// The device with number `n` (none for 0, this device).
    pub fn device_by_number(&self, n: u32) -> Result<Option<proto::DeviceId>, DbError> {
        let key = [&[DEVICE_BY_NUM][..], &n.to_be_bytes()].concat();
        match self.tree.get(key)? {
            Some(v) => proto::DeviceId::try_from(v.as_ref())
                .map(Some)
                .map_err(|e| DbError::Corrupt(e.to_string())),
            None => Ok(None),
        }
    }
}

fn decode_u32(v: &[u8]) -> Result<u32, DbError> {
    <[u8; 4]>::try_from(v)
        .map(u32::from_be_bytes)
        .map_err(|_| DbError::Corrupt("number".into()))
}

/// Key builders: the layout above, in one place.
pub mod key {
    use super::*;

    fn with(kind: u8, folder: u32, rest: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(5 + rest.iter().map(|r| r.len()).sum::<usize>());
        k.push(kind);
        k.extend_from_slice(&folder.to_be_bytes());
        for r in rest {
            k.extend_from_slice(r);
        }
        k
    }

    /// A device's entry for `name`.
    pub fn file(folder: u32, device: u32, name: &str) -> Vec<u8> {
        with(FILE, folder, &[&device.to_be_bytes(), name.as_bytes()])
    }

    /// Prefix of all of a device's entries.
    pub fn files(folder: u32, device: u32) -> Vec<u8> {
        with(FILE, folder, &[&device.to_be_bytes()])
    }

    /// The name part of a file key.
    pub fn file_name(key: &[u8]) -> &[u8] {
        key.get(9..).unwrap_or_default()
    }

    /// This device's sequence key.
    pub fn seq(folder: u32, seq: i64) -> Vec<u8> {
        with(SEQ, folder, &[&(seq as u64).to_be_bytes()])
    }

    /// Prefix of this device's sequence keys.
    pub fn seqs(folder: u32) -> Vec<u8> {
        with(SEQ, folder, &[])
    }

    /// The global entry for `name`.
    pub fn global(folder: u32, name: &str) -> Vec<u8> {
        with(GLOBAL, folder, &[name.as_bytes()])
    }

    /// The need-set entry for `name`.
    pub fn need(folder: u32, name: &str) -> Vec<u8> {
        with(NEED, folder, &[name.as_bytes()])
    }

    /// Prefix of the need-set.
    pub fn needs(folder: u32) -> Vec<u8> {
        with(NEED, folder, &[])
    }

    /// The name part of a global or need key.
    pub fn folder_name(key: &[u8]) -> &[u8] {
        key.get(5..).unwrap_or_default()
    }

    /// Per-device meta.
    pub fn device_meta(folder: u32, device: u32) -> Vec<u8> {
        with(DEVICE_META, folder, &[&device.to_be_bytes()])
    }

    /// Prefix of every device's meta in a folder.
    pub fn device_metas(folder: u32) -> Vec<u8> {
        with(DEVICE_META, folder, &[])
    }

    /// The device number in a device-meta key.
    pub fn device_of_meta(key: &[u8]) -> Option<u32> {
        key.get(5..9)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    }

    /// Folder meta.
    pub fn folder_meta(folder: u32) -> Vec<u8> {
        with(FOLDER_META, folder, &[])
    }

    /// Prefix of every device's entries in every folder.
    pub fn all_files() -> Vec<u8> {
        vec![FILE]
    }

    /// The folder and device numbers of a file key.
    pub fn file_owner(key: &[u8]) -> Option<(u32, u32)> {
        let n = |r: std::ops::Range<usize>| {
            key.get(r)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
        };
        Some((n(1..5)?, n(5..9)?))
    }

    /// How much of a hash the block map keeps: enough to tell blocks apart
    /// (readers verify the whole hash), short to keep the map small.
    const BLOCK_HASH_LEN: usize = 8;

    /// The block map entry for a block of `hash` in `folder`'s `name`.
    pub fn block(hash: &[u8; 32], folder: u32, name: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + BLOCK_HASH_LEN + 4 + name.len());
        k.push(BLOCK);
        k.extend_from_slice(&hash[..BLOCK_HASH_LEN]);
        k.extend_from_slice(&folder.to_be_bytes());
        k.extend_from_slice(name.as_bytes());
        k
    }

    /// The record of a kept version's block map entries.
    pub fn version_blocks(folder: u32, name: &str) -> Vec<u8> {
        with(VERSION_BLOCKS, folder, &[name.as_bytes()])
    }

    /// Prefix of the block map entries for `hash`.
    pub fn blocks(hash: &[u8; 32]) -> Vec<u8> {
        [&[BLOCK][..], &hash[..BLOCK_HASH_LEN]].concat()
    }

    /// The folder number and name of a block map key.
    pub fn block_place(key: &[u8]) -> Option<(u32, &[u8])> {
        let at = 1 + BLOCK_HASH_LEN;
        let folder = key
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)?;
        Some((folder, key.get(at + 4..)?))
    }
}

/// `open` retried while sled's threads still hold the lock of a handle just
/// dropped in this process (a new process never waits: the lock dies with
/// the old one).
#[cfg(test)]
pub(crate) fn retry_while_locked<T>(
    mut open: impl FnMut() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database directory whose recorded schema is `version`.
    fn written_with_schema(version: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        let db = sled::open(&path).expect("sled");
        db.open_tree("index")
            .expect("tree")
            .insert([SCHEMA], &version.to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
        (dir, path)
    }

    #[test]
    fn a_different_schema_is_refused() {
        let (_dir, path) = written_with_schema(99);
        let err = retry_while_locked(|| Db::open(&path, 1 << 20))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("schema 99"), "{err}");
    }

    #[test]
    fn an_older_schema_opens_for_migration() {
        let (_dir, path) = written_with_schema(1);
        let mut db = retry_while_locked(|| Db::open(&path, 1 << 20)).expect("opens");
        assert_eq!(db.schema(), 1);
        db.set_schema_current().expect("set");
        assert_eq!(db.schema(), SCHEMA_VERSION);
        // Reopening at once could race sled's lock release; the stored
        // version is what a reopen would read.
        assert_eq!(
            db.get(&[SCHEMA]).expect("get"),
            Some(SCHEMA_VERSION.to_be_bytes().to_vec())
        );
    }
}
