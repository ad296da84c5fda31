//! Versions: what the puller replaces or deletes is kept in `.stversions/`
//! in Syncthing's layout (the plain path for the trash can,
//! `name~YYYYMMDD-HHMMSS.ext` otherwise, in local time), listed, brought
//! back, and cleaned out by age and count ([`trashcan`], [`simple`],
//! [`staggered`] decide what goes).
//!
//! A copy is taken without a moment where the file is missing: a replaced
//! file is hard-linked into `.stversions/` before the new one is renamed
//! over it (copied where the file system has no hard links), a deleted one
//! is renamed there.

mod simple;
mod staggered;
mod trashcan;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Versioning;
use crate::fs::safe_path;

/// The versions directory at a folder's root.
pub const DIR: &str = ".stversions";

/// The time tag's format (local time).
const TAG: &str = "%Y%m%d-%H%M%S";

/// One kept copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The folder-relative name of the file it is a copy of.
    pub name: String,
    /// Its own name, folder-relative (under [`DIR`]).
    pub stored: String,
    /// When it was kept.
    pub at: SystemTime,
    /// Its size in bytes.
    pub size: u64,
}

/// How a copy is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The file stays where it is (it is about to be replaced).
    Link,
    /// The file moves (it is being deleted).
    Move,
}

/// Keeps the file `name` under `root` as the folder's versioning says;
/// returns the copy's folder-relative name, or `None` when nothing is
/// kept (versioning off, nothing there, not a regular file). With
/// [`Keep::Move`] and versioning off, nothing is moved: the caller
/// deletes.
pub fn keep(
    root: &Path,
    versioning: Versioning,
    name: &str,
    how: Keep,
    now: SystemTime,
) -> io::Result<Option<String>> {
    if versioning == Versioning::None {
        return Ok(None);
    }
    let path = safe_path(root, name)?;
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let stored = stored_name(versioning, name, now);
    let dest = root.join(&stored);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    // Created or not, no directory on the way may be a symlink.
    let dest = safe_path(root, &stored)?;
    if fs::symlink_metadata(&dest).is_ok() {
        // The trash can keeps the last copy; a tag to the second may have
        // been taken by an earlier copy this second.
        fs::remove_file(&dest)?;
    }
    match how {
        Keep::Move => {
            fs::rename(&path, &dest)?;
            stamp(root, versioning, &stored, now);
        }
        Keep::Link => {
            if fs::hard_link(&path, &dest).is_err() {
                fs::copy(&path, &dest)?;
            }
        }
    }
    Ok(Some(stored))
}

/// Dates a trash can copy to when it was kept (its modification time, as
/// Syncthing does; cleanup goes by it). A copy kept by [`Keep::Link`] is
/// stamped once the file it shares its data with has been replaced.
pub fn stamp(root: &Path, versioning: Versioning, stored: &str, now: SystemTime) {
    if !matches!(versioning, Versioning::Trashcan { .. }) {
        return;
    }
    if let Ok(f) = safe_path(root, stored).and_then(fs::File::open) {
        let _ = f.set_modified(now);
    }
}

/// Where a copy of `name` kept at `now` goes.
fn stored_name(versioning: Versioning, name: &str, now: SystemTime) -> String {
    match versioning {
        Versioning::Trashcan { .. } | Versioning::None => format!("{DIR}/{name}"),
        Versioning::Simple { .. } | Versioning::Staggered { .. } => {
            let tag = chrono::DateTime::<chrono::Local>::from(now).format(TAG);
            format!("{DIR}/{}", tagged(name, &tag.to_string()))
        }
    }
}

/// `dir/stem~tag.ext`, the extension as Go's `filepath.Ext` sees it
/// (from the last dot of the base name), as Syncthing names versions.
fn tagged(name: &str, tag: &str) -> String {
    let (dir, base) = match name.rsplit_once('/') {
        Some((d, b)) => (Some(d), b),
        None => (None, name),
    };
    let (stem, ext) = match base.rfind('.') {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    let file = format!("{stem}~{tag}{ext}");
    match dir {
        Some(d) => format!("{d}/{file}"),
        None => file,
    }
}

/// The name and time of a tagged base name, if it is one.
fn untagged(base: &str) -> Option<(String, SystemTime)> {
    let i = base.rfind('~')?;
    let (stem, rest) = (&base[..i], &base[i + 1..]);
    let tag = rest.get(..15)?;
    let ext = &rest[15..];
    if !ext.is_empty() && !ext.starts_with('.') {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(tag, TAG).ok()?;
    let local = t.and_local_timezone(chrono::Local).earliest()?;
    Some((format!("{stem}{ext}"), local.into()))
}

/// Every version under `root` whose name is `prefix` or under it (all
/// when empty), by name, oldest first.
pub fn list(root: &Path, prefix: &str) -> io::Result<Vec<Version>> {
    let base = root.join(DIR);
    let mut out = Vec::new();
    if !base.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let m = e.metadata()?;
            let p = e.path();
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            if !m.is_file() {
                continue;
            }
            let Some(rel) = p.strip_prefix(&base).ok().and_then(Path::to_str) else {
                continue;
            };
            let (dir_part, file) = match rel.rsplit_once('/') {
                Some((d, f)) => (Some(d), f),
                None => (None, rel),
            };
            let (name, at) = match untagged(file) {
                Some((n, at)) => (n, at),
                // A trash can copy, dated by `stamp`.
                None => (file.to_string(), m.modified()?),
            };
            let name = match dir_part {
                Some(d) => format!("{d}/{name}"),
                None => name,
            };
            let under = prefix.is_empty()
                || name == prefix
                || name
                    .strip_prefix(prefix.trim_end_matches('/'))
                    .is_some_and(|r| r.starts_with('/'));
            if under {
                out.push(Version {
                    name,
                    stored: format!("{DIR}/{rel}"),
                    at,
                    size: m.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.name, a.at).cmp(&(&b.name, b.at)));
    Ok(out)
}

/// Brings back the version of `name` kept last (at or before `at` if
/// given): the file there now, if any, is kept first, as any replaced
/// file is. Returns the version restored.
pub fn restore(
    root: &Path,
    versioning: Versioning,
    name: &str,
    at: Option<SystemTime>,
    now: SystemTime,
) -> Result<Version, String> {
    let versions = list(root, name).map_err(|e| format!("listing versions: {e}"))?;
    let mine: Vec<&Version> = versions.iter().filter(|v| v.name == name).collect();
    let chosen = mine
        .iter()
        .rev()
        .find(|v| at.is_none_or(|at| v.at <= at))
        .ok_or_else(|| match (mine.is_empty(), at) {
            (true, _) => format!("no version of {name:?} is kept"),
            (false, _) => format!(
                "no version of {name:?} is from that time or before; the oldest is from {}",
                local_time(mine[0].at)
            ),
        })?;
    let path = safe_path(root, name).map_err(|e| format!("{name:?}: {e}"))?;
    let from = safe_path(root, &chosen.stored).map_err(|e| format!("{e}"))?;
    // The copy taken of the current file must not land on the version
    // being restored (the trash can keeps one copy per name).
    let staging = root
        .join(DIR)
        .join(format!(".restoring-{}", std::process::id()));
    fs::rename(&from, &staging).map_err(|e| format!("taking the version: {e}"))?;
    // The current file is kept even with versioning off: a restore
    // must not lose what it replaces.
    let keeping = match versioning {
        Versioning::None => Versioning::Trashcan { days: 0 },
        v => v,
    };
    let result = (|| -> io::Result<()> {
        keep(root, keeping, name, Keep::Move, now)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        safe_path(root, name)?;
        fs::rename(&staging, &path)
    })();
    if let Err(e) = result {
        let _ = fs::rename(&staging, &from);
        return Err(format!("restoring {name:?}: {e}"));
    }
    Ok((*chosen).clone())
}

/// Removes the versions the folder's versioning no longer keeps, and
/// directories left empty; returns what was removed.
pub fn clean(root: &Path, versioning: Versioning, now: SystemTime) -> io::Result<Vec<Version>> {
    let all = list(root, "")?;
    let gone = match versioning {
        // Turned off: what is kept stays until removed by hand.
        Versioning::None => Vec::new(),
        Versioning::Trashcan { days } => trashcan::expired(&all, days, now),
        Versioning::Simple { keep } => simple::beyond(&all, keep),
        Versioning::Staggered { max_age_days } => staggered::thinned(&all, max_age_days, now),
    };
    for v in &gone {
        match fs::remove_file(root.join(&v.stored)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !gone.is_empty() {
        remove_empty_dirs(&root.join(DIR));
    }
    Ok(gone)
}

/// Removes empty directories under `dir` (not `dir` itself).
fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p: PathBuf = e.path();
            remove_empty_dirs(&p);
            let _ = fs::remove_dir(&p);
        }
    }
}

/// A time as shown to users: local, to the second.
pub fn local_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Groups versions by the file they are copies of, each oldest first
/// (as [`list`] sorts them).
fn by_file(all: &[Version]) -> Vec<&[Version]> {
    all.chunk_by(|a, b| a.name == b.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tags_follow_syncthings_names() {
        assert_eq!(
            tagged("a/b.txt", "20261202-101500"),
            "a/b~20261202-101500.txt"
        );
        assert_eq!(tagged("x", "20261202-101500"), "x~20261202-101500");
        assert_eq!(
            tagged("a.tar.gz", "20261202-101500"),
            "a.tar~20261202-101500.gz"
        );
        assert_eq!(
            tagged(".bashrc", "20261202-101500"),
            "~20261202-101500.bashrc"
        );
        for n in ["b.txt", "x", "a.tar.gz", ".bashrc", "we~ird.txt"] {
            let t = tagged(n, "20261202-101500");
            assert_eq!(untagged(&t).map(|(n, _)| n).as_deref(), Some(n), "{t}");
        }
        assert!(untagged("plain.txt").is_none());
        assert!(untagged("a~notatag.txt").is_none());
    }

    /// Replaced files are kept without a gap, deleted ones moved; the
    /// trash can keeps one copy per name; restore keeps the current file
    /// and brings the chosen version back.
    #[test]
    fn keep_list_and_restore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir(root.join("d")).expect("mkdir");
        fs::write(root.join("d/f.txt"), "one").expect("write");
        let now = SystemTime::now();
        let simple = Versioning::Simple { keep: 5 };
        let kept = keep(root, simple, "d/f.txt", Keep::Link, now)
            .expect("keep")
            .expect("kept");
        assert!(root.join("d/f.txt").exists(), "linked, not moved");
        assert!(
            kept.starts_with(".stversions/d/f~") && kept.ends_with(".txt"),
            "{kept}"
        );
        fs::write(root.join("d/f.txt.new"), "two").expect("write");
        fs::rename(root.join("d/f.txt.new"), root.join("d/f.txt")).expect("replace");
        assert_eq!(fs::read(root.join(&kept)).expect("read"), b"one");

        let later = now + Duration::from_secs(2);
        keep(root, simple, "d/f.txt", Keep::Move, later).expect("keep");
        assert!(!root.join("d/f.txt").exists(), "moved");
        let v = list(root, "d").expect("list");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].name.as_str(), v[1].size), ("d/f.txt", 3));
        assert!(
            list(root, "d/f").expect("list").is_empty(),
            "a prefix is a path"
        );

        let back = restore(
            root,
            simple,
            "d/f.txt",
            Some(now + Duration::from_secs(1)),
            later,
        )
        .expect("restore");
        assert_eq!(back.stored, kept);
        assert_eq!(fs::read(root.join("d/f.txt")).expect("read"), b"one");
        assert_eq!(
            list(root, "").expect("list").len(),
            1,
            "the restored one left"
        );
        assert!(restore(root, simple, "nope", None, later).is_err());

        let trash = Versioning::Trashcan { days: 30 };
        fs::write(root.join("t"), "first").expect("write");
        keep(root, trash, "t", Keep::Link, now).expect("keep");
        fs::write(root.join("t.new"), "second").expect("write");
        fs::rename(root.join("t.new"), root.join("t")).expect("replace");
        assert_eq!(
            fs::read(root.join(".stversions/t")).expect("read"),
            b"first"
        );
        keep(root, trash, "t", Keep::Move, now).expect("keep");
        assert_eq!(
            fs::read(root.join(".stversions/t")).expect("read"),
            b"second"
        );
        assert_eq!(
            keep(root, Versioning::None, "d/f.txt", Keep::Move, now).expect("off"),
            None
        );
        assert!(
            root.join("d/f.txt").exists(),
            "versioning off moves nothing"
        );
    }
}
