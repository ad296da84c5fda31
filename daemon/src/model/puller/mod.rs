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

mod apply;
mod budget;
mod fetch;
mod fill;

use apply::{delete, directory, remove_empty_dir, symlink, Apply};

use super::local_blocks::LocalBlocks;
use super::pull_error::{PullError, PullErrorKind};
use crate::config::FolderConfig;
use crate::index::{Entry, FolderIndex, Global, FLAG_IGNORED, LOCAL};
use crate::peer::Peers;
use futures_util::stream::{FuturesUnordered, StreamExt};
use proto::message::{FileInfo, FileKind};
use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Requests one file keeps open at least (each also waits for budget),
/// and more when the pass's budget has grown (see [`budget`]).
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
    pub errors: Vec<PullError>,
    /// A local change was found: the folder needs a rescan.
    pub rescan: bool,
    /// Files the global state deletes that this pass did not, because
    /// they are more than the folder's delete guard lets through
    /// unconfirmed.
    pub held_deletes: u64,
    /// Files among the deletions this pass went ahead with (the guard
    /// counts them with the next passes').
    pub deleted_files: u64,
    /// The last [`crate::scanner::NOTED`] entries applied: name, deleted,
    /// and the device that made the change.
    pub noted: std::collections::VecDeque<(String, bool, proto::ShortId)>,
}

impl PullReport {
    fn note(&mut self, info: &FileInfo) {
        if self.noted.len() == crate::scanner::NOTED {
            self.noted.pop_front();
        }
        self.noted
            .push_back((info.name.to_string(), info.deleted, info.modified_by));
    }
}

/// One pass over the need-set. `fetched` counts bytes received from peers
/// as they arrive (for live status). Deletions more than the folder's
/// delete guard allows, together with the `recently_deleted` files of
/// earlier passes, are held (everything else is done) unless
/// `accept_deletes` is set, which they then clear.
pub async fn pull(
    cfg: &FolderConfig,
    fi: &Arc<FolderIndex>,
    peers: &Arc<Peers>,
    fetched: &Arc<AtomicU64>,
    conflicts: &Arc<AtomicU64>,
    recently_deleted: u64,
    accept_deletes: &AtomicBool,
) -> PullReport {
    let mut report = PullReport::default();
    let ignores = match peers.ignores(cfg) {
        Ok(i) => i,
        Err(e) => {
            report
                .errors
                .push(PullError::pass(PullErrorKind::Ignores(e)));
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
            report.errors.push(PullError::pass(e.into()));
            return report;
        }
        Err(e) => {
            report.errors.push(PullError::pass(e.into()));
            return report;
        }
    };
    let mut deletes = Vec::new();
    let mut update_names = Vec::new();
    // Names our patterns ignore are recorded as ignored at the global
    // version (so they are no longer needed), never fetched or deleted.
    let mut ignored = Vec::new();
    for (name, deleted) in needs {
        // Internal names are dropped on receipt; entries a peer gave an
        // older version of us are not applied either.
        if crate::fs::is_internal(&name) {
            continue;
        }
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
            Err(e) => report.errors.push(PullError::of(name, e.into())),
        }
    }
    // Deletions run last, so a renamed file's new name finds its blocks in
    // the old one through the block map.
    let pass = Pass {
        cfg,
        peers,
        local: Arc::new(LocalBlocks::new(peers)),
        budget: budget::Budget::new(),
        fetched,
        apply: Apply {
            root: cfg.path.clone(),
            own: peers.own.short(),
            max_conflicts: cfg.max_conflicts,
            versioning: cfg.versioning,
            index: Some(fi.clone()),
            conflicts: conflicts.clone(),
        },
    };
    if !ignored.is_empty() {
        let n = ignored.len();
        let fi2 = fi.clone();
        match tokio::task::spawn_blocking(move || fi2.update_local(ignored)).await {
            Ok(Ok(_)) => report.done += n,
            Ok(Err(e)) => report.errors.push(PullError::pass(e.into())),
            Err(e) => report.errors.push(PullError::pass(e.into())),
        }
    }
    let mut landed = Landed::default();
    let ctx = pass.apply.clone();
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
                    report.errors.push(PullError::of(name.as_str(), e.into()));
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
    if held(
        cfg,
        fi,
        &deletes,
        recently_deleted,
        accept_deletes,
        &mut report,
    ) {
        deletes.clear();
        in_place_of_dirs.clear();
    }
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
        report.errors.push(PullError::pass(e.into()));
    }
    let config = peers.config();
    for (name, deleted, by) in &report.noted {
        let origin = config
            .devices
            .iter()
            .find(|d| d.id.short() == *by)
            .map_or_else(|| format!("{by:?}"), |d| d.id.to_string());
        peers.events.changed(&cfg.id, name, *deleted, &origin);
    }
    report
}

/// Whether the pass's deletions are held by the delete guard: more of
/// our files than it lets through, not accepted. Held, they stay needed
/// (and counted in the report); the rest of the pass goes on.
fn held(
    cfg: &FolderConfig,
    fi: &FolderIndex,
    deletes: &[(FileInfo, Option<Entry>)],
    recent: u64,
    accept: &AtomicBool,
    report: &mut PullReport,
) -> bool {
    let ours = deletes
        .iter()
        .filter(|(_, l)| {
            l.as_ref()
                .is_some_and(|l| !l.info.deleted && l.info.kind != FileKind::Directory)
        })
        .count() as u64;
    let files = fi
        .device_meta(LOCAL)
        .map(|m| m.counts.files + m.counts.symlinks)
        .unwrap_or(0);
    if !cfg.delete_guard().holds(ours, files, recent, accept) {
        report.deleted_files = ours;
        return false;
    }
    tracing::warn!(folder = %cfg.id, deletes = ours, files,
        "remote deletions held: they would delete more of this folder than the guard allows");
    report.held_deletes = ours;
    report.deferred += deletes.len();
    true
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
        for e in &entries {
            report.note(&e.info);
        }
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
            Err(e) => report.errors.push(PullError::pass(PullErrorKind::Disk {
                kind: e.kind(),
                message: format!("recording {n} pulled files: {e}"),
            })),
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
            pass.peers.events.emit(
                "ItemStarted",
                serde_json::json!({ "folder": pass.cfg.id, "name": info.name.as_str() }),
            );
            running.push(async move {
                let r = fetch::file(pass, &global, &info, local.as_ref()).await;
                (info, r)
            });
        }
        let Some((info, r)) = running.next().await else {
            break;
        };
        report.fetched += r.fetched;
        report.rescan |= r.rescan;
        let error = match &r.outcome {
            Ok(Outcome::Done(_)) => None,
            Ok(Outcome::Later(why) | Outcome::LocalChange(why)) => Some(why.clone()),
            Err(e) => Some(e.to_string()),
        };
        pass.peers.events.emit(
            "ItemFinished",
            serde_json::json!({ "folder": pass.cfg.id, "name": info.name.as_str(), "error": error }),
        );
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
            report.note(&info);
            // The version is the winner's, unchanged; the sequence is new.
            match fi.update_local(vec![Entry {
                info,
                inode,
                flags: 0,
            }]) {
                Ok(_) => report.done += 1,
                Err(e) => report.errors.push(PullError::of(name, e.into())),
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
            report.errors.push(PullError::of(name, e.into()));
        }
    }
}

/// What every file of one pull pass shares.
struct Pass<'a> {
    cfg: &'a FolderConfig,
    peers: &'a Arc<Peers>,
    local: Arc<LocalBlocks>,
    /// KiB requested and not yet written, over all files of the pass:
    /// bounds the memory and the load a pull puts on peers.
    budget: Arc<budget::Budget>,
    fetched: &'a Arc<AtomicU64>,
    apply: Apply,
}
