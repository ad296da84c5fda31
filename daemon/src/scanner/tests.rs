//! Scanner behaviour on real files in temporary folders.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use proto::message::FileKind;
use sha2::{Digest, Sha256};

use super::*;
use crate::index::Index;

const ME: ShortId = ShortId(0xabc);

/// No mass delete is accepted in advance.
static NO: AtomicBool = AtomicBool::new(false);

/// A test scan's options: two hashing threads, no delete guard,
/// deletions recorded.
fn options<'a>(
    ignores: &'a Ignores,
    progress: &'a ScanProgress,
    cancel: &'a AtomicBool,
) -> ScanOptions<'a> {
    ScanOptions {
        own: ME,
        ignores,
        progress,
        cancel,
        threads: 2,
        receive_only: false,
        delete_guard: None,
        recently_deleted: 0,
        record_deletes: true,
        accept_deletes: &NO,
    }
}

struct Folder {
    _dir: tempfile::TempDir,
    root: PathBuf,
    index: Index,
}

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("mkdir");
        crate::fs::ensure_marker(&root).expect("marker");
        let index = Index::open(&dir.path().join("index"), 4 << 20).expect("index");
        Self {
            _dir: dir,
            root,
            index,
        }
    }

    fn write(&self, name: &str, data: &[u8]) {
        let p = self.root.join(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, data).expect("write");
    }

    fn scan_with(&self, ignores: &Ignores) -> ScanReport {
        let progress = ScanProgress::default();
        let cancel = AtomicBool::new(false);
        let opts = options(ignores, &progress, &cancel);
        let f = self.index.folder("f").expect("folder");
        scan(&self.root, &f, &opts).expect("scan")
    }

    fn scan(&self) -> ScanReport {
        self.scan_with(&Ignores::empty())
    }

    fn scan_paths(&self, paths: &[&str]) -> ScanReport {
        let progress = ScanProgress::default();
        let cancel = AtomicBool::new(false);
        let ignores = Ignores::empty();
        let opts = options(&ignores, &progress, &cancel);
        let f = self.index.folder("f").expect("folder");
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        scan_paths(&self.root, &f, &opts, &paths).expect("scan")
    }

    fn get(&self, name: &str) -> Option<FileInfo> {
        let f = self.index.folder("f").expect("folder");
        f.get(LOCAL, name).expect("get").map(|e| e.info)
    }
}

/// Makes the scanner see files as quiet sooner: their mtime is set well in
/// the past, as it is for any file not being written right now.
fn age(root: &Path) {
    for e in walk_all(root) {
        age_file(&e);
    }
}

fn age_file(path: &Path) {
    let t = SystemTime::now() - Duration::from_secs(10);
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(t).expect("set mtime");
}

fn walk_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("meta");
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn first_scan_records_files_directories_and_symlinks() {
    let f = Folder::new();
    let big: Vec<u8> = (0..(2 * 131072 + 5)).map(|i| (i % 253) as u8).collect();
    f.write("a.txt", b"hello");
    f.write("empty", b"");
    f.write("dir/sub/big.bin", &big);
    symlink("a.txt", f.root.join("link")).expect("symlink");
    fs::set_permissions(f.root.join("a.txt"), fs::Permissions::from_mode(0o755)).expect("chmod");
    f.write(".stignore", b"");
    f.write("dir/.syncthing.big.bin.tmp", b"partial download");
    age(&f.root);

    let r = f.scan();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.hashed_files, 3);

    let a = f.get("a.txt").expect("a.txt");
    assert_eq!((a.kind, a.size, a.permissions), (FileKind::File, 5, 0o755));
    assert_eq!(a.blocks.len(), 1);
    assert_eq!(a.blocks[0].hash, <[u8; 32]>::from(Sha256::digest(b"hello")));
    assert!(a.version.counter(ME) > 0);
    assert_eq!(a.modified_by, ME);
    assert_eq!(a.blocks_hash, blocks_hash(&a.blocks));

    let empty = f.get("empty").expect("empty");
    assert_eq!(empty.blocks.len(), 1);
    assert_eq!(
        (empty.blocks[0].size, empty.blocks[0].hash),
        (0, EMPTY_HASH)
    );

    let big_info = f.get("dir/sub/big.bin").expect("big");
    assert_eq!(big_info.blocks.len(), 3);
    assert_eq!(big_info.blocks[2].offset, 2 * 131072);
    assert_eq!(big_info.blocks[2].size, 5);
    assert_eq!(
        big_info.blocks[1].hash,
        <[u8; 32]>::from(Sha256::digest(&big[131072..262144]))
    );

    assert_eq!(f.get("dir").expect("dir").kind, FileKind::Directory);
    assert_eq!(f.get("dir/sub").expect("sub").kind, FileKind::Directory);
    let link = f.get("link").expect("link");
    assert_eq!(
        (link.kind, link.symlink_target.as_slice()),
        (FileKind::Symlink, &b"a.txt"[..])
    );
    // Internal names are never indexed.
    for n in [".stfolder", ".stignore", "dir/.syncthing.big.bin.tmp"] {
        assert!(f.get(n).is_none(), "{n} indexed");
    }
}

#[test]
fn rescans_are_incremental_and_track_changes() {
    let f = Folder::new();
    f.write("keep", b"same");
    f.write("change", b"before");
    f.write("gone", b"bye");
    age(&f.root);
    f.scan();
    let before = f.get("change").expect("change");
    let gone_before = f.get("gone").expect("gone");

    // Nothing changed: nothing hashed, nothing written.
    let r = f.scan();
    assert_eq!((r.hashed_files, r.changes), (0, 0));

    f.write("change", b"after, longer");
    fs::remove_file(f.root.join("gone")).expect("rm");
    age_file(&f.root.join("change"));
    let r = f.scan();
    assert_eq!(r.hashed_files, 1);
    let after = f.get("change").expect("change");
    assert_eq!(after.size, 13);
    assert_eq!(
        after.version.compare(&before.version),
        proto::version::Ordering::Greater
    );
    assert!(after.sequence > before.sequence);
    let tomb = f.get("gone").expect("tombstone kept");
    assert!(tomb.deleted && tomb.blocks.is_empty() && tomb.size == 0);
    assert_eq!(
        tomb.version.compare(&gone_before.version),
        proto::version::Ordering::Greater
    );

    // A permission change keeps the blocks without re-hashing.
    fs::set_permissions(f.root.join("keep"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = f.scan();
    assert_eq!((r.hashed_files, r.changes), (0, 1));
    assert_eq!(f.get("keep").expect("keep").permissions, 0o600);
}

#[test]
fn a_rename_is_a_delete_plus_an_add_with_the_same_blocks() {
    let f = Folder::new();
    f.write("old-name", b"some content");
    age(&f.root);
    f.scan();
    let old = f.get("old-name").expect("old");
    fs::rename(f.root.join("old-name"), f.root.join("new-name")).expect("mv");
    f.scan();
    assert!(f.get("old-name").expect("tombstone").deleted);
    let new = f.get("new-name").expect("new");
    assert_eq!(new.blocks, old.blocks);
    assert_eq!(new.blocks_hash, old.blocks_hash);
}

#[test]
fn nfd_names_are_normalised_to_nfc_on_disk_and_in_the_index() {
    let f = Folder::new();
    f.write("cafe\u{301}.txt", b"x");
    age(&f.root);
    let r = f.scan();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(f.get("caf\u{e9}.txt").is_some());
    assert!(f.root.join("caf\u{e9}.txt").exists());
    assert!(!f.root.join("cafe\u{301}.txt").exists());
}

#[test]
fn a_missing_marker_or_root_is_an_error_not_a_mass_deletion() {
    let f = Folder::new();
    f.write("a", b"1");
    age(&f.root);
    f.scan();
    fs::remove_dir(f.root.join(crate::fs::MARKER)).expect("rm marker");
    let progress = ScanProgress::default();
    let cancel = AtomicBool::new(false);
    let ignores = Ignores::empty();
    let opts = ScanOptions {
        threads: 1,
        ..options(&ignores, &progress, &cancel)
    };
    let folder = f.index.folder("f").expect("folder");
    let err = scan(&f.root, &folder, &opts).expect_err("no marker");
    assert!(matches!(err, ScanError::MissingMarker(_)), "{err}");
    let err = scan(&f.root.join("nope"), &folder, &opts).expect_err("no root");
    assert!(matches!(err, ScanError::MissingRoot(_)), "{err}");
    assert!(!f.get("a").expect("a").deleted);
}

#[test]
fn ignored_files_are_not_indexed_and_newly_ignored_ones_turn_invalid() {
    let f = Folder::new();
    f.write("keep.txt", b"k");
    f.write("build/out.o", b"o");
    f.write("notes.log", b"l");
    age(&f.root);
    f.scan();
    assert!(f.get("notes.log").is_some());
    let ignores = Ignores::parse("*.log\nbuild\n", &f.root).expect("patterns");
    fs::remove_file(f.root.join("build/out.o")).expect("rm");
    let r = f.scan_with(&ignores);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let log = f.get("notes.log").expect("still indexed");
    assert!(log.invalid, "ignored entries are announced invalid");
    // An ignored file that disappears is not reported deleted.
    assert!(!f.get("build/out.o").expect("entry").deleted);
    f.write("new.log", b"n");
    f.scan_with(&ignores);
    assert!(
        f.get("new.log").is_none(),
        "never-seen ignored files stay out"
    );
}

#[test]
fn a_file_written_during_hashing_is_never_recorded_with_mixed_content() {
    // Each state of the file is one repeated byte, so every state's block
    // list is known; a mixed read would produce a list matching none.
    let f = Folder::new();
    let size = 4 * 131072;
    let states: Vec<Vec<u8>> = (0..8u8).map(|k| vec![k; size]).collect();
    let lists: Vec<Vec<[u8; 32]>> = states
        .iter()
        .map(|s| {
            s.chunks(131072)
                .map(|c| <[u8; 32]>::from(Sha256::digest(c)))
                .collect()
        })
        .collect();
    f.write("hot", &states[0]);
    let stop = AtomicBool::new(false);
    let path = f.root.join("hot");
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::io::{Seek, Write};
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                k = (k + 1) % states.len();
                let mut file = fs::File::options().write(true).open(&path).expect("open");
                // Rewrite in place, block by block: a reader can see a mix.
                for block in states[k].chunks(131072) {
                    file.write_all(block).expect("write");
                }
                file.rewind().expect("rewind");
            }
        });
        for _ in 0..3 {
            let r = f.scan();
            if let Some(info) = f.get("hot") {
                let got: Vec<[u8; 32]> = info.blocks.iter().map(|b| b.hash).collect();
                assert!(lists.contains(&got), "recorded a block list no state had");
            }
            drop(r);
        }
        stop.store(true, Ordering::Relaxed);
    });
    // Once quiet, the file is recorded as it is.
    age(&f.root);
    f.scan();
    let info = f.get("hot").expect("recorded once quiet");
    let got: Vec<[u8; 32]> = info.blocks.iter().map(|b| b.hash).collect();
    let on_disk = fs::read(&path).expect("read");
    let want: Vec<[u8; 32]> = on_disk
        .chunks(131072)
        .map(|c| <[u8; 32]>::from(Sha256::digest(c)))
        .collect();
    assert_eq!(got, want);
}

/// A temp file of a pull untouched for a day is abandoned: the scan
/// removes it; a recent one (a pull in progress or to resume) stays.
#[test]
fn stale_temp_files_are_removed_and_fresh_ones_kept() {
    let f = Folder::new();
    f.write("d/.syncthing.old.tmp", b"abandoned");
    f.write("d/.syncthing.new.tmp", b"in progress");
    let two_days = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    fs::File::options()
        .write(true)
        .open(f.root.join("d/.syncthing.old.tmp"))
        .and_then(|h| h.set_modified(two_days))
        .expect("mtime");
    f.scan();
    assert!(!f.root.join("d/.syncthing.old.tmp").exists());
    assert!(f.root.join("d/.syncthing.new.tmp").exists());
    assert!(f.get("d/.syncthing.new.tmp").is_none(), "never indexed");
}

/// Records `info` as this device's entry with `flags`, as the puller or
/// an earlier scan would have.
fn plant(f: &Folder, info: FileInfo, flags: u32) {
    let fi = f.index.folder("f").expect("folder");
    fi.update_local(vec![Entry {
        info,
        inode: 0,
        flags,
    }])
    .expect("plant");
}

/// Un-ignoring a file whose newer version from a peer was recorded while
/// it was ignored: the file on disk is the old content, so its new version
/// keeps only our own counter and is concurrent with the peer's (a
/// conflict if the content differs), never a successor that would
/// silently replace the newer content everywhere.
#[test]
fn an_unignored_file_is_concurrent_with_what_happened_meanwhile() {
    const PEER: ShortId = ShortId(0xdef);
    let f = Folder::new();
    f.write("x", b"old local content");
    age(&f.root);
    let theirs = proto::Vector::new().updated(ME, 1).updated(PEER, 1);
    let mut info = FileInfo::new(proto::Name::parse("x").expect("name"), FileKind::File);
    info.version = theirs.clone();
    info.invalid = true;
    plant(&f, info, FLAG_IGNORED);
    f.scan();
    let x = f.get("x").expect("x");
    assert!(!x.invalid);
    assert_eq!(x.version.counter(PEER), 0, "{:?}", x.version);
    assert!(
        x.version.compare(&theirs).is_concurrent(),
        "{:?}",
        x.version
    );
}

/// A receive-only change in a folder that is now send-receive is recorded
/// again, valid, so it is announced (and concurrent with the global).
#[test]
fn a_receive_only_change_is_announced_once_the_folder_sends() {
    let f = Folder::new();
    f.write("y", b"changed while receive-only");
    age(&f.root);
    f.scan();
    let mut info = f.get("y").expect("y");
    info.invalid = true;
    plant(&f, info, FLAG_RECEIVE_ONLY);
    let fi = f.index.folder("f").expect("folder");
    let flags = |fi: &FolderIndex| fi.get(LOCAL, "y").expect("get").expect("y").flags;
    assert_eq!(flags(&fi), FLAG_RECEIVE_ONLY);
    f.scan();
    let y = f.get("y").expect("y");
    assert!(
        !y.invalid,
        "still invalid after the folder became send-receive"
    );
    assert_eq!(flags(&fi), 0);
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(t).expect("set mtime");
}

/// What is on disk exactly as the global entry has it (a pull landed,
/// then a crash lost its record) is recorded at the global version, so
/// the scan announces no change the cluster would take up; the same
/// content with another mtime is a change of ours. A name gone here that
/// the cluster deleted takes the global tombstone.
#[test]
fn an_entry_on_disk_as_the_global_has_it_is_recorded_at_its_version() {
    const PEER: ShortId = ShortId(0xdef);
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // The entry the peer announced: scanned elsewhere, the same bytes.
    let elsewhere = Folder::new();
    elsewhere.write("x", b"the pulled content");
    set_mtime(&elsewhere.root.join("x"), t);
    elsewhere.scan();
    let theirs = proto::Vector::new().updated(PEER, 1).updated(PEER, 2);
    let older = proto::Vector::new().updated(PEER, 1);
    let remote = |name: &str, deleted: bool| {
        let mut e = elsewhere.get("x").expect("x");
        e.name = proto::Name::parse(name).expect("name");
        e.version = theirs.clone();
        e.modified_by = PEER;
        if deleted {
            e.deleted = true;
            e.size = 0;
            e.blocks.clear();
            e.blocks_hash.clear();
        }
        e
    };
    let f = Folder::new();
    let fi = f.index.folder("f").expect("folder");
    let peer = f
        .index
        .device_number(&proto::DeviceId::from_bytes([9; 32]))
        .expect("device");
    for name in ["x", "y", "z"] {
        // The version before: other bytes, another mtime.
        let mut old = remote(name, false);
        old.version = older.clone();
        old.modified_s = 1;
        old.blocks[0].hash = [1; 32];
        old.blocks_hash = vec![1; 32];
        plant(&f, old, 0);
    }
    fi.update_remote(
        peer,
        vec![remote("x", false), remote("y", false), remote("z", true)],
    )
    .expect("remote");
    for name in ["x", "y"] {
        f.write(name, b"the pulled content");
    }
    set_mtime(&f.root.join("x"), t);
    set_mtime(&f.root.join("y"), t + Duration::from_secs(5));
    f.scan();

    let (x, y, z) = (
        f.get("x").expect("x"),
        f.get("y").expect("y"),
        f.get("z").expect("z"),
    );
    assert_eq!(x.version, theirs, "x is the global entry");
    assert_eq!(x.modified_by, PEER);
    assert!(
        z.deleted && z.version == theirs,
        "z takes the tombstone: {z:?}"
    );
    assert!(y.version.counter(ME) > 0, "y changed here: {:?}", y.version);
    let need: Vec<_> = fi.need_summaries().collect::<Result<_, _>>().expect("need");
    assert!(need.is_empty(), "nothing needed: {need:?}");
}

/// A scan of a few paths records what changed under them, and nothing
/// else: changes and deletions elsewhere wait for a scan that covers them.
#[test]
fn path_scans_touch_only_their_paths() {
    let f = Folder::new();
    f.write("a/one", b"1");
    f.write("a/two", b"2");
    f.write("b/three", b"3");
    age(&f.root);
    f.scan();
    // Changes in both directories, a new file in a new directory, and a
    // deletion in each.
    f.write("a/one", b"one, changed");
    f.write("b/three", b"three, changed");
    f.write("c/d/new", b"new");
    fs::remove_file(f.root.join("a/two")).expect("rm");
    fs::remove_file(f.root.join("b/three")).expect("rm");
    f.write("b/four", b"4");
    age(&f.root);
    let before = f.get("b/three").expect("b/three");
    let r = f.scan_paths(&["a", "c/d/new"]);
    assert_eq!(f.get("a/one").expect("a/one").size, 12);
    assert!(f.get("a/two").expect("a/two").deleted);
    assert!(f.get("c").is_some_and(|c| c.kind == FileKind::Directory));
    assert!(f.get("c/d").is_some_and(|c| c.kind == FileKind::Directory));
    assert_eq!(f.get("c/d/new").expect("new").size, 3);
    // Outside the paths: untouched, though changed on disk.
    assert_eq!(f.get("b/three").expect("b/three"), before);
    assert!(f.get("b/four").is_none());
    assert_eq!(r.changes, 5, "{r:?}");
    // A path that is gone is a deletion of it and of what was under it.
    fs::remove_dir_all(f.root.join("c")).expect("rm c");
    f.scan_paths(&["c"]);
    assert!(f.get("c").expect("c").deleted);
    assert!(f.get("c/d/new").expect("c/d/new").deleted);
    assert!(!f.get("b/three").expect("b/three").deleted);
}

/// A scan that would delete more than the guard allows records none of
/// those deletions (the rest of its changes it does) and says how many;
/// once accepted, the next scan records them and the acceptance is used up.
#[test]
fn a_mass_delete_is_held_until_accepted() {
    let f = Folder::new();
    for i in 0..200 {
        f.write(&format!("d/{i}"), b"x");
    }
    f.write("keep", b"k");
    age(&f.root);
    let (progress, cancel, accept) = (
        ScanProgress::default(),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let ignores = Ignores::empty();
    let opts = ScanOptions {
        delete_guard: Some(DeleteGuard {
            percent: 50,
            min_files: 100,
        }),
        accept_deletes: &accept,
        ..options(&ignores, &progress, &cancel)
    };
    let folder = f.index.folder("f").expect("folder");
    scan(&f.root, &folder, &opts).expect("first scan");
    // 120 of 201 files gone (60 %), one new file.
    for i in 0..120 {
        fs::remove_file(f.root.join(format!("d/{i}"))).expect("rm");
    }
    f.write("new", b"n");
    age(&f.root);
    let err = scan(&f.root, &folder, &opts).expect_err("held");
    assert!(
        matches!(
            err,
            ScanError::MassDelete {
                deleted: 120,
                files: 202
            }
        ),
        "{err}"
    );
    assert!(!f.get("d/0").expect("d/0").deleted, "no tombstone recorded");
    assert!(f.get("new").is_some(), "the rest of the scan is recorded");
    // Below the share (or below the minimum) nothing is held.
    let small = ScanOptions {
        delete_guard: Some(DeleteGuard {
            percent: 50,
            min_files: 121,
        }),
        ..opts
    };
    let err = scan(&f.root, &folder, &opts).expect_err("still held");
    assert!(matches!(err, ScanError::MassDelete { .. }), "{err}");
    accept.store(true, Ordering::SeqCst);
    let report = scan(&f.root, &folder, &small).expect("below the minimum");
    assert_eq!(report.changes, 120);
    assert!(accept.load(Ordering::SeqCst), "not used: nothing was held");
    assert!(f.get("d/0").expect("d/0").deleted);
    // 80 of 82 is held by a lower minimum, and the acceptance lets it
    // through.
    for i in 120..200 {
        fs::remove_file(f.root.join(format!("d/{i}"))).expect("rm");
    }
    let low = ScanOptions {
        delete_guard: Some(DeleteGuard {
            percent: 50,
            min_files: 10,
        }),
        ..opts
    };
    let report = scan(&f.root, &folder, &low).expect("accepted");
    assert_eq!(report.changes, 80);
    assert!(!accept.load(Ordering::SeqCst), "used up");
    assert!(f.get("d/199").expect("d/199").deleted);
}

/// Overlapping paths are scanned (and their deletions counted) once.
#[test]
fn overlapping_paths_are_one_scope() {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(outermost(&v(&["a/b", "a", "a/b/c", "a"])), v(&["a"]));
    assert_eq!(outermost(&v(&["a.b", "a/x", "a"])), v(&["a", "a.b"]));
    assert_eq!(outermost(&v(&["ab", "a"])), v(&["a", "ab"]));
    assert_eq!(outermost(&v(&["x/", "", "y"])), v(&[""]));
    let f = Folder::new();
    for i in 0..10 {
        f.write(&format!("d/e/{i}"), b"x");
    }
    age(&f.root);
    f.scan();
    fs::remove_dir_all(f.root.join("d")).expect("rm");
    let report = f.scan_paths(&["d/e", "d", "d/e/3"]);
    assert_eq!(report.deleted_files, 10);
}

/// A file whose mtime is a year ahead (extracted from an archive, or
/// written before the clock was put back) is recorded: it can never look
/// quiet by its time, and it is not still being written.
#[test]
fn a_file_with_an_mtime_in_the_future_is_recorded() {
    let f = Folder::new();
    f.write("future.txt", b"from a clock a year ahead");
    set_mtime(
        &f.root.join("future.txt"),
        SystemTime::now() + Duration::from_secs(365 * 86_400),
    );
    let r = f.scan();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let e = f.get("future.txt").expect("recorded");
    assert_eq!(e.size, 25);
}

#[test]
fn deletions_are_found_directory_by_directory_whatever_the_name_order() {
    // `a` (a directory), `a.txt` and `a-b` sort around `a/…` in the index:
    // each directory's listing is compared with the index's children of it.
    let f = Folder::new();
    for name in ["a/x", "a/deep/y", "a.txt", "a-b", "b/z", "b/keep", "c/d/e"] {
        f.write(name, name.as_bytes());
    }
    age(&f.root);
    f.scan();
    let r = f.scan();
    assert_eq!((r.changes, r.deleted_files), (0, 0), "nothing changed");

    fs::remove_file(f.root.join("a/deep/y")).expect("rm");
    fs::remove_file(f.root.join("a.txt")).expect("rm");
    // A directory replaced by a file: what was under it is gone.
    fs::remove_dir_all(f.root.join("b")).expect("rm");
    f.write("b", b"now a file");
    // A whole subtree removed.
    fs::remove_dir_all(f.root.join("c")).expect("rm");
    age(&f.root);
    let r = f.scan();
    assert_eq!(r.deleted_files, 5, "{r:?}");
    for gone in ["a/deep/y", "a.txt", "b/z", "b/keep", "c/d/e", "c/d", "c"] {
        assert!(f.get(gone).expect(gone).deleted, "{gone} not deleted");
    }
    for kept in ["a", "a/x", "a/deep", "a-b"] {
        assert!(!f.get(kept).expect(kept).deleted, "{kept} deleted");
    }
    let b = f.get("b").expect("b");
    assert!(!b.deleted && b.kind == FileKind::File);
    let r = f.scan();
    assert_eq!((r.changes, r.deleted_files), (0, 0), "settled");
}
