//! Applying entries on disk: directories, symlinks, deletions, the
//! final check-and-rename of a pulled file, and the shortcut for content
//! already here. Nothing is replaced or removed unless the disk still
//! matches what the index says we have; a local change that would be lost
//! becomes a conflict copy.

use super::{Outcome, PullReport};
use crate::config::Versioning;
use crate::fs::safe_path;
use crate::index::{Entry, FolderIndex, FLAG_RECEIVE_ONLY};
use crate::model::conflict::{conflict_copy, in_conflict};
use crate::model::temp_file::TempFile;
use crate::model::versioner::{self, Keep};
use proto::message::{FileInfo, FileKind};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether what is on disk at `path` is what the index says we have.
pub(super) fn matches_index(path: &Path, local: Option<&Entry>) -> bool {
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
pub(super) fn remove_temp_files(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let is_temp = e.file_name().to_str().is_some_and(crate::fs::is_temp_name);
        if is_temp && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The longest file name (in bytes) Linux file systems take.
pub(super) const NAME_MAX: usize = 255;

/// What applying an entry needs besides the entry.
#[derive(Clone)]
pub(super) struct Apply {
    pub(super) root: PathBuf,
    pub(super) own: proto::ShortId,
    pub(super) max_conflicts: i64,
    pub(super) versioning: Versioning,
    /// Where kept versions' blocks are mapped (none: they are not).
    pub(super) index: Option<Arc<FolderIndex>>,
    /// Conflicts met (counted for metrics).
    pub(super) conflicts: Arc<std::sync::atomic::AtomicU64>,
}

impl Apply {
    /// Keeps our file about to be replaced ([`Keep::Link`]) or deleted
    /// ([`Keep::Move`]) as the folder's versioning says; false when
    /// nothing was kept (then a deletion is the caller's to do). The
    /// copy's blocks go in the block map: a restored or re-created file
    /// is then filled from it, not fetched.
    pub(super) fn keep(&self, local: Option<&Entry>, how: Keep) -> std::io::Result<bool> {
        Ok(self.keep_as(local, how)?.is_some())
    }

    /// [`Apply::keep`], answering the copy's name.
    fn keep_as(&self, local: Option<&Entry>, how: Keep) -> std::io::Result<Option<String>> {
        let Some(l) = local.filter(|l| l.info.kind == FileKind::File && !l.info.deleted) else {
            return Ok(None);
        };
        let name = l.info.name.as_str();
        let Some(stored) =
            versioner::keep(&self.root, self.versioning, name, how, SystemTime::now())?
        else {
            return Ok(None);
        };
        if let Some(index) = &self.index {
            if let Err(e) = index
                .unmap_version(&stored)
                .and_then(|()| index.map_version(&stored, &l.info))
            {
                tracing::warn!(version = stored, "block map: {e}");
            }
        }
        Ok(Some(stored))
    }
}

/// Moves a file in the way of a new directory or symlink aside as a
/// conflict copy when replacing it would lose a local change, else
/// removes it. Sets `report.rescan` when a copy was made (it is a new
/// local file).
pub(super) fn clear_file_in_way(
    ctx: &Apply,
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
        let lost = local.map_or_else(SystemTime::now, |l| mtime(&l.info));
        conflict_copy(path, info.modified_by, lost, ctx.max_conflicts)?;
        ctx.conflicts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        report.rescan = true;
        Ok(())
    } else if ctx.keep(local, Keep::Move)? {
        Ok(())
    } else {
        fs::remove_file(path)
    }
}

pub(super) fn directory(
    ctx: &Apply,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    let path = safe_path(&ctx.root, info.name.as_str())?;
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

pub(super) fn symlink(
    ctx: &Apply,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    use std::os::unix::ffi::OsStrExt;
    let path = safe_path(&ctx.root, info.name.as_str())?;
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
pub(super) fn remove_empty_dir(
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

pub(super) fn delete(
    ctx: &Apply,
    info: &FileInfo,
    local: Option<&Entry>,
    report: &mut PullReport,
) -> std::io::Result<Outcome> {
    let path = safe_path(&ctx.root, info.name.as_str())?;
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
        Ok(_) => {
            if !ctx.keep(local, Keep::Move)? {
                fs::remove_file(&path)?;
            }
        }
    }
    Ok(Outcome::Done(0))
}

/// Makes the temp file durable and puts it in place. Returns the outcome
/// and whether a conflict copy was made (the copy needs a scan).
pub(super) fn finish(
    out: TempFile,
    tmp: &Path,
    path: &Path,
    info: &FileInfo,
    local: Option<&Entry>,
    ctx: &Apply,
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
        if in_conflict(&l.info.version, &info.version, ctx.own) {
            conflict_copy(path, info.modified_by, mtime(&l.info), ctx.max_conflicts)?;
            ctx.conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conflicted = true;
        }
    }
    // Kept before the rename, so there is no moment without the file.
    let kept = match conflicted {
        true => None,
        false => ctx.keep_as(local, Keep::Link)?,
    };
    // The directory is fsynced with its neighbours' before the index
    // records any of them (see `Landed`).
    fs::rename(tmp, path)?;
    if let Some(stored) = kept {
        versioner::stamp(&ctx.root, ctx.versioning, &stored, SystemTime::now());
    }
    Ok((Outcome::Done(fs::symlink_metadata(path)?.ino()), conflicted))
}

/// Takes the global entry for a file whose content we already have:
/// permissions and modification time follow it, the data stays.
pub(super) fn shortcut(path: &Path, info: &FileInfo, local: &Entry) -> std::io::Result<Outcome> {
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

pub(super) fn mtime(info: &FileInfo) -> SystemTime {
    let s = Duration::new(
        info.modified_s.max(0) as u64,
        info.modified_ns.clamp(0, 999_999_999) as u32,
    );
    UNIX_EPOCH + s
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
            root: dir.path().to_path_buf(),
            own: proto::ShortId(1),
            max_conflicts: 10,
            versioning: Versioning::None,
            index: None,
            conflicts: Default::default(),
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
