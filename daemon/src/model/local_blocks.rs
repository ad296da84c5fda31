//! Where this device already has a block: the index's block map names
//! places in any configured folder, and [`Donor`] reads them, from the
//! page cache when the data is there, else straight from the disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::temp_file::ALIGN;
use crate::fs::safe_path;
use crate::peer::Peers;

/// This device's copies of blocks, found through the index's block map in
/// any configured folder. Places are as last indexed, so every block read
/// is verified against its hash before use.
pub struct LocalBlocks {
    index: crate::index::Index,
    roots: HashMap<u32, PathBuf>,
}

/// Files opened for reading blocks, by path (None: could not be opened).
pub type OpenFiles = HashMap<PathBuf, Option<Donor>>;

/// Places tried per block before asking a peer: more are only stale
/// copies of the same data.
const PLACES_PER_BLOCK: usize = 4;

impl LocalBlocks {
    pub fn new(peers: &Peers) -> Self {
        let roots = peers
            .config()
            .folders
            .iter()
            .filter_map(|f| {
                let n = peers.index.folder(&f.id).ok()?.number();
                Some((n, f.path.clone()))
            })
            .collect();
        Self {
            index: peers.index.clone(),
            roots,
        }
    }

    /// Fills `buf[..size]` with the block of this hash from a local file,
    /// verified; false if no local file has it intact. `buf` may be longer
    /// (see [`Donor::read_at`]).
    pub fn copy(&self, hash: &[u8; 32], buf: &mut [u8], size: usize, open: &mut OpenFiles) -> bool {
        let places = self
            .index
            .blocks_with(hash, PLACES_PER_BLOCK)
            .unwrap_or_default();
        for (folder, name, offset) in places {
            let Some(root) = self.roots.get(&folder) else {
                continue;
            };
            // Within the folder root only, never through a symlink.
            let Ok(path) = safe_path(root, &name) else {
                continue;
            };
            let f = open.entry(path).or_insert_with_key(|p| Donor::open(p).ok());
            if f.as_ref().is_some_and(|f| f.read_at(buf, size, offset))
                && <[u8; 32]>::from(Sha256::digest(&buf[..size])) == *hash
            {
                return true;
            }
        }
        false
    }
}

/// A local file blocks are copied from. Reads come from the page cache
/// when the data is there (`RWF_NOWAIT`), else straight from the disk
/// into our buffer (`O_DIRECT`): a cold read would otherwise allocate a
/// page-cache page for every 4 KiB read, the cost [`TempFile`] avoids.
pub struct Donor {
    file: File,
    direct: Option<File>,
}

impl Donor {
    /// Opens a regular file for reading (never through a final symlink).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = crate::fs::open_regular(path)?;
        let direct = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok();
        Ok(Self { file, direct })
    }

    /// Fills `buf[..size]` from `offset`. `buf` may extend past `size` to
    /// the alignment (room a direct read needs). False if the file has
    /// fewer bytes there or cannot be read.
    pub fn read_at(&self, buf: &mut [u8], size: usize, offset: u64) -> bool {
        let cached = rustix::io::preadv2(
            &self.file,
            &mut [io::IoSliceMut::new(&mut buf[..size])],
            offset,
            rustix::io::ReadWriteFlags::NOWAIT,
        );
        if cached == Ok(size) {
            return true;
        }
        let padded = size.div_ceil(ALIGN) * ALIGN;
        if let Some(d) = &self.direct {
            let aligned = buf.as_ptr().align_offset(ALIGN) == 0 && offset % ALIGN as u64 == 0;
            if aligned && buf.len() >= padded {
                // Short at the end of the file: fine if `size` bytes came.
                if let Ok(n) = read_full(d, &mut buf[..padded], offset) {
                    return n >= size;
                }
            }
        }
        self.file.read_exact_at(&mut buf[..size], offset).is_ok()
    }
}

/// Reads until `buf` is full or the file ends; the count read.
fn read_full(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::super::temp_file::Run;
    use super::*;

    #[test]
    fn donors_read_cached_and_uncached_data_and_short_last_blocks() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("donor");
        let data: Vec<u8> = (0..2 * ALIGN + 100).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let f = File::open(&path).expect("open");
        f.sync_all().expect("sync");
        for evict in [false, true] {
            if evict {
                // Out of the page cache: the direct path reads it.
                rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
            }
            let donor = Donor::open(&path).expect("donor");
            let mut run = Run::new(3 * ALIGN);
            let first = run.next_padded_mut(ALIGN);
            assert!(donor.read_at(first, ALIGN, ALIGN as u64), "evict={evict}");
            assert_eq!(&first[..ALIGN], &data[ALIGN..2 * ALIGN]);
            run.filled(ALIGN);
            let last = run.next_padded_mut(100);
            assert_eq!(last.len(), ALIGN, "padded for a direct read");
            assert!(donor.read_at(last, 100, 2 * ALIGN as u64), "evict={evict}");
            assert_eq!(&last[..100], &data[2 * ALIGN..]);
            // Past the end: no block there.
            let mut past = Run::new(ALIGN);
            assert!(!donor.read_at(past.next_padded_mut(ALIGN), ALIGN, 3 * ALIGN as u64));
        }
    }
}
