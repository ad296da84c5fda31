//! The one-way folders' ways back to agreement with the cluster:
//! `override` (send-only: our version of everything wins) and `revert`
//! (receive-only: our local changes go, the global version comes back).
//! Both only write the index (and revert moves local additions into the
//! versions); the puller and the index senders do the rest as usual.

use std::path::Path;
use std::time::SystemTime;

use proto::message::FileInfo;
use proto::version::Vector;
use proto::ShortId;

use crate::config::Versioning;
use crate::index::{DbError, Entry, FolderIndex, FLAG_IGNORED, FLAG_RECEIVE_ONLY, LOCAL};
use crate::model::versioner::{self, Keep};
use crate::scanner::now_secs;

/// Entries recorded together.
const BATCH: usize = 1000;

/// Makes our state win every name the cluster changed and we did not
/// apply (a send-only folder's need-set): our entry, or a deletion where
/// we have nothing, at a version newer than the global one. Returns the
/// names changed.
pub fn override_changes(index: &FolderIndex, own: ShortId) -> Result<usize, DbError> {
    let names: Vec<String> = index
        .need_summaries()
        .map(|r| r.map(|(name, _)| name))
        .collect::<Result<_, _>>()?;
    let mut batch = Vec::new();
    let mut n = 0;
    for name in names {
        if crate::fs::is_internal(&name) {
            continue;
        }
        let Some((_, global)) = index.global_file(&name)? else {
            continue;
        };
        let local = index.get(LOCAL, &name)?;
        if local.as_ref().is_some_and(|l| l.flags & FLAG_IGNORED != 0) {
            continue;
        }
        let e = match local {
            Some(mut l) if !l.info.deleted => {
                l.info.version = l
                    .info
                    .version
                    .merged(&global.version)
                    .updated(own, now_secs());
                l.info.modified_by = own;
                l
            }
            other => {
                let seen = other.map_or_else(Vector::default, |l| l.info.version);
                let mut f = FileInfo::new(global.name.clone(), global.kind);
                f.deleted = true;
                f.version = seen.merged(&global.version).updated(own, now_secs());
                f.modified_by = own;
                f.modified_s = now_secs() as i64;
                Entry {
                    info: f,
                    inode: 0,
                    flags: 0,
                }
            }
        };
        batch.push(e);
        if batch.len() >= BATCH {
            n += batch.len();
            index.update_local(std::mem::take(&mut batch))?;
        }
    }
    n += batch.len();
    if !batch.is_empty() {
        index.update_local(batch)?;
    }
    index.flush()?;
    Ok(n)
}

/// Drops a receive-only folder's local changes: where another device has
/// the name, our entry goes back to no version, so the global one is
/// needed and the puller brings it back (keeping our file as a version);
/// a file only we have is moved into the versions (the trash can when
/// versioning is off: nothing is lost) and recorded as gone. Returns the
/// names reverted.
pub fn revert_changes(
    index: &FolderIndex,
    root: &Path,
    versioning: Versioning,
) -> Result<usize, String> {
    let changed: Vec<Entry> = index
        .entries(LOCAL)
        .filter(|e| {
            e.as_ref()
                .map_or(true, |e| e.flags & FLAG_RECEIVE_ONLY != 0)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let keeping = match versioning {
        Versioning::None => Versioning::Trashcan { days: 0 },
        v => v,
    };
    let mut batch = Vec::new();
    let mut dirs = Vec::new();
    for mut e in changed {
        let name = e.info.name.as_str().to_string();
        let elsewhere = index
            .global(&name)
            .map_err(|e| e.to_string())?
            .is_some_and(|g| g.devices.iter().any(|&d| d != LOCAL));
        if elsewhere {
            // The disk is left as indexed, so the puller's checks pass.
            e.info.version = Vector::default();
            e.info.invalid = false;
            e.flags &= !FLAG_RECEIVE_ONLY;
            batch.push(e);
            continue;
        }
        if !e.info.deleted && e.info.kind == proto::message::FileKind::File {
            versioner::keep(root, keeping, &name, Keep::Move, SystemTime::now())
                .map_err(|err| format!("{name}: {err}"))?;
        } else if !e.info.deleted {
            // A directory or symlink only we have: removed below, once
            // the files in it are gone, if nothing else is left in it.
            dirs.push(e);
            continue;
        }
        batch.push(gone(&e));
    }
    dirs.sort_by(|a, b| b.info.name.cmp(&a.info.name));
    for e in dirs {
        let Ok(path) = crate::fs::safe_path(root, e.info.name.as_str()) else {
            continue;
        };
        let removed = match e.info.kind {
            proto::message::FileKind::Directory => std::fs::remove_dir(&path).is_ok(),
            _ => std::fs::remove_file(&path).is_ok(),
        };
        if removed {
            batch.push(gone(&e));
        }
    }
    let n = batch.len();
    for chunk in batch.chunks(BATCH) {
        index
            .update_local(chunk.to_vec())
            .map_err(|e| e.to_string())?;
    }
    index.flush().map_err(|e| e.to_string())?;
    Ok(n)
}

/// What a reverted name only we had is recorded as: nothing, kept from
/// being a source (invalid) and from deleting anything elsewhere (no
/// version).
fn gone(e: &Entry) -> Entry {
    let mut f = FileInfo::new(e.info.name.clone(), e.info.kind);
    f.deleted = true;
    f.invalid = true;
    Entry {
        info: f,
        inode: 0,
        flags: 0,
    }
}
