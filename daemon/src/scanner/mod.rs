//! The scanner: turns what is on disk under a folder root into index
//! changes, incrementally and on every core.
//!
//! ```text
//! walker thread ──(changed files, in chunks of blocks)──▶ N hash workers
//!      │                                                     │
//!      └──(dirs, symlinks, ignores)──▶ collector (caller) ◀──┘
//!                                         │ verifies the file did not change,
//!                                         ▼ commits batches to the index
//! ```
//! A file is recorded only if its metadata is identical before and after
//! hashing and it was last written before hashing began (so a write during
//! hashing cannot hide within the file system's timestamp granularity);
//! otherwise it is hashed again once it is quiet. The index therefore never
//! holds a block list that no state of the file had.

mod hash;
pub use hash::weak_hash;
pub mod ignore;
mod walk;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use proto::block_size::block_size_for_rescan;
use proto::message::{BlockInfo, FileInfo, FileKind};
use proto::ShortId;

use crate::config::DeleteGuard;

pub use hash::{block_count, blocks_hash, hash_blocks, EMPTY_HASH};
use ignore::Ignores;
use walk::{FileToHash, Found, Seen};

use crate::index::{DbError, Entry, FolderIndex, FLAG_IGNORED, FLAG_RECEIVE_ONLY, LOCAL};

/// Entries written to the index per batch.
const BATCH: usize = 1000;
/// Bytes of blocks one hash job covers: small enough to spread a large file
/// over every core, large enough to keep per-job overhead negligible.
const CHUNK_BYTES: u64 = 8 << 20;
/// Small files travel to the hashers in groups of up to this many files or
/// `CHUNK_BYTES / 2` bytes: one channel message and wake-up per file would
/// cost more than hashing a 1 KiB file.
const GROUP_FILES: usize = 64;
/// A file written this recently when hashing starts is hashed again later:
/// a write in the same timestamp tick would be invisible.
const QUIET: Duration = Duration::from_millis(50);
/// A file's last write this far past the start of its hashing is taken as
/// a time from another clock, not as a write in progress.
const FUTURE_SLACK: Duration = Duration::from_secs(2);
/// Attempts before giving up on a file that keeps changing (until next scan).
const MAX_ATTEMPTS: u32 = 20;
/// How often a running scan makes its index writes durable.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Live progress of a scan, shared with the status API.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Files found to need hashing.
    pub files_total: AtomicU64,
    /// Their bytes.
    pub bytes_total: AtomicU64,
    /// Files hashed and recorded.
    pub files_done: AtomicU64,
    /// Bytes hashed.
    pub bytes_done: AtomicU64,
}

/// What a scan needs besides the root and the index.
pub struct ScanOptions<'a> {
    /// This device's short ID, for new versions.
    pub own: ShortId,
    /// The folder's ignore patterns.
    pub ignores: &'a Ignores,
    /// Where to report progress.
    pub progress: &'a ScanProgress,
    /// Set to stop the scan early (what is hashed so far is kept).
    pub cancel: &'a AtomicBool,
    /// Hashing threads (0 = one per core).
    pub threads: usize,
    /// A receive-only folder: local changes are recorded invalid
    /// ([`FLAG_RECEIVE_ONLY`]), so they never win over a remote version.
    pub receive_only: bool,
    /// Deletions beyond this (with `recently_deleted`) are not recorded
    /// unless `accept_deletes` is set (which they then clear): the scan
    /// fails with [`ScanError::MassDelete`].
    pub delete_guard: Option<DeleteGuard>,
    /// Files deleted by recent scans, counted with this one's.
    pub recently_deleted: u64,
    /// Record what is found deleted. Off, deletions are only counted
    /// ([`ScanReport::deletes_deferred`]) for a later scan to record.
    pub record_deletes: bool,
    /// Set to let the next guarded mass delete through.
    pub accept_deletes: &'a AtomicBool,
}

/// The outcome of a scan.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Index entries written.
    pub changes: usize,
    /// Files hashed.
    pub hashed_files: u64,
    /// Bytes hashed.
    pub hashed_bytes: u64,
    /// Per-file problems (the scan went on).
    pub errors: Vec<String>,
    /// Files (and symlinks) found deleted and recorded so.
    pub deleted_files: u64,
    /// Entries found deleted but not recorded (`record_deletes` off).
    pub deletes_deferred: usize,
    /// The last [`NOTED`] names recorded as changed here, with whether
    /// they were deleted (what recent changes shows; a big scan keeps
    /// only its end).
    pub noted: Vec<(String, bool)>,
}

/// Changed names a scan reports (see [`ScanReport::noted`]).
pub const NOTED: usize = 500;

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The root is missing or not a directory.
    #[error("folder path {0} is missing or not a directory")]
    MissingRoot(PathBuf),
    /// The marker is missing.
    #[error("folder marker {0} is missing (is the disk mounted? create the marker directory to confirm the folder)")]
    MissingMarker(PathBuf),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] DbError),
    /// Too many deletions to record unconfirmed; nothing deleted was
    /// recorded (the rest of the scan was).
    #[error("this scan would delete {deleted} of the folder's {files} files; nothing of that was recorded or announced (if it was meant, run `ferrosync folder resume FOLDER --accept-deletes`)")]
    MassDelete {
        /// Files (and symlinks) the scan found gone.
        deleted: u64,
        /// Files (and symlinks) the folder had.
        files: u64,
    },
    /// Stopped on request.
    #[error("scan cancelled")]
    Cancelled,
}

/// File metadata that changes whenever content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    size: u64,
    mtime_s: i64,
    mtime_ns: i32,
    ctime_s: i64,
    ctime_ns: i32,
    inode: u64,
    mode: u32,
}

/// Shared state of one scan.
struct Ctx<'a> {
    index: &'a FolderIndex,
    ignores: &'a Ignores,
    progress: &'a ScanProgress,
    cancel: &'a AtomicBool,
    own: ShortId,
    receive_only: bool,
    errors: Mutex<Vec<String>>,
    /// Files queued for hashing and not yet finished.
    pending: AtomicU64,
    last_flush: Mutex<Instant>,
    /// The newest names recorded as changed (for recent changes).
    noted: Mutex<std::collections::VecDeque<(String, bool)>>,
}

impl Ctx<'_> {
    /// Records local changes; in a receive-only folder they are invalid
    /// here too (ignored entries keep what they are).
    fn record(&self, mut changes: Vec<Entry>) -> Result<(), ScanError> {
        for e in changes.iter_mut().filter(|e| e.flags & FLAG_IGNORED == 0) {
            if self.adopt_global(&mut e.info)? {
                continue;
            }
            if self.receive_only {
                e.info.invalid = true;
                e.flags |= FLAG_RECEIVE_ONLY;
            }
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.len() == NOTED {
                noted.pop_front();
            }
            noted.push_back((e.info.name.to_string(), e.info.deleted));
        }
        self.index.update_local(changes)?;
        Ok(())
    }

    /// Gives a change the global version when what is on disk is the
    /// global entry (see [`crate::index::equivalent`]): true if it did.
    fn adopt_global(&self, info: &mut FileInfo) -> Result<bool, ScanError> {
        let Some((_, global)) = self.index.global_file(info.name.as_str())? else {
            return Ok(false);
        };
        if !crate::index::equivalent(info, &global) {
            return Ok(false);
        }
        tracing::debug!(folder = self.index.id(), file = %info.name, "on disk at the global version");
        info.version = global.version;
        info.modified_by = global.modified_by;
        if info.deleted {
            info.modified_s = global.modified_s;
            info.modified_ns = global.modified_ns;
        }
        Ok(true)
    }

    fn error(&self, msg: String) {
        tracing::warn!(folder = self.index.id(), "{msg}");
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the report small; the log has them all.
        if e.len() < 100 {
            e.push(msg);
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch, as version counters and deletion times
/// take them.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One large file being hashed in chunks, shared by its chunk jobs.
struct Job {
    id: u64,
    file: FileToHash,
    block_size: u32,
    chunks: usize,
    started: SystemTime,
    attempt: u32,
}

/// Work for a hasher.
enum Work {
    /// Blocks `first..end` of a large file.
    Chunk {
        job: Arc<Job>,
        index: usize,
        first: usize,
        end: usize,
    },
    /// Whole small files, hashed and checked by the hasher itself.
    Files(Vec<(FileToHash, u32)>),
}

enum Event {
    Found(Entry),
    Hashed {
        job: Arc<Job>,
        index: usize,
        result: std::io::Result<Vec<BlockInfo>>,
    },
    /// Small files done: each with its attempt number and outcome.
    Finished(Vec<(FileToHash, u32, Finished)>),
    Walked(Seen),
}

/// Groups small files into [`Work::Files`] messages.
struct Grouper {
    files: Vec<(FileToHash, u32)>,
    bytes: u64,
}

impl Grouper {
    fn new() -> Self {
        Self {
            files: Vec::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, ctx: &Ctx<'_>, jobs: &Sender<Work>, file: FileToHash, attempt: u32) {
        ctx.pending.fetch_add(1, Ordering::SeqCst);
        self.bytes += file.stat.size;
        self.files.push((file, attempt));
        if self.files.len() >= GROUP_FILES || self.bytes >= CHUNK_BYTES / 2 {
            self.flush(jobs);
        }
    }

    fn flush(&mut self, jobs: &Sender<Work>) {
        if !self.files.is_empty() {
            self.bytes = 0;
            let _ = jobs.send(Work::Files(std::mem::take(&mut self.files)));
        }
    }
}

/// Scans the folder at `root` into `index`.
pub fn scan(
    root: &Path,
    index: &FolderIndex,
    opts: &ScanOptions<'_>,
) -> Result<ScanReport, ScanError> {
    scan_scoped(root, index, opts, None)
}

/// Scans only `paths` (folder-relative, with everything under them) into
/// `index`: what the watcher asks for. Nothing outside them is read or
/// marked deleted.
pub fn scan_paths(
    root: &Path,
    index: &FolderIndex,
    opts: &ScanOptions<'_>,
    paths: &[String],
) -> Result<ScanReport, ScanError> {
    let paths = outermost(paths);
    if paths.iter().any(String::is_empty) {
        return scan(root, index, opts);
    }
    scan_scoped(root, index, opts, Some(&paths))
}

/// The paths without repeats and without those under another of them:
/// each entry is then walked, and counted deleted, once.
fn outermost(paths: &[String]) -> Vec<String> {
    let mut sorted: Vec<&str> = paths.iter().map(|p| p.trim_matches('/')).collect();
    // Shorter first: an ancestor is kept before its descendants are seen.
    sorted.sort_unstable_by_key(|p| (p.len(), *p));
    sorted.dedup();
    let mut kept = std::collections::HashSet::new();
    for p in sorted {
        let covered =
            kept.contains("") || p.match_indices('/').any(|(i, _)| kept.contains(&p[..i]));
        if !covered {
            kept.insert(p);
        }
    }
    let mut out: Vec<String> = kept.into_iter().map(str::to_string).collect();
    out.sort_unstable();
    out
}

/// Whether `root` is there and marked as the folder: a root that is
/// missing or unmarked (an unmounted disk) must be neither scanned (all
/// deleted) nor written to (re-created on the wrong disk).
pub fn check_root(root: &Path) -> Result<(), ScanError> {
    if !root.is_dir() {
        return Err(ScanError::MissingRoot(root.to_path_buf()));
    }
    if !crate::fs::has_marker(root) {
        return Err(ScanError::MissingMarker(root.join(crate::fs::MARKER)));
    }
    Ok(())
}

fn scan_scoped(
    root: &Path,
    index: &FolderIndex,
    opts: &ScanOptions<'_>,
    scope: Option<&[String]>,
) -> Result<ScanReport, ScanError> {
    check_root(root)?;
    let ctx = Ctx {
        index,
        ignores: opts.ignores,
        progress: opts.progress,
        cancel: opts.cancel,
        own: opts.own,
        receive_only: opts.receive_only,
        errors: Mutex::new(Vec::new()),
        pending: AtomicU64::new(0),
        last_flush: Mutex::new(Instant::now()),
        noted: Mutex::default(),
    };
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let (job_tx, job_rx) = bounded::<Work>(threads * 4);
    let (ev_tx, ev_rx) = unbounded::<Event>();
    let mut report = ScanReport::default();

    let collected = std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx) = (job_rx.clone(), ev_tx.clone());
            let ctx = &ctx;
            s.spawn(move || hasher(ctx, rx, tx));
        }
        drop(job_rx);
        let walker_jobs = job_tx.clone();
        let walker_events = ev_tx.clone();
        let ctx_ref = &ctx;
        s.spawn(move || {
            let mut next_id = 0;
            let mut group = Grouper::new();
            let found = |found| match found {
                Found::Ready(e) => {
                    let _ = walker_events.send(Event::Found(e));
                }
                Found::Hash(file) => {
                    next_id += 1;
                    queue(ctx_ref, &walker_jobs, &mut group, file, next_id, 1);
                }
            };
            let seen = match scope {
                None => walk::walk(root, ctx_ref, found),
                Some(paths) => walk::walk_paths(root, ctx_ref, paths, found),
            };
            group.flush(&walker_jobs);
            let _ = walker_events.send(Event::Walked(seen));
        });
        drop(ev_tx);
        collect(&ctx, job_tx, ev_rx, &mut report)
    });
    let seen = collected?;
    if ctx.cancelled() {
        // What was recorded is kept (and may be announced).
        index.flush()?;
        return Err(ScanError::Cancelled);
    }
    let (changes, deleted_files, deferred) = deletions(&ctx, &seen, opts)?;
    report.changes += changes;
    report.deleted_files = deleted_files;
    report.deletes_deferred = deferred;
    index.flush()?;
    report.errors = ctx.errors.into_inner().unwrap_or_else(|e| e.into_inner());
    report.noted = ctx
        .noted
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into();
    Ok(report)
}

/// Queues a file for hashing: small files in groups, large ones split into
/// chunks that every hasher can share.
fn queue(
    ctx: &Ctx<'_>,
    jobs: &Sender<Work>,
    group: &mut Grouper,
    file: FileToHash,
    id: u64,
    attempt: u32,
) {
    let block_size = block_size_of(&file);
    let blocks = hash::block_count(file.stat.size, block_size);
    let per_chunk = ((CHUNK_BYTES / u64::from(block_size)) as usize).max(1);
    if blocks <= per_chunk {
        group.add(ctx, jobs, file, attempt);
        return;
    }
    ctx.pending.fetch_add(1, Ordering::SeqCst);
    let chunks = blocks.div_ceil(per_chunk);
    let job = Arc::new(Job {
        id,
        file,
        block_size,
        chunks,
        started: SystemTime::now(),
        attempt,
    });
    for index in 0..chunks {
        let first = index * per_chunk;
        let chunk = Work::Chunk {
            job: job.clone(),
            index,
            first,
            end: (first + per_chunk).min(blocks),
        };
        if jobs.send(chunk).is_err() {
            return; // Hashers are gone: the scan is over.
        }
    }
}

fn block_size_of(file: &FileToHash) -> u32 {
    block_size_for_rescan(file.stat.size, file.old.as_ref().map(|o| o.block_size))
}

fn hasher(ctx: &Ctx<'_>, jobs: Receiver<Work>, events: Sender<Event>) {
    let mut buf = vec![0u8; hash::READ_SIZE];
    let mut read = |path: &Path, size: u64, block_size: u32, first: usize, end: usize| {
        if ctx.cancelled() {
            return Err(std::io::Error::other("cancelled"));
        }
        File::open(path).and_then(|f| {
            hash::hash_blocks(&f, size, block_size, first, end, &mut buf, |n| {
                ctx.progress.bytes_done.fetch_add(n, Ordering::Relaxed);
            })
        })
    };
    for work in jobs {
        let event = match work {
            Work::Chunk {
                job,
                index,
                first,
                end,
            } => {
                let result = read(
                    &job.file.path,
                    job.file.stat.size,
                    job.block_size,
                    first,
                    end,
                );
                Event::Hashed { job, index, result }
            }
            Work::Files(files) => Event::Finished(
                files
                    .into_iter()
                    .map(|(file, attempt)| {
                        let started = SystemTime::now();
                        let block_size = block_size_of(&file);
                        let blocks = hash::block_count(file.stat.size, block_size);
                        let result = read(&file.path, file.stat.size, block_size, 0, blocks);
                        let done = finish(ctx, &file, block_size, started, result);
                        (file, attempt, done)
                    })
                    .collect(),
            ),
        };
        let _ = events.send(event);
    }
}

/// A file whose chunks are coming back.
struct Assembly {
    chunks: Vec<Option<Vec<BlockInfo>>>,
    missing: usize,
    failed: Option<std::io::Error>,
}

/// Receives everything, verifies hashed files, and writes batches.
fn collect(
    ctx: &Ctx<'_>,
    jobs: Sender<Work>,
    events: Receiver<Event>,
    report: &mut ScanReport,
) -> Result<Seen, ScanError> {
    let mut group = Grouper::new();
    let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
    let mut assembling: HashMap<u64, Assembly> = HashMap::new();
    let mut retries: Vec<(Instant, FileToHash, u32)> = Vec::new();
    let mut seen = None;
    let mut next_id = u64::MAX / 2; // Retries never collide with walker IDs.
    let mut result = Ok(());
    loop {
        // Requeue files that are now quiet.
        let now = Instant::now();
        let (due, wait): (Vec<_>, Vec<_>) = retries.into_iter().partition(|(t, ..)| *t <= now);
        retries = wait;
        for (_, file, attempt) in due {
            if let Some(file) = refresh(ctx, file) {
                next_id += 1;
                queue(ctx, &jobs, &mut group, file, next_id, attempt);
            }
        }
        group.flush(&jobs);
        // The walker counts its files before it reports the walk done, so
        // once it has, `pending` covers every file still being hashed.
        if seen.is_some() && ctx.pending.load(Ordering::SeqCst) == 0 && retries.is_empty() {
            break;
        }
        let timeout = retries
            .iter()
            .map(|(t, ..)| t.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let ev = match events.recv_timeout(timeout) {
            Ok(ev) => ev,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match ev {
            Event::Found(e) => batch.push(e),
            Event::Walked(s) => {
                tracing::debug!(folder = ctx.index.id(), gone = s.gone.len(), "walk done");
                seen = Some(s)
            }
            Event::Hashed { job, index, result } => {
                let a = assembling.entry(job.id).or_insert_with(|| Assembly {
                    chunks: (0..job.chunks).map(|_| None).collect(),
                    missing: job.chunks,
                    failed: None,
                });
                match result {
                    Ok(blocks) => a.chunks[index] = Some(blocks),
                    Err(e) => a.failed = a.failed.take().or(Some(e)),
                }
                a.missing -= 1;
                if a.missing == 0 {
                    let a = assembling.remove(&job.id).expect("present: just inserted");
                    let result = match a.failed {
                        Some(e) => Err(e),
                        None => Ok(a.chunks.into_iter().flatten().flatten().collect()),
                    };
                    let done = finish(ctx, &job.file, job.block_size, job.started, result);
                    outcome(
                        ctx,
                        job.file.clone(),
                        job.attempt,
                        done,
                        &mut batch,
                        &mut retries,
                        report,
                    );
                }
            }
            Event::Finished(files) => {
                for (file, attempt, done) in files {
                    outcome(ctx, file, attempt, done, &mut batch, &mut retries, report);
                }
            }
        }
        if batch.len() >= BATCH {
            if let Err(e) = commit(ctx, &mut batch, report) {
                result = Err(e);
                ctx.cancel.store(true, Ordering::Relaxed);
            }
        }
    }
    drop(jobs);
    result?;
    commit(ctx, &mut batch, report)?;
    Ok(seen.unwrap_or_default())
}

enum Finished {
    Entry(Box<Entry>),
    Retry(Duration),
    Gone,
}

/// Records a finished file, or schedules it to be hashed again.
fn outcome(
    ctx: &Ctx<'_>,
    file: FileToHash,
    attempt: u32,
    done: Finished,
    batch: &mut Vec<Entry>,
    retries: &mut Vec<(Instant, FileToHash, u32)>,
    report: &mut ScanReport,
) {
    ctx.pending.fetch_sub(1, Ordering::SeqCst);
    match done {
        Finished::Entry(e) => {
            report.hashed_files += 1;
            report.hashed_bytes += file.stat.size;
            ctx.progress.files_done.fetch_add(1, Ordering::Relaxed);
            batch.push(*e);
        }
        Finished::Retry(delay) if attempt < MAX_ATTEMPTS && !ctx.cancelled() => {
            tracing::debug!(file = %file.name, attempt, ?delay, "changed or not quiet; hashing again later");
            retries.push((Instant::now() + delay, file, attempt + 1));
        }
        Finished::Retry(_) => ctx.error(format!(
            "{}: kept changing while it was hashed; will retry at the next scan",
            file.name
        )),
        Finished::Gone => {}
    }
}

/// Checks a fully hashed file is unchanged and quiet, and builds its entry.
/// `started` is when hashing began.
fn finish(
    ctx: &Ctx<'_>,
    file: &FileToHash,
    block_size: u32,
    started: SystemTime,
    result: std::io::Result<Vec<BlockInfo>>,
) -> Finished {
    let blocks = match result {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Finished::Gone; // Deleted meanwhile: the deletion pass sees it.
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Finished::Retry(QUIET),
        Err(e) => {
            if !ctx.cancelled() {
                ctx.error(format!("{}: {e}", file.name));
            }
            return Finished::Gone;
        }
    };
    let after = match std::fs::symlink_metadata(&file.path) {
        Ok(m) if m.is_file() => Stat::of(&m),
        _ => return Finished::Gone,
    };
    if after != file.stat {
        return Finished::Retry(QUIET);
    }
    let mtime = UNIX_EPOCH
        + Duration::new(
            file.stat.mtime_s.max(0) as u64,
            file.stat.mtime_ns.max(0) as u32,
        );
    let ctime = UNIX_EPOCH
        + Duration::new(
            file.stat.ctime_s.max(0) as u64,
            file.stat.ctime_ns.max(0) as u32,
        );
    let last_write = mtime.max(ctime);
    // A time well past the start was not set by a write just now: the
    // clock was put back since (NTP, a wrong clock fixed), or the mtime
    // was set by hand (tar, rsync -t, touch -d). Such a file would never
    // look quiet; the unchanged stat above is what shows it is settled.
    let future = started
        .checked_add(FUTURE_SLACK)
        .is_some_and(|limit| last_write > limit);
    if let Some(since) = started.checked_sub(QUIET).filter(|_| !future) {
        if last_write > since {
            let age = SystemTime::now()
                .duration_since(last_write)
                .unwrap_or_default();
            return Finished::Retry(QUIET.saturating_sub(age).max(Duration::from_millis(5)));
        }
    }
    let mut f = FileInfo::new(file.name.clone(), FileKind::File);
    f.version = file
        .old
        .as_ref()
        .map(|o| o.version.clone())
        .unwrap_or_default()
        .updated(ctx.own, now_secs());
    f.modified_by = ctx.own;
    f.size = file.stat.size;
    f.permissions = file.stat.mode;
    f.modified_s = file.stat.mtime_s;
    f.modified_ns = file.stat.mtime_ns;
    f.block_size = block_size;
    f.blocks_hash = blocks_hash(&blocks);
    f.blocks = blocks;
    Finished::Entry(Box::new(Entry {
        info: f,
        inode: file.stat.inode,
        flags: 0,
    }))
}

/// Re-reads a file's metadata before hashing it again; `None` if it is gone
/// or no longer a regular file.
fn refresh(ctx: &Ctx<'_>, mut file: FileToHash) -> Option<FileToHash> {
    let m = std::fs::symlink_metadata(&file.path)
        .ok()
        .filter(|m| m.is_file())?;
    let stat = Stat::of(&m);
    ctx.progress
        .bytes_total
        .fetch_add(stat.size, Ordering::Relaxed);
    file.stat = stat;
    Some(file)
}

fn commit(ctx: &Ctx<'_>, batch: &mut Vec<Entry>, report: &mut ScanReport) -> Result<(), ScanError> {
    if batch.is_empty() {
        return Ok(());
    }
    report.changes += batch.len();
    ctx.record(std::mem::take(batch))?;
    // An fsync per batch would dominate small-file scans; once a second
    // bounds what a crash can cost (a rescan redoes it).
    let mut last = ctx.last_flush.lock().unwrap_or_else(|e| e.into_inner());
    if last.elapsed() >= FLUSH_EVERY {
        ctx.index.flush()?;
        *last = Instant::now();
    }
    Ok(())
}

/// Records tombstones for indexed entries no longer on disk, and marks
/// entries that became ignored.
/// Records what the walk did not see as deleted; returns the entries
/// written, the files among them, and the deletions not recorded.
fn deletions(
    ctx: &Ctx<'_>,
    seen: &Seen,
    opts: &ScanOptions<'_>,
) -> Result<(usize, u64, usize), ScanError> {
    // Everything is collected before anything is recorded: the guard
    // decides on the whole.
    let (mut batch, mut tombstones) = (Vec::new(), Vec::new());
    let mut deleted_files = 0u64;
    let in_scope = |name: &str| {
        seen.scope.as_ref().is_none_or(|paths| {
            paths.iter().any(|p| {
                p.is_empty()
                    || name == p
                    || name
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
        })
    };
    let entries = seen
        .gone
        .iter()
        .filter(|g| in_scope(g))
        .flat_map(|g| ctx.index.entries_under(LOCAL, g));
    for e in entries {
        let e = e?;
        let name = e.info.name.as_str();
        if e.info.deleted {
            continue;
        }
        if seen.unreadable.iter().any(|d| {
            d.is_empty()
                || name
                    .strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            continue;
        }
        if e.flags & FLAG_IGNORED != 0 && !ctx.ignores.matches(name).ignored {
            // No longer ignored, and not here: we have nothing of it. An
            // empty version (Syncthing's rule) makes the global version
            // needed again, where a tombstone would delete it everywhere.
            let mut f = FileInfo::new(e.info.name.clone(), e.info.kind);
            f.deleted = true;
            f.modified_by = ctx.own;
            batch.push(Entry {
                info: f,
                inode: 0,
                flags: 0,
            });
            continue;
        }
        if ctx.ignores.matches(name).ignored {
            if e.flags & FLAG_IGNORED == 0 {
                let mut info = e.info;
                info.invalid = true;
                batch.push(Entry {
                    info,
                    inode: e.inode,
                    flags: e.flags | FLAG_IGNORED,
                });
            }
            continue;
        }
        if e.info.kind != FileKind::Directory {
            deleted_files += 1;
        }
        let mut f = FileInfo::new(e.info.name.clone(), e.info.kind);
        f.deleted = true;
        f.version = e.info.version.updated(ctx.own, now_secs());
        f.modified_by = ctx.own;
        f.modified_s = now_secs() as i64;
        tombstones.push(Entry {
            info: f,
            inode: 0,
            flags: 0,
        });
    }
    if !opts.record_deletes && !tombstones.is_empty() {
        let n = batch.len();
        ctx.record(batch)?;
        return Ok((n, 0, tombstones.len()));
    }
    if let Some(guard) = opts.delete_guard {
        let c = ctx.index.device_meta(LOCAL)?.counts;
        let files = c.files + c.symlinks;
        if guard.holds(
            deleted_files,
            files,
            opts.recently_deleted,
            opts.accept_deletes,
        ) {
            // The ignore flags are recorded; no tombstone is.
            ctx.record(batch)?;
            return Err(ScanError::MassDelete {
                deleted: deleted_files + opts.recently_deleted,
                files: files + opts.recently_deleted,
            });
        }
    }
    batch.append(&mut tombstones);
    let n = batch.len();
    for chunk in batch.chunks(BATCH) {
        ctx.record(chunk.to_vec())?;
    }
    Ok((n, deleted_files, 0))
}

#[cfg(test)]
mod tests;
