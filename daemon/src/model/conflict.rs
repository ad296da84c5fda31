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
}
