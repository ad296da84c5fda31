//! Byte formats of the index records. File entries are the BEP FileInfo
//! protobuf behind a small local header (data only this device needs, never
//! sent); the rest are fixed little-endian layouts.

use proto::message::{FileInfo, FileKind};
use proto::version::Counter;
use proto::{ShortId, Vector};

use super::db::DbError;

/// Entry flag: matched by an ignore pattern (sent as invalid).
pub const FLAG_IGNORED: u32 = 1;
/// Entry flag: a local change in a receive-only folder. Invalid here too,
/// so it never wins; sent invalid with an empty version (Syncthing's
/// `FlagLocalReceiveOnly`).
pub const FLAG_RECEIVE_ONLY: u32 = 2;

/// One device's entry for one file, with this device's local-only data.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// What peers see.
    pub info: FileInfo,
    /// Inode when last scanned (0 for remote entries): a replaced file with
    /// the same size and mtime is still re-hashed.
    pub inode: u64,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Counts of a set of entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Regular files (not deleted, not invalid).
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Tombstones.
    pub deleted: u64,
    /// Bytes in the regular files.
    pub bytes: u64,
}

/// What the counters need to know of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// File, directory or symlink.
    pub kind: FileKind,
    /// A tombstone.
    pub deleted: bool,
    /// Not to be synced.
    pub invalid: bool,
    /// Size in bytes.
    pub size: u64,
}

impl Summary {
    /// The summary of `f`.
    pub fn of(f: &FileInfo) -> Self {
        Self {
            kind: f.kind,
            deleted: f.deleted,
            invalid: f.invalid,
            size: f.size,
        }
    }
}

impl Counts {
    /// Counts `s` in (`sign` = 1) or out (`sign` = -1).
    pub fn apply(&mut self, s: Summary, add: bool) {
        if s.invalid {
            return;
        }
        let field = match (s.deleted, s.kind) {
            (true, _) => &mut self.deleted,
            (false, FileKind::File) => {
                self.bytes = if add {
                    self.bytes.saturating_add(s.size)
                } else {
                    self.bytes.saturating_sub(s.size)
                };
                &mut self.files
            }
            (false, FileKind::Directory) => &mut self.directories,
            (false, FileKind::Symlink) => &mut self.symlinks,
        };
        *field = if add {
            field.saturating_add(1)
        } else {
            field.saturating_sub(1)
        };
    }
}

/// A device's state in one folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceMeta {
    /// The index ID of the device's index (ours: generated once).
    pub index_id: u64,
    /// Highest sequence stored.
    pub max_sequence: i64,
    /// Counts of its entries.
    pub counts: Counts,
}

/// A folder's derived totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderMeta {
    /// Counts of the global winners.
    pub global: Counts,
    /// Counts of what this device needs.
    pub need: Counts,
}

/// The winning version of one name across devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// The winner's version.
    pub version: Vector,
    /// Devices that have exactly that version (numbers, 0 = this device).
    pub devices: Vec<u32>,
    /// The winner's summary.
    pub summary: Summary,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DbError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| DbError::Corrupt("short record".into()))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u64(&mut self) -> Result<u64, DbError> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, DbError> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u8(&mut self) -> Result<u8, DbError> {
        self.take::<1>().map(|b| b[0])
    }
}

fn kind_byte(k: FileKind) -> u8 {
    match k {
        FileKind::File => 0,
        FileKind::Directory => 1,
        FileKind::Symlink => 2,
    }
}

fn put_summary(out: &mut Vec<u8>, s: Summary) {
    out.push(kind_byte(s.kind) | (u8::from(s.deleted) << 4) | (u8::from(s.invalid) << 5));
    out.extend_from_slice(&s.size.to_le_bytes());
}

fn read_summary(r: &mut Reader<'_>) -> Result<Summary, DbError> {
    let b = r.u8()?;
    let kind = match b & 0x0f {
        0 => FileKind::File,
        1 => FileKind::Directory,
        2 => FileKind::Symlink,
        k => return Err(DbError::Corrupt(format!("kind {k}"))),
    };
    Ok(Summary {
        kind,
        deleted: b & 0x10 != 0,
        invalid: b & 0x20 != 0,
        size: r.u64()?,
    })
}

fn put_counts(out: &mut Vec<u8>, c: &Counts) {
    for v in [c.files, c.directories, c.symlinks, c.deleted, c.bytes] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn read_counts(r: &mut Reader<'_>) -> Result<Counts, DbError> {
    Ok(Counts {
        files: r.u64()?,
        directories: r.u64()?,
        symlinks: r.u64()?,
        deleted: r.u64()?,
        bytes: r.u64()?,
    })
}

impl Entry {
    /// Encodes the entry.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.info.encode();
        let mut out = Vec::with_capacity(12 + body.len());
        out.extend_from_slice(&self.inode.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes only an entry's flags (they lead the record), without its
    /// block list.
    pub fn decode_flags(b: &[u8]) -> Result<u32, DbError> {
        let mut r = Reader(b);
        r.u64()?;
        r.u32()
    }

    /// Decodes an entry.
    pub fn decode(b: &[u8]) -> Result<Self, DbError> {
        let mut r = Reader(b);
        let inode = r.u64()?;
        let flags = r.u32()?;
        let info = FileInfo::decode(r.0).map_err(|e| DbError::Corrupt(e.to_string()))?;
        Ok(Self { info, inode, flags })
    }
}

impl Summary {
    /// Encodes the summary.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        put_summary(&mut out, *self);
        out
    }

    /// Decodes a summary.
    pub fn decode(b: &[u8]) -> Result<Self, DbError> {
        read_summary(&mut Reader(b))
    }
}

impl DeviceMeta {
    /// Encodes the meta.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(56);
        out.extend_from_slice(&self.index_id.to_le_bytes());
        out.extend_from_slice(&self.max_sequence.to_le_bytes());
        put_counts(&mut out, &self.counts);
        out
    }

    /// Decodes the meta.
    pub fn decode(b: &[u8]) -> Result<Self, DbError> {
        let mut r = Reader(b);
        Ok(Self {
            index_id: r.u64()?,
            max_sequence: r.u64()? as i64,
            counts: read_counts(&mut r)?,
        })
    }
}

impl FolderMeta {
    /// Encodes the meta.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        put_counts(&mut out, &self.global);
        put_counts(&mut out, &self.need);
        out
    }

    /// Decodes the meta.
    pub fn decode(b: &[u8]) -> Result<Self, DbError> {
        let mut r = Reader(b);
        Ok(Self {
            global: read_counts(&mut r)?,
            need: read_counts(&mut r)?,
        })
    }
}

impl Global {
    /// Encodes the global entry.
    pub fn encode(&self) -> Vec<u8> {
        let c = self.version.counters();
        let mut out = Vec::with_capacity(17 + 16 * c.len() + 4 * self.devices.len());
        put_summary(&mut out, self.summary);
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        for x in c {
            out.extend_from_slice(&x.id.0.to_le_bytes());
            out.extend_from_slice(&x.value.to_le_bytes());
        }
        out.extend_from_slice(&(self.devices.len() as u32).to_le_bytes());
        for d in &self.devices {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    /// Decodes a global entry.
    pub fn decode(b: &[u8]) -> Result<Self, DbError> {
        let mut r = Reader(b);
        let summary = read_summary(&mut r)?;
        let n = r.u32()? as usize;
        let mut counters = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            counters.push(Counter {
                id: ShortId(r.u64()?),
                value: r.u64()?,
            });
        }
        let n = r.u32()? as usize;
        let mut devices = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            devices.push(r.u32()?);
        }
        Ok(Self {
            version: Vector::from_counters(counters),
            devices,
            summary,
        })
    }
}
