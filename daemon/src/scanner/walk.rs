//! The directory walk: visits every entry under a folder root (never
//! following symlinks), skips internal names, applies ignore patterns,
//! normalises names to NFC, and decides per entry whether it changed since
//! the index last saw it. Unchanged files cost one `lstat` and one index
//! lookup; changed files are handed to the hashers.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use proto::message::{FileInfo, FileKind};
use proto::Name;
use unicode_normalization::{is_nfc, UnicodeNormalization};

use super::{now_secs, Ctx, Stat};
use crate::fs::is_internal;
use crate::index::{Entry, FLAG_IGNORED, FLAG_RECEIVE_ONLY, LOCAL};

/// What the walk found that needs recording or hashing.
pub enum Found {
    /// A directory, symlink or newly ignored entry, ready to record.
    Ready(Entry),
    /// A regular file that must be hashed.
    Hash(FileToHash),
}

/// A regular file whose content must be hashed.
#[derive(Clone)]
pub struct FileToHash {
    /// Its name.
    pub name: Name,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its metadata when found; it must be the same after hashing.
    pub stat: Stat,
    /// The previous local entry, whose version the new one succeeds.
    pub old: Option<FileInfo>,
}

/// What the walk saw, for the deletion pass.
#[derive(Default)]
pub struct Seen {
    /// Names in the index that the walk found missing from their
    /// directory on disk, or whose entries below it the walk did not visit
    /// (under a file that was a directory, under a skipped ignored
    /// directory): each with every entry under it is for the deletion pass
    /// to look at. Each directory's listing is compared with the index's
    /// children of it as the walk goes, so memory follows the widest
    /// directory and the deletions, not the folder.
    pub gone: Vec<String>,
    /// Directories that could not be read: nothing under them is deleted.
    pub unreadable: Vec<String>,
    /// The subtrees walked, when not the whole folder: nothing outside
    /// them is deleted.
    pub scope: Option<Vec<String>>,
}

impl Stat {
    /// The parts of `m` that say whether a file changed.
    pub fn of(m: &Metadata) -> Self {
        Self {
            size: m.len(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec() as i32,
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec() as i32,
            inode: m.ino(),
            mode: m.mode() & 0o777,
        }
    }
}

/// Walks `root`, calling `found` for each change, and returns what it saw.
pub fn walk(root: &Path, ctx: &Ctx<'_>, found: impl FnMut(Found)) -> Seen {
    let mut w = Walker {
        ctx,
        found,
        seen: Seen::default(),
        stack: vec![(root.to_path_buf(), String::new())],
        present: Vec::new(),
    };
    w.drain();
    w.seen
}

/// Walks only `paths` (folder-relative, as the watcher reports them): each
/// one's parent directories (not their other contents), then the path
/// itself and, for a directory, everything under it. A path that is not
/// on disk is left to the deletion pass, which [`Seen::scope`] limits to
/// these subtrees.
pub fn walk_paths(root: &Path, ctx: &Ctx<'_>, paths: &[String], found: impl FnMut(Found)) -> Seen {
    let mut w = Walker {
        ctx,
        found,
        seen: Seen {
            scope: Some(paths.to_vec()),
            ..Seen::default()
        },
        stack: Vec::new(),
        present: Vec::new(),
    };
    let mut parents_done = HashSet::new();
    for p in paths {
        let mut rel = String::new();
        let mut parts = p.split('/').filter(|s| !s.is_empty()).peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            let dir = root.join(&rel);
            let here = join(&rel, part);
            if !last && !parents_done.insert(here.clone()) {
                rel = here;
                continue;
            }
            if fs::symlink_metadata(dir.join(part)).is_err() {
                // Gone, with everything under it (only what is in scope).
                w.seen.gone.push(join(&rel, part));
                break;
            }
            w.visit(&dir, &rel, part.as_ref(), last);
            rel = here;
        }
        w.drain();
    }
    w.seen
}

/// One walk's state: directories still to read and what was seen.
struct Walker<'c, 'a, F> {
    ctx: &'c Ctx<'a>,
    found: F,
    seen: Seen,
    stack: Vec<(PathBuf, String)>,
    /// Base names of the directory being read that are on disk.
    present: Vec<String>,
}

impl<F: FnMut(Found)> Walker<'_, '_, F> {
    /// Reads directories until none is left.
    fn drain(&mut self) {
        let ctx = self.ctx;
        while let Some((dir, rel)) = self.stack.pop() {
            if ctx.cancelled() {
                break;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    ctx.error(format!("{}: {e}", display_rel(&rel)));
                    self.seen.unreadable.push(rel);
                    continue;
                }
            };
            self.present.clear();
            let mut complete = true;
            for entry in entries {
                match entry {
                    Ok(e) => self.visit(&dir, &rel, &e.file_name(), true),
                    Err(e) => {
                        ctx.error(format!("{}: {e}", display_rel(&rel)));
                        self.seen.unreadable.push(rel.clone());
                        complete = false;
                    }
                }
            }
            if complete && !ctx.cancelled() {
                self.missing_children(&rel);
            }
        }
    }

    /// Compares the listing of directory `rel` just read with the index's
    /// children of it: those not on disk are gone.
    fn missing_children(&mut self, rel: &str) {
        let recorded = match self.ctx.index.child_names(LOCAL, rel) {
            Ok(r) => r,
            Err(e) => {
                self.ctx
                    .error(format!("{}: reading the index: {e}", display_rel(rel)));
                self.seen.unreadable.push(rel.to_string());
                return;
            }
        };
        self.present.sort_unstable();
        let present = &self.present;
        let gone = recorded
            .into_iter()
            .filter(|name| present.binary_search(name).is_err())
            .map(|name| join(rel, &name));
        self.seen.gone.extend(gone);
    }

    /// Everything the index holds under `rel` is for the deletion pass
    /// (which leaves what is still on disk alone, marking it ignored
    /// where it is).
    fn below_is_gone(&mut self, rel: &str) {
        match self.ctx.index.child_names(LOCAL, rel) {
            Ok(names) => self
                .seen
                .gone
                .extend(names.into_iter().map(|n| join(rel, &n))),
            Err(e) => {
                self.ctx.error(format!("{rel}: reading the index: {e}"));
                self.seen.unreadable.push(rel.to_string());
            }
        }
    }

    /// Looks at the entry `os_name` of `dir` (whose name is `rel`); with
    /// `descend`, a directory's contents are walked too.
    fn visit(&mut self, dir: &Path, rel: &str, os_name: &std::ffi::OsStr, descend: bool) {
        let ctx = self.ctx;
        let Ok(base) = std::str::from_utf8(os_name.as_bytes()) else {
            ctx.error(format!(
                "{}/{}: name is not UTF-8; skipped",
                display_rel(rel),
                os_name.to_string_lossy()
            ));
            return;
        };
        let mut path = dir.join(os_name);
        let mut base = base.to_string();
        if !is_nfc(&base) {
            match normalise(dir, &base) {
                Ok(nfc) => {
                    path = dir.join(&nfc);
                    base = nfc;
                }
                Err(e) => {
                    ctx.error(format!("{}: {e}", join(rel, &base)));
                    return;
                }
            }
        }
        let rel_name = join(rel, &base);
        if is_internal(&rel_name) {
            if crate::fs::is_temp_name(&base) {
                remove_if_stale(&path);
            }
            return;
        }
        let name = match Name::parse(rel_name.clone()) {
            Ok(n) => n,
            Err(e) => {
                ctx.error(format!("{rel_name}: {e}"));
                return;
            }
        };
        self.present.push(base.clone());
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                ctx.error(format!("{rel_name}: {e}"));
                return;
            }
        };
        let old = match ctx.index.get(LOCAL, &rel_name) {
            Ok(o) => o,
            Err(e) => {
                ctx.error(format!("{rel_name}: reading the index: {e}"));
                return;
            }
        };
        let ft = meta.file_type();
        if ctx.ignores.matches(&rel_name).ignored {
            if let Some(old) = old.filter(|o| o.flags & FLAG_IGNORED == 0) {
                (self.found)(Found::Ready(ignored(old)));
            }
            if descend && ft.is_dir() {
                if ctx.ignores.can_skip_ignored_dirs() {
                    self.below_is_gone(&rel_name);
                } else {
                    self.stack.push((path, rel_name));
                }
            }
            return;
        }
        let old = old.map(|o| comparable(ctx, o));
        let was_dir = old
            .as_ref()
            .is_some_and(|o| o.info.kind == FileKind::Directory);
        if was_dir && !ft.is_dir() {
            // A directory replaced by a file or symlink: nothing under it
            // is there any more.
            self.below_is_gone(&rel_name);
        }
        let found = &mut self.found;
        if ft.is_dir() {
            if let Some(e) = directory(ctx, name, &meta, old.map(|o| o.info)) {
                found(Found::Ready(e));
            }
            if descend {
                self.stack.push((path, rel_name));
            }
        } else if ft.is_symlink() {
            match fs::read_link(&path) {
                Ok(target) => {
                    let target = target.as_os_str().as_bytes().to_vec();
                    if let Some(e) = symlink(ctx, name, target, old.map(|o| o.info)) {
                        found(Found::Ready(e));
                    }
                }
                Err(e) => ctx.error(format!("{rel_name}: {e}")),
            }
        } else if ft.is_file() {
            let stat = Stat::of(&meta);
            if let Some(e) = file(ctx, &name, &stat, old.as_ref(), &meta) {
                match e {
                    FileChange::Metadata(entry) => found(Found::Ready(entry)),
                    FileChange::Content => {
                        ctx.progress.files_total.fetch_add(1, Ordering::Relaxed);
                        ctx.progress
                            .bytes_total
                            .fetch_add(stat.size, Ordering::Relaxed);
                        found(Found::Hash(FileToHash {
                            name,
                            path,
                            stat,
                            old: old.map(|o| o.info),
                        }))
                    }
                }
            }
        }
        // Sockets, FIFOs and devices are not synced, as in Syncthing.
    }
}

/// Temp files of pulls untouched for this long are abandoned (the entry
/// they were for is gone or was pulled another way): Syncthing's default.
const TEMP_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes a download temp file that has not been written for a day.
fn remove_if_stale(path: &Path) {
    let stale = fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_file()
            && m.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > TEMP_LIFETIME)
    });
    if stale {
        if let Err(e) = fs::remove_file(path) {
            tracing::debug!(path = %path.display(), "removing a stale temp file: {e}");
        }
    }
}

fn join(rel: &str, base: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else {
        format!("{rel}/{base}")
    }
}

fn display_rel(rel: &str) -> &str {
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

/// Renames a non-NFC entry to its NFC form (as Syncthing does on Linux), so
/// the name on disk is the name in the index.
fn normalise(dir: &Path, base: &str) -> Result<String, String> {
    let nfc: String = base.nfc().collect();
    let target = dir.join(&nfc);
    if fs::symlink_metadata(&target).is_ok() {
        return Err(format!(
            "both the NFC and a non-NFC form of {nfc:?} exist; skipped"
        ));
    }
    fs::rename(dir.join(base), &target).map_err(|e| format!("renaming to NFC: {e}"))?;
    Ok(nfc)
}

/// The previous entry as the change detection should see it. A
/// receive-only change in a receive-only folder compares with the disk
/// like any entry (it is only invalid towards the rest of the cluster).
/// An entry that was ignored, or a receive-only change in a folder that no
/// longer is one, must be recorded anew: it stays invalid (so it counts as
/// changed) and keeps only our own counter (Syncthing's `DropOthers`), so
/// the new version is concurrent with whatever the cluster did meanwhile:
/// different content then becomes a conflict, never a silent overwrite of
/// newer data, and identical content a metadata change.
fn comparable(ctx: &Ctx<'_>, mut o: Entry) -> Entry {
    let receive_only_change = o.flags & FLAG_RECEIVE_ONLY != 0;
    if receive_only_change && ctx.receive_only {
        o.info.invalid = false;
    } else if receive_only_change || o.flags & FLAG_IGNORED != 0 {
        let own = o.info.version.counter(ctx.own);
        o.info.version = proto::Vector::from_counters(
            o.info
                .version
                .counters()
                .iter()
                .copied()
                .filter(|c| c.id == ctx.own && c.value == own)
                .collect(),
        );
        o.info.invalid = true;
    }
    o
}

/// A new local version of `name` succeeding `old`.
fn new_version(ctx: &Ctx<'_>, name: Name, kind: FileKind, old: Option<&FileInfo>) -> FileInfo {
    let mut f = FileInfo::new(name, kind);
    let base = old.map(|o| o.version.clone()).unwrap_or_default();
    f.version = base.updated(ctx.own, now_secs());
    f.modified_by = ctx.own;
    f
}

fn ignored(old: Entry) -> Entry {
    let mut info = old.info;
    info.invalid = true;
    Entry {
        info,
        inode: old.inode,
        flags: old.flags | FLAG_IGNORED,
    }
}

fn directory(ctx: &Ctx<'_>, name: Name, meta: &Metadata, old: Option<FileInfo>) -> Option<Entry> {
    let mode = meta.mode() & 0o777;
    if let Some(o) = &old {
        if o.kind == FileKind::Directory && !o.deleted && !o.invalid && o.permissions == mode {
            return None;
        }
    }
    let mut f = new_version(ctx, name, FileKind::Directory, old.as_ref());
    f.permissions = mode;
    f.modified_s = meta.mtime();
    f.modified_ns = meta.mtime_nsec() as i32;
    Some(Entry {
        info: f,
        inode: meta.ino(),
        flags: 0,
    })
}

fn symlink(ctx: &Ctx<'_>, name: Name, target: Vec<u8>, old: Option<FileInfo>) -> Option<Entry> {
    if let Some(o) = &old {
        if o.kind == FileKind::Symlink && !o.deleted && !o.invalid && o.symlink_target == target {
            return None;
        }
    }
    let mut f = new_version(ctx, name, FileKind::Symlink, old.as_ref());
    f.symlink_target = target;
    f.no_permissions = true;
    Some(Entry {
        info: f,
        inode: 0,
        flags: 0,
    })
}

enum FileChange {
    /// Only the permission bits changed: keep the blocks.
    Metadata(Entry),
    /// Size, mtime or inode changed (or the file is new): hash it.
    Content,
}

fn file(
    ctx: &Ctx<'_>,
    name: &Name,
    stat: &Stat,
    old: Option<&Entry>,
    meta: &Metadata,
) -> Option<FileChange> {
    let Some((o, old_inode)) = old
        .map(|e| (&e.info, e.inode))
        .filter(|(o, _)| o.kind == FileKind::File && !o.deleted && !o.invalid)
    else {
        return Some(FileChange::Content);
    };
    let same_content = o.size == stat.size
        && o.modified_s == stat.mtime_s
        && o.modified_ns == stat.mtime_ns
        && (old_inode == 0 || old_inode == stat.inode);
    if !same_content {
        return Some(FileChange::Content);
    }
    if o.permissions == stat.mode {
        return None;
    }
    let mut f = new_version(ctx, name.clone(), FileKind::File, Some(o));
    f.size = o.size;
    f.permissions = stat.mode;
    f.modified_s = o.modified_s;
    f.modified_ns = o.modified_ns;
    f.block_size = o.block_size;
    f.blocks = o.blocks.clone();
    f.blocks_hash = o.blocks_hash.clone();
    Some(FileChange::Metadata(Entry {
        info: f,
        inode: meta.ino(),
        flags: 0,
    }))
}
