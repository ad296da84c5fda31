//! Which version of a file wins across devices, and whether this device
//! needs it: Syncthing's rules, so every device in a cluster agrees.

use proto::message::{FileInfo, FileKind};
use proto::version::Ordering;

/// Whether `a` should be the global version rather than `b`.
pub fn beats(a: &FileInfo, b: &FileInfo) -> bool {
    if a.invalid != b.invalid {
        return !a.invalid;
    }
    match a.version.compare(&b.version) {
        Ordering::Greater => true,
        Ordering::Lesser | Ordering::Equal => false,
        _ => wins_conflict(a, b),
    }
}

/// Between concurrent versions (Syncthing's `WinsConflict`): valid beats
/// invalid, a modification beats a deletion, the newer mtime wins, and the
/// vector order breaks a tie.
pub fn wins_conflict(a: &FileInfo, b: &FileInfo) -> bool {
    if a.invalid != b.invalid {
        return !a.invalid;
    }
    if a.deleted != b.deleted {
        return !a.deleted;
    }
    let (ta, tb) = ((a.modified_s, a.modified_ns), (b.modified_s, b.modified_ns));
    if ta != tb {
        return ta > tb;
    }
    a.version.compare(&b.version) == Ordering::ConcurrentGreater
}

/// Whether two file entries have the same content (Syncthing's
/// `BlocksEqual`): the blocks hashes when both have one, else the block
/// lists' hashes. Replacing one by the other is a metadata change, never
/// a conflict.
pub fn same_content(a: &FileInfo, b: &FileInfo) -> bool {
    if a.size != b.size {
        return false;
    }
    if !a.blocks_hash.is_empty() && !b.blocks_hash.is_empty() {
        return a.blocks_hash == b.blocks_hash;
    }
    a.blocks.len() == b.blocks.len()
        && a.blocks
            .iter()
            .zip(&b.blocks)
            .all(|(x, y)| x.hash == y.hash)
}

/// Whether a scanned entry is the global entry itself, on disk: the same
/// kind, content, modification time and permissions (a deletion: both
/// deleted). A scan records such an entry at the global version instead of
/// a new one, so a pull whose record a crash lost (or a copy of the same
/// file put in by hand) announces nothing that looks like a change to the
/// cluster (Syncthing merges only receive-only changes this way and
/// otherwise re-announces the file as a new version).
pub fn equivalent(scanned: &FileInfo, global: &FileInfo) -> bool {
    if scanned.invalid || global.invalid || scanned.deleted != global.deleted {
        return false;
    }
    if scanned.deleted {
        return true;
    }
    let perms = scanned.no_permissions
        || global.no_permissions
        || (scanned.permissions ^ global.permissions) & 0o777 == 0;
    perms
        && scanned.kind == global.kind
        && match scanned.kind {
            FileKind::File => {
                same_content(scanned, global)
                    && (scanned.modified_s, scanned.modified_ns)
                        == (global.modified_s, global.modified_ns)
            }
            FileKind::Symlink => scanned.symlink_target == global.symlink_target,
            FileKind::Directory => true,
        }
}

/// Whether this device, holding `local`, must act to reach `global`.
pub fn needs(local: Option<&FileInfo>, global: &FileInfo) -> bool {
    if global.invalid {
        return false;
    }
    match local {
        None => !global.deleted,
        // Invalid here (ignored, a receive-only change): needed once the
        // global version is newer or concurrent, as in Syncthing; the
        // puller then decides (an ignored name is recorded, not fetched).
        Some(l) if l.invalid => !matches!(
            l.version.compare(&global.version),
            Ordering::Equal | Ordering::Greater
        ),
        Some(l) if l.version.compare(&global.version) == Ordering::Equal => false,
        Some(l) => !(l.deleted && global.deleted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Name, ShortId, Vector};

    fn f(counters: &[(u64, u64)], mtime: i64, deleted: bool) -> FileInfo {
        let mut v = Vector::new();
        for &(id, n) in counters {
            for _ in 0..n {
                v = v.updated(ShortId(id), 0);
            }
        }
        let mut fi = FileInfo::new(Name::parse("x").expect("name"), FileKind::File);
        fi.version = v;
        fi.modified_s = mtime;
        fi.deleted = deleted;
        fi
    }

    #[test]
    fn newer_version_beats_older() {
        let old = f(&[(1, 1)], 100, false);
        let new = f(&[(1, 2)], 50, false);
        assert!(beats(&new, &old));
        assert!(!beats(&old, &new));
        assert!(!beats(&old, &old.clone()));
    }

    #[test]
    fn conflicts_prefer_valid_then_modification_then_newer() {
        let a = f(&[(1, 1)], 100, false);
        let b = f(&[(2, 1)], 200, false);
        assert!(beats(&b, &a) && !beats(&a, &b), "newer mtime wins");
        let del = f(&[(2, 1)], 300, true);
        assert!(
            beats(&a, &del) && !beats(&del, &a),
            "modification beats deletion"
        );
        let mut inv = f(&[(1, 5)], 300, false);
        inv.invalid = true;
        assert!(beats(&a, &inv), "valid beats invalid even when older");
        // Same mtime: exactly one side wins.
        let c = f(&[(2, 1)], 100, false);
        assert_ne!(beats(&a, &c), beats(&c, &a));
    }

    #[test]
    fn need_rules() {
        let g = f(&[(1, 2)], 1, false);
        assert!(needs(None, &g));
        assert!(!needs(Some(&g.clone()), &g));
        assert!(needs(Some(&f(&[(1, 1)], 1, false)), &g));
        let gone = f(&[(1, 3)], 1, true);
        assert!(!needs(None, &gone), "nothing to delete");
        assert!(needs(Some(&g), &gone), "must delete");
        let mut ignored = f(&[(1, 2)], 1, false);
        ignored.invalid = true;
        assert!(!needs(Some(&ignored), &g), "ignored at the global version");
        ignored.version = f(&[(1, 1)], 1, false).version;
        assert!(
            needs(Some(&ignored), &g),
            "a newer global: the puller decides"
        );
    }
}
