//! The temp file a pulled file is assembled in (`.syncthing.<name>.tmp`).
//!
//! Blocks are written with `O_DIRECT` where the file system allows it
//! (runs of consecutive local copies together, peers' blocks one at a
//! time): the data goes from our buffer to the disk without first being
//! copied into freshly allocated page-cache pages. On this project's VMs
//! that copy was the largest cost of assembling a file (the hypervisor backs
//! each new page on first touch): measured on the 1 GiB benchmark, 600 MB/s
//! and 1.3 s of destination CPU instead of 320–480 MB/s and 1.7–3.6 s; the
//! final fsync then has little left to write. Written files are also not
//! left filling the page cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Alignment of offsets, lengths and memory for direct I/O: the page size,
/// which covers every common device's logical block size.
pub(super) const ALIGN: usize = 4096;

/// A temp file being filled in.
pub struct TempFile {
    /// Buffered handle: reads, metadata, fsync, and writes where direct
    /// I/O is not available.
    file: File,
    /// Direct handle, if this file system has direct I/O.
    direct: Option<File>,
    /// Cleared when the device refuses our alignment.
    direct_ok: AtomicBool,
}

impl TempFile {
    /// Opens `path`, creating it if needed. Returns whether it already
    /// existed: then it may hold verified blocks of an interrupted pull.
    ///
    /// Never follows a symlink and only ever opens a regular file: the temp
    /// name is predictable, so whatever sits there (a symlink to a file
    /// outside the folder, a directory) is not ours to write through. A
    /// symlink or other non-regular thing at that name is removed and a
    /// fresh file made.
    pub fn open(path: &Path) -> io::Result<(Self, bool)> {
        let (file, resumed) = match open_nofollow(path, true) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match open_nofollow(path, false) {
                    Ok(f) if f.metadata()?.is_file() => (f, true),
                    // ELOOP (a symlink) or not a regular file: not ours.
                    Ok(_) | Err(_) => {
                        std::fs::remove_file(path)?;
                        (open_nofollow(path, true)?, false)
                    }
                }
            }
            Err(e) => return Err(e),
        };
        // Not every file system has direct I/O (tmpfs, some FUSE): the
        // buffered handle does everything there. The second handle must be
        // the same inode (nothing swapped in between the two opens).
        let ino = file.metadata()?.ino();
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
            .open(path)
            .ok()
            .filter(|d| d.metadata().is_ok_and(|m| m.ino() == ino));
        Ok((
            Self {
                file,
                direct,
                direct_ok: AtomicBool::new(true),
            },
            resumed,
        ))
    }

    /// The byte ranges of the file that hold data (not holes), in order:
    /// a resumed pull reads and verifies only these, so a temp file that a
    /// peer's claim made large but never filled costs nothing to resume.
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        use rustix::fs::{seek, SeekFrom};
        let len = self.file.metadata().map_or(0, |m| m.len());
        let mut out = Vec::new();
        let mut at = 0;
        while at < len {
            let Ok(start) = seek(&self.file, SeekFrom::Data(at)) else {
                break; // ENXIO: no data after `at`.
            };
            let end = seek(&self.file, SeekFrom::Hole(start)).unwrap_or(len);
            out.push((start, end.min(len)));
            at = end;
        }
        out
    }

    /// The buffered handle, for reads and metadata.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes the filled part of `run` (data for `offset..`), directly when
    /// possible. A run that ends past the file's size is cut back by
    /// [`TempFile::finish`].
    pub fn write_run(&self, run: &mut Run, offset: u64) -> io::Result<()> {
        let len = run.len;
        if len == 0 {
            return Ok(());
        }
        run.len = 0;
        if let Some(d) = self
            .direct
            .as_ref()
            .filter(|_| self.direct_ok.load(Relaxed))
        {
            if offset % ALIGN as u64 == 0 {
                let padded = len.div_ceil(ALIGN) * ALIGN;
                let buf = run.slice_mut(padded);
                buf[len..].fill(0);
                match d.write_all_at(buf, offset) {
                    Ok(()) => return Ok(()),
                    // The device wants a larger alignment: stop trying.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.direct_ok.store(false, Relaxed)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.file.write_all_at(run.slice_mut(len), offset)
    }

    /// Writes one block through `run` (emptied first) when it fits there,
    /// else through the page cache.
    pub fn write_block(&self, data: &[u8], offset: u64, run: &mut Run) -> io::Result<()> {
        if data.len() > run.capacity() {
            return self.file.write_all_at(data, offset);
        }
        run.len = 0;
        run.next_mut(data.len()).copy_from_slice(data);
        run.filled(data.len());
        self.write_run(run, offset)
    }

    /// Gives the file its final size (direct writes may have padded the
    /// last block) and makes it durable.
    pub fn finish(self, size: u64) -> io::Result<File> {
        drop(self.direct);
        if self.file.metadata()?.len() != size {
            self.file.set_len(size)?;
        }
        self.file.sync_all()?;
        Ok(self.file)
    }
}

fn open_nofollow(path: &Path, create: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
    if create {
        o.create_new(true).mode(0o600);
    }
    o.open(path)
}

/// A buffer for consecutive blocks, aligned for direct I/O. The memory is
/// a `Vec` with slack; the aligned window starts inside it.
pub struct Run {
    mem: Vec<u8>,
    start: usize,
    /// Bytes filled, from the start of the window.
    pub len: usize,
}

impl Run {
    /// A run of up to `capacity` bytes (rounded up to the alignment).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.div_ceil(ALIGN) * ALIGN;
        let mem = vec![0u8; capacity + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self { mem, start, len: 0 }
    }

    /// How many bytes the run holds at most.
    pub fn capacity(&self) -> usize {
        self.mem.len() - ALIGN
    }

    /// The window's first `n` bytes.
    pub fn slice_mut(&mut self, n: usize) -> &mut [u8] {
        &mut self.mem[self.start..self.start + n]
    }

    /// Room for `n` more bytes after what is filled; call [`Run::filled`]
    /// once they hold data.
    pub fn next_mut(&mut self, n: usize) -> &mut [u8] {
        let at = self.start + self.len;
        &mut self.mem[at..at + n]
    }

    /// Room for `n` more bytes, extended to the alignment when the buffer
    /// has room (as a direct read wants).
    pub fn next_padded_mut(&mut self, n: usize) -> &mut [u8] {
        let at = self.start + self.len;
        let end = (at + n.div_ceil(ALIGN) * ALIGN).min(self.mem.len());
        &mut self.mem[at..end.max(at + n)]
    }

    /// Marks `n` more bytes as filled.
    pub fn filled(&mut self, n: usize) {
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_land_at_their_offsets_and_the_size_is_exact() {
        let dir = tempfile::tempdir().expect("tmp");
        runs_land_in(dir.path());
        // tmpfs: direct I/O refused or emulated, the result is the same.
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            runs_land_in(shm.path());
        }
    }

    fn runs_land_in(dir: &Path) {
        let path = dir.join("t.tmp");
        let (t, resumed) = TempFile::open(&path).expect("open");
        assert!(!resumed);
        let size = 3 * ALIGN as u64 + 100;
        t.file().set_len(size).expect("len");
        let mut run = Run::new(2 * ALIGN);
        run.next_mut(ALIGN).fill(b'a');
        run.filled(ALIGN);
        t.write_run(&mut run, 0).expect("run");
        t.write_block(&[b'b'; ALIGN], ALIGN as u64, &mut run)
            .expect("block");
        run.next_mut(ALIGN + 100).fill(b'c');
        run.filled(ALIGN + 100);
        t.write_run(&mut run, 2 * ALIGN as u64)
            .expect("last run, padded");
        t.finish(size).expect("finish");
        let data = std::fs::read(&path).expect("read");
        assert_eq!(data.len() as u64, size);
        assert!(data[..ALIGN].iter().all(|&b| b == b'a'));
        assert!(data[ALIGN..2 * ALIGN].iter().all(|&b| b == b'b'));
        assert!(data[2 * ALIGN..].iter().all(|&b| b == b'c'));
        assert!(TempFile::open(&path).expect("reopen").1, "resumed");
    }

    #[test]
    fn a_symlink_at_the_temp_name_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"precious").expect("write");
        let path = dir.path().join(".syncthing.x.tmp");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");
        let (t, resumed) = TempFile::open(&path).expect("open");
        assert!(!resumed, "a symlink holds nothing to resume");
        t.file().write_all_at(b"new", 0).expect("write");
        t.finish(3).expect("finish");
        assert_eq!(std::fs::read(&outside).expect("read"), b"precious");
        assert!(!std::fs::symlink_metadata(&path).expect("meta").is_symlink());
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
    }

    #[test]
    fn only_written_ranges_count_as_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.tmp");
        let (t, _) = TempFile::open(&path).expect("open");
        t.file().set_len(64 << 20).expect("len");
        assert!(t.data_ranges().is_empty(), "{:?}", t.data_ranges());
        t.file().write_all_at(&[1; 4096], 8 << 20).expect("write");
        let r = t.data_ranges();
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].0 <= 8 << 20 && r[0].1 >= (8 << 20) + 4096, "{r:?}");
        assert!(r[0].1 - r[0].0 <= 2 << 20, "a hole counted as data: {r:?}");
    }

    #[test]
    fn a_block_larger_than_the_buffer_is_written_through_the_page_cache() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.tmp");
        let (t, _) = TempFile::open(&path).expect("open");
        let mut run = Run::new(ALIGN);
        let data: Vec<u8> = (0..3 * ALIGN + 7).map(|i| i as u8).collect();
        t.write_block(&data, 0, &mut run).expect("write");
        t.finish(data.len() as u64).expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), data);
    }
}
