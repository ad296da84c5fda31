//! The work a folder runner does on the folder's disk, on a thread of
//! its own: a scan, the versions cleanup after a full one, and the
//! free-space check before pulling.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use proto::ShortId;

use super::FolderState;
use crate::config::FolderConfig;
use crate::index::{FolderIndex, LOCAL};
use crate::peer::Peers;
use crate::scanner::ignore::Ignores;
use crate::scanner::{self, ScanOptions, ScanProgress};

/// Scans once; returns the per-file errors, the number of changes
/// recorded and the files found deleted, or the state the failure puts the folder in (an error, or
/// paused by the delete guard).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_scan(
    config: &FolderConfig,
    index: &FolderIndex,
    own: ShortId,
    progress: &ScanProgress,
    stop: &AtomicBool,
    accept_deletes: &AtomicBool,
    recently_deleted: u64,
    record_deletes: bool,
    peers: Option<&Peers>,
    paths: Option<&[String]>,
) -> Result<scanner::ScanReport, FolderState> {
    for counter in [
        &progress.files_total,
        &progress.bytes_total,
        &progress.files_done,
        &progress.bytes_done,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    let root: &PathBuf = &config.path;
    let ignores = Arc::new(Ignores::load(root).map_err(|e| FolderState::Error(e.to_string()))?);
    // The puller and the block server follow the patterns this scan uses.
    if let Some(p) = peers {
        p.set_ignores(&config.id, ignores.clone());
    }
    let opts = ScanOptions {
        own,
        ignores: &ignores,
        progress,
        cancel: stop,
        threads: 0,
        receive_only: config.kind == crate::config::FolderType::ReceiveOnly,
        delete_guard: Some(config.delete_guard()),
        recently_deleted,
        record_deletes,
        accept_deletes,
    };
    let t = Instant::now();
    let result = match paths {
        None => scanner::scan(root, index, &opts),
        Some(p) => scanner::scan_paths(root, index, &opts, p),
    };
    match result {
        Ok(report) => {
            tracing::info!(
                folder = %config.id,
                paths = paths.map_or(0, <[String]>::len),
                changes = report.changes,
                deletes_deferred = report.deletes_deferred,
                hashed_files = report.hashed_files,
                hashed_bytes = report.hashed_bytes,
                elapsed_ms = t.elapsed().as_millis() as u64,
                local_files = index.device_meta(LOCAL).map(|m| m.counts.files).unwrap_or(0),
                "scan complete"
            );
            if paths.is_none() {
                clean_versions(config, index);
            }
            if let Some(p) = peers {
                for (name, deleted) in &report.noted {
                    p.events.changed(&config.id, name, *deleted, "local");
                }
            }
            Ok(report)
        }
        Err(scanner::ScanError::Cancelled) => Ok(scanner::ScanReport::default()),
        Err(scanner::ScanError::MassDelete { deleted, files }) => {
            let why = format!(
                "{deleted} of this folder's {files} files are gone; the deletions are held, \
                 not announced (if they were meant: `ferrosync folder resume {} --accept-deletes`)",
                config.id
            );
            tracing::warn!(folder = %config.id, "paused: {why}");
            Err(FolderState::Paused(Some(why)))
        }
        Err(e) => {
            tracing::warn!(folder = %config.id, "cannot scan: {e}");
            Err(FolderState::Error(e.to_string()))
        }
    }
}

/// Why the folder's disk is too full to pull into, if it is.
pub(super) fn low_space(config: &FolderConfig) -> Option<String> {
    let (free, total) = crate::fs::space(&config.path).ok()?;
    let percent = free as f64 * 100.0 / total.max(1) as f64;
    (percent < config.min_disk_free_percent).then(|| {
        format!(
            "the disk holding {} has {percent:.1} % free ({free} bytes), below the folder's \
             min_disk_free_percent of {} %; pulling resumes by itself once space is freed",
            config.path.display(),
            config.min_disk_free_percent
        )
    })
}

/// Removes the versions the folder's versioning no longer keeps (after
/// each full scan: that is how often time moves them out), and their
/// blocks from the block map.
pub(super) fn clean_versions(config: &FolderConfig, index: &FolderIndex) {
    match crate::model::versioner::clean(
        &config.path,
        config.versioning,
        std::time::SystemTime::now(),
    ) {
        Ok(gone) => {
            for v in &gone {
                if let Err(e) = index.unmap_version(&v.stored) {
                    tracing::warn!(folder = %config.id, version = v.stored, "block map: {e}");
                }
            }
            if !gone.is_empty() {
                tracing::info!(folder = %config.id, removed = gone.len(), "old versions removed");
            }
        }
        Err(e) => tracing::warn!(folder = %config.id, "cleaning out versions: {e}"),
    }
}
