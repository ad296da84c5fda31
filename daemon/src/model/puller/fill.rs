//! Filling a temp file from what this device already has: verified blocks
//! of an interrupted pull (only ranges that hold data), then local copies
//! the block map names; large files by one thread per core.

use super::apply::matches_index;
use super::fetch::sha;
use super::{Outcome, PARALLEL_FILL_BYTES, RUN_BYTES};
use crate::index::Entry;
use crate::model::local_blocks::{LocalBlocks, OpenFiles};
use crate::model::temp_file::{Run, TempFile};
use proto::message::{BlockInfo, FileInfo};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The temp file with what we had filled in, and the blocks still missing;
/// or why the file cannot be pulled now.
pub(super) type Prepared = Result<(TempFile, Vec<(usize, BlockInfo)>), Outcome>;

/// Opens the temp file and fills in every block we already have: from the
/// temp file of an interrupted pull, or from any local file (the current
/// version of this one, a file being renamed, a copy elsewhere). Returns the
/// file and the blocks still missing, or why the file cannot be pulled now.
pub(super) fn prepare(
    path: &Path,
    tmp: &Path,
    info: &FileInfo,
    local: Option<&Entry>,
    local_blocks: &LocalBlocks,
) -> std::io::Result<Prepared> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent)?;
        }
    }
    if !matches_index(path, local) {
        return Ok(Err(Outcome::LocalChange("changed on disk".into())));
    }
    // A temp file that already exists may hold verified blocks of an
    // interrupted pull; a new one holds nothing worth reading.
    let (out, resumed) = TempFile::open(tmp)?;
    out.file().set_len(info.size)?;
    // Only what an interrupted pull actually wrote is read back (a hole is
    // no block of ours; a large claim never filled costs nothing).
    let written = if resumed {
        out.data_ranges()
    } else {
        Vec::new()
    };
    // Large files are filled in by several threads at once, each taking a
    // contiguous part (reading and hashing are the cost; each part still
    // reads sequentially).
    let blocks: Vec<(usize, BlockInfo)> = info.blocks.iter().copied().enumerate().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min((info.size / PARALLEL_FILL_BYTES).max(1) as usize);
    let part = blocks.len().div_ceil(threads).max(1);
    let missing = std::thread::scope(|scope| {
        let (first, rest) = blocks.split_at(part.min(blocks.len()));
        let others: Vec<_> = rest
            .chunks(part)
            .map(|c| scope.spawn(|| fill(&out, c, &written, local_blocks)))
            .collect();
        let mut missing = fill(&out, first, &written, local_blocks)?;
        for h in others {
            missing.extend(
                h.join()
                    .map_err(|_| std::io::Error::other("fill thread panicked"))??,
            );
        }
        Ok::<_, std::io::Error>(missing)
    })?;
    Ok(Ok((out, missing)))
}

/// Fills in `blocks` (consecutive) of the temp file from what we have:
/// the temp file itself where it holds data (`written`, from a resumed
/// pull), else any local copy. Returns the blocks still missing.
pub(super) fn fill(
    out: &TempFile,
    blocks: &[(usize, BlockInfo)],
    written: &[(u64, u64)],
    local_blocks: &LocalBlocks,
) -> std::io::Result<Vec<(usize, BlockInfo)>> {
    let mut missing = Vec::new();
    let mut buf = Vec::new();
    let mut open = OpenFiles::default();
    // Local copies are gathered in runs of consecutive blocks and written
    // a run at a time.
    let largest = blocks
        .iter()
        .map(|(_, b)| b.size as usize)
        .max()
        .unwrap_or(0);
    let total: u64 = blocks.iter().map(|(_, b)| u64::from(b.size)).sum();
    let mut run = Run::new((total as usize).min(RUN_BYTES).max(largest));
    let mut run_at = 0;
    for &(i, b) in blocks {
        let size = b.size as usize;
        if run.len > 0 && (run_at + run.len as u64 != b.offset || run.len + size > run.capacity()) {
            out.write_run(&mut run, run_at)?;
        }
        if run.len == 0 {
            run_at = b.offset;
        }
        let end = b.offset + u64::from(b.size);
        if written.iter().any(|&(s, e)| s <= b.offset && end <= e) {
            buf.resize(size, 0);
            if read_exact_at(out.file(), &mut buf, b.offset) && sha(&buf) == b.hash {
                out.write_run(&mut run, run_at)?;
                continue;
            }
        }
        if local_blocks.copy(&b.hash, run.next_padded_mut(size), size, &mut open) {
            run.filled(size);
            continue;
        }
        out.write_run(&mut run, run_at)?;
        missing.push((i, b));
    }
    out.write_run(&mut run, run_at)?;
    Ok(missing)
}

pub(super) fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> bool {
    f.read_exact_at(buf, offset).is_ok()
}
