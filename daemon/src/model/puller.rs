//! The puller: makes a folder match the global state by working through
//! the need-set. Directories first (name order), then files and symlinks,
//! then deletions (reverse name order, so files go before their
//! directories).
//!
//! Every file is assembled in `.syncthing.<name>.tmp` beside it from blocks
//! that are each verified against their SHA-256 (reused from the temp file
//! of an interrupted pull, from any local file that has them per the block
//! map (the old version, a renamed or copied file, any folder), or
//! requested from connected peers, many at a time), fsynced, and renamed
//! into place.
//! Nothing is replaced or deleted unless it still matches what the index
//! says we have: a local change always wins or becomes a conflict copy.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::conflict::{conflict_copy, in_conflict, same_content};

use futures_util::stream::{FuturesUnordered, StreamExt};
use proto::message::{BlockInfo, FileInfo, FileKind};
use proto::DeviceId;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::config::FolderConfig;
use crate::fs::safe_path;
use crate::index::{Entry, FolderIndex, Global, FLAG_IGNORED, FLAG_RECEIVE_ONLY, LOCAL};
use crate::peer::{Peers, SessionHandle};

use super::local_blocks::{LocalBlocks, OpenFiles};
use super::temp_file::{Run, TempFile};

/// Bytes requested and not yet written, per pull pass (so per peer when
/// there is one), in KiB: 4 MiB (32 blocks of 128 KiB) fills a LAN
/// connection. A block larger than this is requested alone.
const IN_FLIGHT_KIB: u32 = 4 << 10;
/// Requests one file keeps open at most (each also waits for budget).
const REQUESTS_PER_FILE: usize = 32;
/// Largest block from a peer written with direct I/O.
const DIRECT_BLOCK_MAX: usize = 1 << 20;
/// Bytes of consecutive local blocks written at once.
const RUN_BYTES: usize = 4 << 20;
/// Files at least this large are filled from local copies by several
/// threads (one per this many bytes, up to one per core).
const PARALLEL_FILL_BYTES: u64 = 32 << 20;
/// Files pulled at once.
const FILES_IN_FLIGHT: usize = 16;
/// Pulled files recorded in the index together.
const LAND_BATCH: usize = 64;
/// Needed entries loaded and worked on at a time.
const PULL_CHUNK: usize = 512;

/// What one pass achieved.
#[derive(Debug, Default)]
pub struct PullReport {
    /// Entries brought up to date.
    pub done: usize,
    /// Entries that could not be done now (no peer, local change, error).
    pub deferred: usize,
    /// Bytes fetched from peers.
    pub fetched: u64,
    /// Per-file problems.
    pub errors: Vec<String>,
    /// A local change was found: the folder needs a rescan.
    pub rescan: bool,
}

/// One pass over the need-set. `fetched` counts bytes received from peers
/// as they arrive (for live status).
pub async fn pull(
    cfg: &FolderConfig,
    fi: &Arc<FolderIndex>,
    peers: &Arc<Peers>,
    fetched: &Arc<AtomicU64>,
) -> PullReport {
    let mut report = PullReport::default();
    let ignores = match peers.ignores(cfg) {
        Ok(i) => i,
        Err(e) => {
            report.errors.push(format!("ignore patterns: {e}"));
            return report;
        }
    };
    // Only names and kinds are read up front; entries are loaded a chunk at
    // a time, so memory stays flat however much the folder needs.
    let fi2 = fi.clone();
    let needs = tokio::task::spawn_blocking(move || {
        fi2.need_summaries()
            .map(|r| r.map(|(name, s)| (name, s.deleted)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    let needs = match needs {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            report.errors.push(format!("reading the need-set: {e}"));
            return report;
        }
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    let mut deletes = Vec::new();
    let mut update_names = Vec::new();
    // Names our patterns ignore are recorded as ignored at the global
    // version (so they are no longer needed), never fetched or deleted.
    let mut ignored = Vec::new();
    for (name, deleted) in needs {
        if ignores.matches(&name).ignored {
            if let Ok(Some((_, info))) = fi.global_file(&name) {
                ignored.push(ignored_entry(info));
            }
            continue;
        }
        if !deleted {
            update_names.push(name);
            continue;
        }
        match fi.global_file(&name) {
            Ok(Some((_, info))) if !info.invalid => {
                deletes.push((info, fi.get(LOCAL, &name).ok().flatten()))
            }
            Ok(Some(_)) => {}
            Ok(None) => {}
            Err(e) => report.errors.push(format!("{name}: {e}")),
        }
    }
    // Deletions run last, so a renamed file's new name finds its blocks in
    // the old one through the block map.
    let pass = Pass {
        cfg,
        peers,
        local: Arc::new(LocalBlocks::new(peers)),
        budget: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_KIB as usize)),
        fetched,
    };
    if !ignored.is_empty() {
        let n = ignored.len();
        let fi2 = fi.clone();
        match tokio::task::spawn_blocking(move || fi2.update_local(ignored)).await {
            Ok(Ok(_)) => report.done += n,
            Ok(Err(e)) => report.errors.push(format!("recording ignored names: {e}")),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    let mut landed = Landed::default();
    let ctx = Apply {
        root: &cfg.path,
        own: peers.own.short(),
        max_conflicts: cfg.max_conflicts,
    };
    // Files and symlinks where we have a directory: its contents are
    // deletions, so these wait until the deletions have run.
    let mut in_place_of_dirs = Vec::new();
    for chunk in update_names.chunks(PULL_CHUNK) {
        let mut files = Vec::new();
        // Directories first (name order puts parents before children, also
        // across chunks), then files, many at once: small files cost a
        // round trip and an fsync each, which only overlap when several
        // are in flight.
        for name in chunk {
            let (global, info) = match fi.global_file(name) {
                // An invalid entry has no content: never applied.
                Ok(Some((_, info))) if info.invalid => continue,
                Ok(Some(x)) => x,
                Ok(None) => continue,
                Err(e) => {
                    report.errors.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let local = fi.get(LOCAL, name).ok().flatten();
            let dir_here = local
                .as_ref()
                .is_some_and(|l| l.info.kind == FileKind::Directory && !l.info.deleted);
            if dir_here && info.kind != FileKind::Directory {
                in_place_of_dirs.push((global, info, local));
                continue;
            }
            let result = match info.kind {
                FileKind::Directory => directory(&ctx, &info, local.as_ref(), &mut report),
                FileKind::Symlink => symlink(&ctx, &info, local.as_ref(), &mut report),
                FileKind::File => {
                    files.push((global, info, local));
                    continue;
                }
            };
            settle(fi, info, result, &mut report);
        }
        pull_files(&pass, fi, files, &mut landed, &mut report).await;
    }
    landed.land(fi, &mut report).await;
    deletes.sort_by(|a, b| b.0.name.cmp(&a.0.name));
    for (info, local) in deletes {
        let result = delete(&ctx, &info, local.as_ref(), &mut report);
        settle(fi, info, result, &mut report);
    }
    // The directories' contents are gone now (or something unknown is
    // left in them, which keeps them): the new entries take their place.
    let mut files = Vec::new();
    for (global, info, local) in in_place_of_dirs {
        match remove_empty_dir(&cfg.path, &info, local.as_ref()) {
            Ok(None) => {}
            Ok(Some(outcome)) => {
                settle(fi, info, Ok(outcome), &mut report);
                continue;
            }
            Err(e) => {
                settle(fi, info, Err(e), &mut report);
                continue;
            }
        }
        // Nothing is at the name now, which is what `None` means below.
        if info.kind == FileKind::Symlink {
            let result = symlink(&ctx, &info, None, &mut report);
            settle(fi, info, result, &mut report);
        } else {
            files.push((global, info, None));
        }
    }
    pull_files(&pass, fi, files, &mut landed, &mut report).await;
    landed.land(fi, &mut report).await;
    // Pulled files are on disk and fsynced; their entries must not be
    // lost, or a rescan would see them as local edits.
    if let Err(e) = fi.flush() {
        report.errors.push(format!("flushing the index: {e}"));
    }
    report
}

/// What we record for a needed name our patterns ignore: the global
/// entry without content, invalid and flagged ignored (Syncthing's
/// `SetIgnored`), so the version history is kept if it is un-ignored.
fn ignored_entry(mut info: FileInfo) -> Entry {
    info.invalid = true;
    info.size = 0;
    info.blocks.clear();
    info.blocks_hash.clear();
    Entry {
        info,
        inode: 0,
        flags: FLAG_IGNORED,
    }
}

/// Files renamed into place whose directories still need an fsync before
/// the index may record them: one fsync per directory per batch instead of
/// one per file.
#[derive(Default)]
struct Landed {
    entries: Vec<Entry>,
    dirs: std::collections::HashSet<PathBuf>,
}

impl Landed {
    fn add(&mut self, root: &Path, info: FileInfo, inode: u64) {
        if let Some(dir) = root.join(info.name.as_str()).parent() {
            self.dirs.insert(dir.to_path_buf());
        }
        self.entries.push(Entry {
            info,
            inode,
            flags: 0,
        });
    }

    /// Makes the renames durable, then records the files in one batch.
    async fn land(&mut self, fi: &Arc<FolderIndex>, report: &mut PullReport) {
        if self.entries.is_empty() {
            return;
        }
        let (entries, dirs) = (
            std::mem::take(&mut self.entries),
            std::mem::take(&mut self.dirs),
        );
        let n = entries.len();
        let fi = fi.clone();
        let result = tokio::task::spawn_blocking(move || {
            for d in &dirs {
                File::open(d)?.sync_all()?;
            }
            // Durable before peers hear of it (one flush per batch).
            fi.update_local(entries)
                .and_then(|_| fi.flush())
                .map_err(std::io::Error::other)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match result {
            Ok(_) => report.done += n,
            Err(e) => report
                .errors
                .push(format!("recording {n} pulled files: {e}")),
        }
    }
}

/// Reorders files so that consecutive ones are in different directories:
/// the kernel serialises file creation within a directory, so files pulled
/// at once should land in different ones.
fn across_directories(files: Vec<ToPull>) -> Vec<ToPull> {
    let mut by_dir: Vec<(String, VecDeque<ToPull>)> = Vec::new();
    for f in files {
        let dir = f.1.name.parent().map(String::from).unwrap_or_default();
        match by_dir.last_mut() {
            Some((d, q)) if *d == dir => q.push_back(f),
            _ => by_dir.push((dir, VecDeque::from([f]))),
        }
    }
    let mut out = Vec::new();
    while !by_dir.is_empty() {
        by_dir.retain_mut(|(_, q)| {
            if let Some(f) = q.pop_front() {
                out.push(f);
            }
            !q.is_empty()
        });
    }
    out
}

/// A file to pull: its global entry, the winning version, our entry.
type ToPull = (Global, FileInfo, Option<Entry>);

/// The temp file with what we had filled in, and the blocks still missing;
/// or why the file cannot be pulled now.
type Prepared = Result<(TempFile, Vec<(usize, BlockInfo)>), Outcome>;

/// What pulling one file did.
struct FileResult {
    outcome: std::io::Result<Outcome>,
    fetched: u64,
    rescan: bool,
}

/// Pulls files concurrently, landing finished ones in batches.
async fn pull_files(
    pass: &Pass<'_>,
    fi: &Arc<FolderIndex>,
    files: Vec<ToPull>,
    landed: &mut Landed,
    report: &mut PullReport,
) {
    let mut todo = across_directories(files).into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < FILES_IN_FLIGHT {
            let Some((global, info, local)) = todo.next() else {
                break;
            };
            running.push(async move {
                let r = file(pass, &global, &info, local.as_ref()).await;
                (info, r)
            });
        }
        let Some((info, r)) = running.next().await else {
            break;
        };
        report.fetched += r.fetched;
        report.rescan |= r.rescan;
        match r.outcome {
            Ok(Outcome::Done(inode)) => {
                landed.add(&pass.cfg.path, info, inode);
                if landed.entries.len() >= LAND_BATCH {
                    landed.land(fi, report).await;
                }
            }
            other => settle(fi, info, other, report),
        }
    }
}

/// What happened to one entry.
enum Outcome {
    /// On disk now; record it with this inode.
    Done(u64),
    /// Not possible now; try again later.
    Later(String),
    /// The disk differs from the index: rescan first.
    LocalChange(String),
}

fn settle(
    fi: &FolderIndex,
    info: FileInfo,
    result: std::io::Result<Outcome>,
    report: &mut PullReport,
) {
    let name = info.name.to_string();
    match result {
        Ok(Outcome::Done(inode)) => {
            // The version is the winner's, unchanged; the sequence is new.
            match fi.update_local(vec![Entry {
                info,
                inode,
                flags: 0,
            }]) {
                Ok(_) => report.done += 1,
                Err(e) => report.errors.push(format!("{name}: recording: {e}")),
            }
        }
        Ok(Outcome::Later(why)) => {
            tracing::debug!(file = %name, "deferred: {why}");
            report.deferred += 1;
        }
        Ok(Outcome::LocalChange(why)) => {
            tracing::info!(file = %name, "not replaced: {why}; rescanning first");
            report.deferred += 1;
            report.rescan = true;
        }
        Err(e) => {
            report.deferred += 1;
            report.errors.push(format!("{name}: {e}"));
        }
    }
}

/// Whether what is on disk at `path` is what the index says we have.
fn matches_index(path: &Path, local: Option<&Entry>) -> bool {
    let meta = fs::symlink_metadata(path).ok();
    match (local.filter(|e| !e.info.deleted), meta) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(e), Some(m)) => match e.info.kind {
            FileKind::File => {
                m.is_file()
                    && m.len() == e.info.size
                    && m.mtime() == e.info.modified_s
                    && m.mtime_nsec() as i32 == e.info.modified_ns
                    && (e.inode == 0 || e.inode == m.ino())
            }
            FileKind::Directory => m.is_dir(),
            FileKind::Symlink => {
                use std::os::unix::ffi::OsStrExt;
                m.file_type().is_symlink()
                    && fs::read_link(path)
                        .is_ok_and(|t| t.as_os_str().as_bytes() == e.info.symlink_target)
            }
        },
    }
}

/// Removes download temp files directly inside `dir` (regular files only).
fn remove_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let is_temp = e.file_name().to_str().is_some_and(crate::fs::is_temp_name);
        if is_temp && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The longest file name (in bytes) Linux file systems take.
const NAME_MAX: usize = 255;

/// What applying directories and symlinks needs besides the entry.
struct Apply<'a> {
    root: &'a Path,
    own: proto::ShortId,
    max_conflicts: i64,
}

/// Moves a file in the way of a new directory or symlink aside as a
/// conflict copy when replacing it would lose a local change, else
/// removes it. Sets `report.rescan` when a copy was made (it is a new
/// local file).
fn clear_file_in_way(
    ctx: &Apply<'_>,
    path: &Path,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<()> {
    let conflict = local.is_some_and(|l| {
        l.info.kind == FileKind::File
            && !l.info.deleted
            && in_conflict(&l.info.version, &info.version, ctx.own)
    });
    if conflict {
        conflict_copy(path, info.modified_by, ctx.max_conflicts)?;
        report.rescan = true;
        Ok(())
    } else {
        fs::remove_file(path)
    }
}

fn directory(
    ctx: &Apply<'_>,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    let path = safe_path(ctx.root, info.name.as_str())?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) if !matches_index(&path, local) => {
            return Ok(Outcome::LocalChange(
                "a file is where the directory goes".into(),
            ))
        }
        Ok(_) => {
            clear_file_in_way(ctx, &path, info, local, report)?;
            fs::create_dir(&path)?;
        }
        Err(_) => fs::create_dir(&path)?,
    }
    if !info.no_permissions {
        fs::set_permissions(&path, fs::Permissions::from_mode(info.permissions & 0o777))?;
    }
    Ok(Outcome::Done(fs::symlink_metadata(&path)?.ino()))
}

fn symlink(
    ctx: &Apply<'_>,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    use std::os::unix::ffi::OsStrExt;
    let path = safe_path(ctx.root, info.name.as_str())?;
    if !matches_index(&path, local) {
        return Ok(Outcome::LocalChange("changed on disk".into()));
    }
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Ok(Outcome::Later("a directory is in the way".into())),
        Ok(_) => clear_file_in_way(ctx, &path, info, local, report)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&info.symlink_target), &path)?;
    Ok(Outcome::Done(0))
}

/// Removes the directory we have where `info` (a file or symlink) goes,
/// once its contents are gone: `None` when the name is free, else why not.
fn remove_empty_dir(
    root: &Path,
    info: &FileInfo,
    local: Option<&Entry>,
) -> std::io::Result<Option<Outcome>> {
    let path = safe_path(root, info.name.as_str())?;
    if !matches_index(&path, local) {
        return Ok(Some(Outcome::LocalChange("changed on disk".into())));
    }
    match fs::remove_dir(&path) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // Something not (yet) in the index is in it: it must not be lost.
        Err(e) => Ok(Some(Outcome::Later(format!("directory not empty: {e}")))),
    }
}

fn delete(
    ctx: &Apply<'_>,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    let path = safe_path(ctx.root, info.name.as_str())?;
    if !matches_index(&path, local) {
        return Ok(Outcome::LocalChange(
            "changed on disk since it was deleted elsewhere".into(),
        ));
    }
    // A local change the deletion never saw (in a receive-only folder,
    // where local changes never win) is kept as a conflict copy.
    if local.is_some_and(|l| {
        l.info.kind == FileKind::File && !l.info.deleted && l.flags & FLAG_RECEIVE_ONLY != 0
    }) {
        clear_file_in_way(ctx, &path, info, local, report)?;
        return Ok(Outcome::Done(0));
    }
    match fs::symlink_metadata(&path) {
        Err(_) => {}
        Ok(m) if m.is_dir() => {
            // Our own temp files do not keep a directory alive (the
            // entries they were for are being deleted with it).
            remove_temp_files(&path);
            if let Err(e) = fs::remove_dir(&path) {
                // Not empty: something here is not in the index yet, or is
                // ignored; it must not be lost.
                return Ok(Outcome::Later(format!("directory not empty: {e}")));
            }
        }
        Ok(_) => fs::remove_file(&path)?,
    }
    Ok(Outcome::Done(0))
}

/// What every file of one pull pass shares.
struct Pass<'a> {
    cfg: &'a FolderConfig,
    peers: &'a Arc<Peers>,
    local: Arc<LocalBlocks>,
    /// KiB requested and not yet written, over all files of the pass:
    /// bounds the memory and the load a pull puts on peers.
    budget: Arc<tokio::sync::Semaphore>,
    fetched: &'a Arc<AtomicU64>,
}

/// Pulls one regular file.
async fn file(
    pass: &Pass<'_>,
    global: &Global,
    info: &FileInfo,
    local: Option<&Entry>,
) -> FileResult {
    let mut r = FileResult {
        outcome: Ok(Outcome::Later(String::new())),
        fetched: 0,
        rescan: false,
    };
    r.outcome = file_inner(pass, global, info, local, &mut r.fetched, &mut r.rescan).await;
    r
}

async fn file_inner(
    pass: &Pass<'_>,
    global: &Global,
    info: &FileInfo,
    local: Option<&Entry>,
    fetched_here: &mut u64,
    rescan: &mut bool,
) -> std::io::Result<Outcome> {
    let Pass {
        cfg,
        peers,
        local: local_blocks,
        budget,
        fetched,
    } = pass;
    let path = safe_path(&cfg.path, info.name.as_str())?;
    // Refused before anything is written: the rename would fail after the
    // whole file had been fetched, leaving its temp file behind.
    if info.name.as_str().rsplit('/').next().map_or(0, str::len) > NAME_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidFilename,
            format!("name longer than {NAME_MAX} bytes"),
        ));
    }
    if let Some(l) = local
        .filter(|l| !l.info.deleted && l.info.kind == FileKind::File && same_content(&l.info, info))
    {
        // The content is already here (a kill -9 before the index recorded
        // a pull, a reset index, the same edit on two devices): only the
        // metadata changes, and nothing conflicts.
        let (info, l) = (info.clone(), l.clone());
        return tokio::task::spawn_blocking(move || shortcut(&path, &info, &l))
            .await
            .map_err(std::io::Error::other)?;
    }
    let tmp = crate::fs::temp_path(&path);
    // Disk reads and hashing stay off the async threads. The blocking pool
    // is small (BLOCKING_THREADS), which also keeps file creation from
    // more threads at once than that, where the kernel only spins on the
    // file system's locks (measured).
    let prepared = {
        let (path, tmp, info, local) = (path.clone(), tmp.clone(), info.clone(), local.cloned());
        let local_blocks = Arc::clone(local_blocks);
        tokio::task::spawn_blocking(move || {
            prepare(&path, &tmp, &info, local.as_ref(), &local_blocks)
        })
        .await
        .map_err(std::io::Error::other)??
    };
    let (out, missing) = match prepared {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };

    if !missing.is_empty() {
        let sources = holders(peers, global);
        if sources.is_empty() {
            return Ok(Outcome::Later("no connected device has it".into()));
        }
        let mut tasks = JoinSet::new();
        // Blocks are copied into an aligned buffer for direct writes; larger
        // ones (files over 2 GiB) go through the page cache, so the buffer a
        // file in flight holds stays small.
        let largest = missing.iter().map(|(_, b)| b.size as usize).max();
        let mut run = Run::new(largest.unwrap_or(0).min(DIRECT_BLOCK_MAX));
        let mut next = 0;
        let mut failed = None;
        while (failed.is_none() && next < missing.len()) || !tasks.is_empty() {
            // After a failure no more is asked: the file is retried later,
            // and a peer that refuses (or a claim it cannot back) costs one
            // window of requests, not one per block.
            while failed.is_none() && next < missing.len() && tasks.len() < REQUESTS_PER_FILE {
                let (i, b) = missing[next];
                let s = sources[next % sources.len()].clone();
                let (folder, name) = (cfg.id.clone(), info.name.clone());
                let budget = Arc::clone(budget);
                let fetched = Arc::clone(fetched);
                tasks.spawn(async move {
                    let kib = b.size.div_ceil(1024).min(IN_FLIGHT_KIB);
                    let permit = budget
                        .acquire_many_owned(kib)
                        .await
                        .map_err(|e| e.to_string())?;
                    let data = s
                        .request(&folder, &name, b.offset, b.size, b.hash, i as i32)
                        .await;
                    let data = data.map_err(|e| e.to_string())?;
                    if data.len() != b.size as usize || sha(&data) != b.hash {
                        return Err(format!(
                            "block {i} from {} does not match its hash",
                            s.device
                        ));
                    }
                    fetched.fetch_add(data.len() as u64, AtomicOrdering::Relaxed);
                    Ok::<_, String>((b.offset, data, permit))
                });
                next += 1;
            }
            // One writer per file: concurrent writes to one file only
            // contend for its inode lock (measured as kernel spinning).
            // A direct write of one block is short enough to do inline.
            match tasks.join_next().await {
                Some(Ok(Ok((offset, data, permit)))) => {
                    out.write_block(&data, offset, &mut run)?;
                    *fetched_here += data.len() as u64;
                    drop(permit);
                }
                Some(Ok(Err(e))) => failed = failed.or(Some(e)),
                Some(Err(e)) => failed = failed.or(Some(e.to_string())),
                None => break,
            }
        }
        if let Some(e) = failed {
            // Verified blocks stay in the temp file for the next attempt.
            return Ok(Outcome::Later(e));
        }
    }

    // The rest is blocking disk work (fsyncs above all): off the async
    // threads, so other files' transfers go on meanwhile.
    let (info, local) = (info.clone(), local.cloned());
    let (own, max) = (peers.own.short(), cfg.max_conflicts);
    let (done, conflicted) = tokio::task::spawn_blocking(move || {
        finish(out, &tmp, &path, &info, local.as_ref(), own, max)
    })
    .await
    .map_err(std::io::Error::other)??;
    *rescan |= conflicted;
    Ok(done)
}

/// Opens the temp file and fills in every block we already have: from the
/// temp file of an interrupted pull, or from any local file (the current
/// version of this one, a file being renamed, a copy elsewhere). Returns the
/// file and the blocks still missing, or why the file cannot be pulled now.
fn prepare(
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
fn fill(
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

/// Makes the temp file durable and puts it in place. Returns the outcome
/// and whether a conflict copy was made (the copy needs a scan).
fn finish(
    out: TempFile,
    tmp: &Path,
    path: &Path,
    info: &FileInfo,
    local: Option<&Entry>,
    own: proto::ShortId,
    max_conflicts: i64,
) -> std::io::Result<(Outcome, bool)> {
    let out = out.finish(info.size)?;
    if !info.no_permissions {
        out.set_permissions(fs::Permissions::from_mode(info.permissions & 0o777))?;
    }
    out.set_modified(mtime(info))?;
    drop(out);
    // Last check before replacing: the disk must still be what we indexed.
    if !matches_index(path, local) {
        return Ok((
            Outcome::LocalChange("changed on disk while pulling".into()),
            false,
        ));
    }
    let mut conflicted = false;
    if let Some(l) = local.filter(|l| !l.info.deleted && l.info.kind == FileKind::File) {
        if in_conflict(&l.info.version, &info.version, own) {
            conflict_copy(path, info.modified_by, max_conflicts)?;
            conflicted = true;
        }
    }
    // The directory is fsynced with its neighbours' before the index
    // records any of them (see `Landed`).
    fs::rename(tmp, path)?;
    Ok((Outcome::Done(fs::symlink_metadata(path)?.ino()), conflicted))
}

/// Takes the global entry for a file whose content we already have:
/// permissions and modification time follow it, the data stays.
fn shortcut(path: &Path, info: &FileInfo, local: &Entry) -> std::io::Result<Outcome> {
    if !matches_index(path, Some(local)) {
        return Ok(Outcome::LocalChange("changed on disk".into()));
    }
    let f = crate::fs::open_regular(path)?;
    if !info.no_permissions {
        f.set_permissions(fs::Permissions::from_mode(info.permissions & 0o777))?;
    }
    // futimens needs ownership, not a writable handle.
    f.set_modified(mtime(info))?;
    Ok(Outcome::Done(f.metadata()?.ino()))
}

/// Connected sessions of the devices that have the global version.
fn holders(peers: &Peers, global: &Global) -> Vec<SessionHandle> {
    global
        .devices
        .iter()
        .filter(|&&d| d != LOCAL)
        .filter_map(|&d| peers.index.device_by_number(d).ok().flatten())
        .filter_map(|id: DeviceId| peers.session(&id))
        .collect()
}

fn mtime(info: &FileInfo) -> SystemTime {
    let s = Duration::new(
        info.modified_s.max(0) as u64,
        info.modified_ns.clamp(0, 999_999_999) as u32,
    );
    UNIX_EPOCH + s
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> bool {
    f.read_exact_at(buf, offset).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_symlink_target_does_not_match_the_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("l");
        std::os::unix::fs::symlink("old-target", &p).expect("symlink");
        let mut info = FileInfo::new(proto::Name::parse("l").expect("name"), FileKind::Symlink);
        info.symlink_target = b"old-target".to_vec();
        let e = Entry {
            info,
            inode: 0,
            flags: 0,
        };
        assert!(matches_index(&p, Some(&e)));
        fs::remove_file(&p).expect("rm");
        std::os::unix::fs::symlink("new-target", &p).expect("symlink");
        assert!(
            !matches_index(&p, Some(&e)),
            "a retargeted link is a local change"
        );
    }

    #[test]
    fn a_deleted_directory_with_a_stray_temp_file_is_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("d");
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join(".syncthing.gone.tmp"), "partial").expect("write");
        let name = || proto::Name::parse("d").expect("name");
        let mut info = FileInfo::new(name(), FileKind::Directory);
        info.deleted = true;
        let local = Entry {
            info: FileInfo::new(name(), FileKind::Directory),
            inode: 0,
            flags: 0,
        };
        let ctx = Apply {
            root: dir.path(),
            own: proto::ShortId(1),
            max_conflicts: 10,
        };
        let mut report = PullReport::default();
        let out = delete(&ctx, &info, Some(&local), &mut report).expect("delete");
        assert!(matches!(out, Outcome::Done(_)));
        assert!(!d.exists());
        // Anything else in it keeps it.
        fs::create_dir(&d).expect("mkdir");
        fs::write(d.join("unknown.txt"), "keep me").expect("write");
        let out = delete(&ctx, &info, Some(&local), &mut report).expect("delete");
        assert!(matches!(out, Outcome::Later(_)));
        assert!(d.join("unknown.txt").exists());
    }
}
