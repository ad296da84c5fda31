//! Conflicts: when a replacement is a conflict with what we have, and the
//! conflict copy that keeps the losing local version (Syncthing's name,
//! local time, at most `max_conflicts` per file).

use std::fs;
use std::path::Path;

use proto::{ShortId, Vector};

/// Whether replacing `current` (ours) by `replacement` loses a local
/// change (Syncthing's `inConflict`): the versions are concurrent, or the
/// replacement has a higher counter for this very device than ours has,
/// which means our index lost changes we made (a reset index, a restore).
pub fn in_conflict(current: &Vector, replacement: &Vector, own: ShortId) -> bool {
    current.compare(replacement).is_concurrent() || replacement.counter(own) > current.counter(own)
}

/// Moves the losing local file aside as
/// `<stem>.sync-conflict-YYYYMMDD-HHMMSS-<SHORTID><ext>` (Syncthing's form,
/// in local time, so peers recognise it and it syncs out like any file),
/// then keeps only the newest `max` copies of that file (-1: all). With
/// `max` 0 no copy is kept, as in Syncthing.
///
/// The time is the losing version's modification time (`lost_mtime`),
/// where Syncthing takes the moment of the copy: every device that held
/// the losing version then makes a copy of the same name and content, so
/// the cluster ends with one copy, not one per device and second.
pub fn conflict_copy(
    path: &Path,
    modified_by: ShortId,
    lost_mtime: std::time::SystemTime,
    max: i64,
) -> std::io::Result<()> {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.contains(".sync-conflict-") || max == 0 {
        // A conflict of a conflict is not copied again.
        return fs::remove_file(path);
    }
    let (stem, ext) = match base.rfind('.') {
        Some(i) if i > 0 => (&base[..i], &base[i..]),
        _ => (base.as_str(), ""),
    };
    let stamp = |t: std::time::SystemTime| {
        chrono::DateTime::<chrono::Local>::from(t).format("%Y%m%d-%H%M%S")
    };
    // Never over an existing copy (another conflict of the same second):
    // the first free name, taken by a hard link (which refuses an existing
    // name), then the original goes.
    let now = std::time::SystemTime::now();
    let shared = path.with_file_name(format!(
        "{stem}.sync-conflict-{}-{modified_by}{ext}",
        stamp(lost_mtime)
    ));
    if same_bytes(path, &shared) {
        // Another device that held the losing version made its copy first
        // and it synced here: the bytes are kept under the name every
        // device would give them, and a second copy would only be noise.
        return fs::remove_file(path);
    }
    let mut candidates = vec![
        format!(
            "{stem}.sync-conflict-{}-{modified_by}{ext}",
            stamp(lost_mtime)
        ),
        format!("{stem}.sync-conflict-{}-{modified_by}{ext}", stamp(now)),
    ];
    candidates.extend(
        (2..100).map(|n| format!("{stem}.sync-conflict-{}-{modified_by}-{n}{ext}", stamp(now))),
    );
    let free = candidates
        .into_iter()
        .map(|name| path.with_file_name(name))
        .find(|target| fs::symlink_metadata(target).is_err())
        .ok_or_else(|| std::io::Error::other("no free conflict copy name"))?;
    match fs::hard_link(path, &free) {
        Ok(()) => fs::remove_file(path)?,
        // Taken since we looked: not ours to replace.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        // No hard links here (FAT, some FUSE): the name was free a moment
        // ago, and a plain rename is the best this file system offers.
        Err(_) => fs::rename(path, &free)?,
    }
    if max > 0 {
        prune(path, stem, ext, max as usize)?;
    }
    Ok(())
}

/// Whether both are regular files with the same bytes (read in chunks).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if !ma.is_file() || !mb.is_file() || ma.len() != mb.len() {
        return false;
    }
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = match fa.read(&mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Removes all but the newest `keep` conflict copies of `<stem><ext>`.
fn prune(path: &Path, stem: &str, ext: &str, keep: usize) -> std::io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let prefix = format!("{stem}.sync-conflict-");
    let mut copies: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(ext))
                .is_some_and(is_stamp_and_id)
        })
        .collect();
    // The stamp sorts by time; newest first.
    copies.sort_unstable_by(|a, b| b.cmp(a));
    for old in copies.iter().skip(keep) {
        fs::remove_file(dir.join(old))?;
    }
    Ok(())
}

/// `YYYYMMDD-HHMMSS-<id>`.
fn is_stamp_and_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
}

/// A conflict copy's parts: the name it is a copy of, and the short ID
/// of the device whose version lost. `None` for other names.
pub fn parse_copy_name(name: &str) -> Option<(String, String)> {
    let (dir, base) = match name.rsplit_once('/') {
        Some((d, b)) => (Some(d), b),
        None => (None, name),
    };
    let (stem, rest) = base.split_once(".sync-conflict-")?;
    // YYYYMMDD-HHMMSS-SHORTID[-N][.ext]
    let (date, rest) = rest.split_at_checked(16)?;
    if !date.ends_with('-') || !date[..15].chars().all(|c| c.is_ascii_digit() || c == '-') {
        return None;
    }
    let (id_part, ext) = match rest.find('.') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let device = id_part.split('-').next()?.to_string();
    if device.len() != 7 {
        return None;
    }
    let original = format!("{stem}{ext}");
    Some((
        dir.map_or(original.clone(), |d| format!("{d}/{original}")),
        device,
    ))
}

/// What to keep when resolving a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The original stays; the copy goes (kept as a version).
    Original,
    /// The copy replaces the original (which is kept as a version).
    Copy,
    /// Both stay: the copy gets a plain name and is no longer a conflict.
    Both,
}

/// Resolves the conflict copy `copy` under `root` as `how` says; answers
/// the name the copy now has, if it stays. Whatever is removed or
/// replaced is kept as the folder's versioning says, so nothing is lost;
/// the rescan after it sends the result to the other devices.
pub fn resolve(
    root: &Path,
    versioning: crate::config::Versioning,
    copy: &str,
    how: Resolution,
) -> std::io::Result<Option<String>> {
    use crate::model::versioner::{keep, Keep};
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let (original, device) =
        parse_copy_name(copy).ok_or_else(|| bad(format!("{copy:?} is not a conflict copy")))?;
    let copy_path = crate::fs::safe_path(root, copy)?;
    if !fs::symlink_metadata(&copy_path).is_ok_and(|m| m.is_file()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{copy:?} is not there"),
        ));
    }
    let now = std::time::SystemTime::now();
    match how {
        Resolution::Original => {
            if keep(root, versioning, copy, Keep::Move, now)?.is_none() {
                fs::remove_file(&copy_path)?;
            }
            Ok(None)
        }
        Resolution::Copy => {
            let original_path = crate::fs::safe_path(root, &original)?;
            // Kept by a link first, so there is no moment without it.
            keep(root, versioning, &original, Keep::Link, now)?;
            fs::rename(&copy_path, &original_path)?;
            Ok(Some(original))
        }
        Resolution::Both => {
            let (stem, ext) = match original.rfind('.') {
                Some(i) if i > 0 && !original[i..].contains('/') => {
                    (&original[..i], &original[i..])
                }
                _ => (original.as_str(), ""),
            };
            let stamp = chrono::Local::now().format("%Y-%m-%d %H%M%S");
            let name = (1..100)
                .map(|n| {
                    let tag = if n == 1 {
                        String::new()
                    } else {
                        format!(" {n}")
                    };
                    format!("{stem} (from {device} {stamp}{tag}){ext}")
                })
                .find(|n| {
                    crate::fs::safe_path(root, n).is_ok_and(|p| fs::symlink_metadata(p).is_err())
                })
                .ok_or_else(|| std::io::Error::other("no free name for the copy"))?;
            let target = crate::fs::safe_path(root, &name)?;
            // A link refuses an existing name, so nothing is replaced.
            fs::hard_link(&copy_path, &target)?;
            fs::remove_file(&copy_path)?;
            Ok(Some(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn names_match_syncthing_in_local_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("notes.txt");
        fs::write(&p, "mine").expect("write");
        let when = std::time::SystemTime::now();
        let before = chrono::DateTime::<chrono::Local>::from(when)
            .format("%Y%m%d-%H%M%S")
            .to_string();
        conflict_copy(&p, ShortId(0x1234_5678_9abc_def0), when, 10).expect("copy");
        let n = names(dir.path());
        assert_eq!(n.len(), 1);
        let want = format!("notes.sync-conflict-{before}");
        assert!(n[0].starts_with(&want), "{n:?} vs {want}");
        assert!(
            n[0].ends_with(&format!("-{}.txt", ShortId(0x1234_5678_9abc_def0))),
            "{n:?}"
        );
    }

    #[test]
    fn an_existing_copy_of_the_same_second_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("n.txt");
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::write(&p, "first").expect("write");
        conflict_copy(&p, ShortId(1), when, -1).expect("copy");
        fs::write(&p, "second").expect("write");
        conflict_copy(&p, ShortId(1), when, -1).expect("copy");
        let n = names(dir.path());
        assert_eq!(n.len(), 2, "{n:?}");
        let mut contents: Vec<String> = n
            .iter()
            .map(|x| fs::read_to_string(dir.path().join(x)).expect("read"))
            .collect();
        contents.sort();
        assert_eq!(contents, ["first", "second"]);
    }

    #[test]
    fn the_same_copy_synced_from_a_peer_first_is_not_made_twice() {
        // Two devices held the losing version; one's copy arrived here
        // before this device pulled the winner.
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("n.txt");
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        fs::write(&p, "alpha's version").expect("write");
        let peer = tempfile::tempdir().expect("tmp");
        let theirs = peer.path().join("n.txt");
        fs::write(&theirs, "alpha's version").expect("write");
        conflict_copy(&theirs, ShortId(1), when, -1).expect("copy");
        let copy = names(peer.path()).pop().expect("their copy");
        fs::copy(peer.path().join(&copy), dir.path().join(&copy)).expect("synced");
        conflict_copy(&p, ShortId(1), when, -1).expect("copy");
        assert_eq!(names(dir.path()), std::slice::from_ref(&copy));
        assert_eq!(
            fs::read_to_string(dir.path().join(&copy)).expect("read"),
            "alpha's version"
        );
    }

    #[test]
    fn only_the_newest_copies_are_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        for i in 0..5 {
            let old = format!("a.sync-conflict-2020010{i}-000000-ABCDEFG.txt");
            fs::write(dir.path().join(old), "old").expect("write");
        }
        fs::write(
            dir.path()
                .join("b.sync-conflict-20200101-000000-ABCDEFG.txt"),
            "",
        )
        .expect("w");
        let p = dir.path().join("a.txt");
        fs::write(&p, "mine").expect("write");
        conflict_copy(&p, ShortId(1), std::time::SystemTime::now(), 3).expect("copy");
        let n = names(dir.path());
        assert_eq!(n.len(), 4, "{n:?}");
        assert!(n.iter().any(|x| x.starts_with("a.sync-conflict-20200104")));
        assert!(n.iter().any(|x| x.starts_with("a.sync-conflict-20200103")));
        assert!(!n.iter().any(|x| x.starts_with("a.sync-conflict-20200102")));
        assert!(
            n.iter().any(|x| x.starts_with("b.")),
            "another file's copy stays"
        );
    }

    #[test]
    fn our_own_higher_counter_in_the_replacement_is_a_conflict() {
        let me = ShortId(1);
        let other = ShortId(2);
        let ours = Vector::new().updated(other, 0);
        let theirs = ours.updated(other, 0);
        assert!(!in_conflict(&ours, &theirs, me), "a plain successor");
        assert!(
            in_conflict(&ours, &Vector::new().updated(me, 0), me),
            "concurrent"
        );
        // Theirs descends from a version of ours that our index forgot.
        let forgotten = ours.updated(me, 0).updated(me, 0);
        let theirs = forgotten.updated(other, 0);
        let reset = Vector::new().updated(me, 0).merged(&ours);
        assert!(reset.compare(&theirs) == proto::version::Ordering::Lesser);
        assert!(in_conflict(&reset, &theirs, me));
    }

    #[test]
    fn conflict_copy_names_parse_back_to_their_original() {
        assert_eq!(
            parse_copy_name("a/b/c.sync-conflict-20261202-101500-ABCDEFG.txt"),
            Some(("a/b/c.txt".into(), "ABCDEFG".into()))
        );
        assert_eq!(
            parse_copy_name("c.sync-conflict-20261202-101500-ABCDEFG-3"),
            Some(("c".into(), "ABCDEFG".into()))
        );
        assert_eq!(parse_copy_name("c.txt"), None);
        assert_eq!(parse_copy_name("c.sync-conflict-junk.txt"), None);
    }

    #[test]
    fn each_resolution_keeps_what_it_says_and_versions_the_rest() {
        let dir = tempfile::tempdir().expect("test");
        let root = dir.path();
        let v = crate::config::Versioning::Trashcan { days: 30 };
        let copy = "c.sync-conflict-20261202-101500-ABCDEFG.txt";
        let put = |n: &str, t: &str| fs::write(root.join(n), t).expect("test");
        let read = |n: &str| fs::read_to_string(root.join(n)).expect("test");

        put("c.txt", "ours");
        put(copy, "theirs");
        assert_eq!(
            resolve(root, v, copy, Resolution::Copy)
                .expect("test")
                .as_deref(),
            Some("c.txt")
        );
        assert_eq!(read("c.txt"), "theirs");
        assert!(!root.join(copy).exists());
        assert_eq!(read(".stversions/c.txt"), "ours");

        put(copy, "theirs again");
        assert_eq!(
            resolve(root, v, copy, Resolution::Original).expect("test"),
            None
        );
        assert_eq!(read("c.txt"), "theirs");
        assert!(!root.join(copy).exists());

        put(copy, "both");
        let kept = resolve(root, v, copy, Resolution::Both)
            .expect("test")
            .expect("test");
        assert!(
            kept.starts_with("c (from ABCDEFG ") && kept.ends_with(").txt"),
            "{kept}"
        );
        assert_eq!(read(&kept), "both");
        assert_eq!(read("c.txt"), "theirs");
        assert!(parse_copy_name(&kept).is_none());

        assert!(resolve(root, v, "c.txt", Resolution::Original).is_err());
        assert!(resolve(
            root,
            v,
            "../x.sync-conflict-20261202-101500-ABCDEFG",
            Resolution::Original
        )
        .is_err());
    }
}
