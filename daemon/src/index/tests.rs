//! Index behaviour: sequences, counters, global winners and the need-set.

use proto::message::{BlockInfo, FileInfo, FileKind};
use proto::{Name, ShortId, Vector};

use super::*;

const ME: ShortId = ShortId(1);
const PEER: ShortId = ShortId(2);
/// The smallest file in the block map.
const M: u64 = MAP_MIN_SIZE;

fn file(name: &str, size: u64, version: &Vector) -> FileInfo {
    let mut f = FileInfo::new(Name::parse(name).expect("name"), FileKind::File);
    f.size = size;
    f.version = version.clone();
    f.blocks = vec![BlockInfo {
        offset: 0,
        size: size as u32,
        hash: [size as u8; 32],
        weak_hash: 0,
    }];
    f
}

fn entry(info: FileInfo) -> Entry {
    Entry {
        info,
        inode: 7,
        flags: 0,
    }
}

fn open() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("index"), 4 << 20).expect("open");
    (dir, index)
}

#[test]
fn local_changes_get_increasing_sequences_and_counts() {
    let (_d, index) = open();
    let f = index.folder("default").expect("folder");
    let v1 = Vector::new().updated(ME, 100);
    let mut dir = FileInfo::new(Name::parse("d").expect("name"), FileKind::Directory);
    dir.version = v1.clone();
    f.update_local(vec![
        entry(file("a", 10, &v1)),
        entry(file("d/b", 20, &v1)),
        entry(dir),
    ])
    .expect("update");
    let meta = f.device_meta(LOCAL).expect("meta");
    assert_eq!(meta.max_sequence, 3);
    assert_ne!(meta.index_id, 0);
    assert_eq!(
        (
            meta.counts.files,
            meta.counts.directories,
            meta.counts.bytes
        ),
        (2, 1, 30)
    );
    // Alone, the global state is ours and nothing is needed.
    let fm = f.folder_meta().expect("folder meta");
    assert_eq!(fm.global, meta.counts);
    assert_eq!(fm.need, Counts::default());

    // Changing "a" moves it to sequence 4; deleting "d/b" makes a tombstone.
    let v2 = v1.updated(ME, 100);
    let mut gone = file("d/b", 0, &v2);
    gone.deleted = true;
    gone.blocks.clear();
    f.update_local(vec![entry(file("a", 15, &v2)), entry(gone)])
        .expect("update");
    let seqs: Vec<(String, i64)> = f
        .local_since(0)
        .map(|e| e.map(|e| (e.info.name.to_string(), e.info.sequence)))
        .collect::<Result<_, _>>()
        .expect("iter");
    assert_eq!(seqs, [("d".into(), 3), ("a".into(), 4), ("d/b".into(), 5)]);
    assert_eq!(f.local_since(4).count(), 1);
    let meta = f.device_meta(LOCAL).expect("meta");
    assert_eq!(
        (meta.counts.files, meta.counts.deleted, meta.counts.bytes),
        (1, 1, 15)
    );
    assert_eq!(f.get(LOCAL, "a").expect("get").expect("a").inode, 7);
}

#[test]
fn remote_versions_win_or_lose_and_drive_the_need_set() {
    let (_d, index) = open();
    let f = index.folder("default").expect("folder");
    let peer = index
        .device_number(&proto::DeviceId::from_bytes([2; 32]))
        .expect("peer");
    let v1 = Vector::new().updated(ME, 100);
    f.update_local(vec![entry(file("a", 10, &v1)), entry(file("b", 10, &v1))])
        .expect("local");

    // The peer has a newer "a", the same "b", and a new "c".
    let v2 = v1.updated(PEER, 200);
    f.update_remote(
        peer,
        vec![
            file("a", 99, &v2),
            file("b", 10, &v1),
            file("c", 5, &Vector::new().updated(PEER, 1)),
        ],
    )
    .expect("remote");
    let need: Vec<String> = f
        .need_summaries()
        .map(|r| r.map(|(n, _)| n))
        .collect::<Result<_, _>>()
        .expect("need");
    assert_eq!(need, ["a", "c"]);
    let fm = f.folder_meta().expect("meta");
    assert_eq!((fm.need.files, fm.need.bytes), (2, 104));
    assert_eq!((fm.global.files, fm.global.bytes), (3, 114));
    let g = f.global("b").expect("get").expect("b");
    assert_eq!(g.devices, [LOCAL, peer], "both have b");
    assert_eq!(f.global("a").expect("get").expect("a").devices, [peer]);

    // Pulling "a" (storing the peer's version locally) satisfies the need.
    f.update_local(vec![entry(file("a", 99, &v2))])
        .expect("pulled");
    let need: Vec<String> = f
        .need_summaries()
        .map(|r| r.map(|(n, _)| n))
        .collect::<Result<_, _>>()
        .expect("need");
    assert_eq!(need, ["c"]);

    // When the peer goes away its entries stop counting.
    f.drop_device(peer).expect("drop");
    assert_eq!(f.need_summaries().count(), 0);
    let fm = f.folder_meta().expect("meta");
    assert_eq!(fm.global.files, 2);
    assert!(f.global("c").expect("get").is_none());
}

#[test]
fn a_batch_with_one_name_twice_keeps_the_last() {
    let (_d, index) = open();
    let f = index.folder("x").expect("folder");
    let v = Vector::new().updated(ME, 1);
    f.update_local(vec![entry(file("a", 1, &v)), entry(file("a", 2, &v))])
        .expect("update");
    assert_eq!(f.get(LOCAL, "a").expect("get").expect("a").info.size, 2);
    assert_eq!(f.device_meta(LOCAL).expect("meta").counts.files, 1);
}

#[test]
fn state_survives_reopening_and_folders_are_separate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("index");
    let index_id;
    {
        let index = Index::open(&path, 4 << 20).expect("open");
        let f = index.folder("one").expect("folder");
        f.update_local(vec![entry(file("a", 3, &Vector::new().updated(ME, 1)))])
            .expect("update");
        index_id = f.device_meta(LOCAL).expect("meta").index_id;
        assert_eq!(index.folder("two").expect("two").entries(LOCAL).count(), 0);
    }
    let index = db::retry_while_locked(|| Index::open(&path, 4 << 20)).expect("reopen");
    let f = index.folder("one").expect("folder");
    assert_eq!(f.device_meta(LOCAL).expect("meta").index_id, index_id);
    assert_eq!(f.entries(LOCAL).count(), 1);
}

/// A file of one full block (so in the block map) whose hash is all `tag`.
fn mapped(name: &str, tag: u8, version: &Vector) -> FileInfo {
    let mut f = file(name, M, version);
    f.blocks[0].hash = [tag; 32];
    f
}

#[test]
fn the_block_map_follows_local_files_in_every_folder() {
    let (_d, index) = open();
    let (f, g) = (
        index.folder("one").expect("folder"),
        index.folder("two").expect("folder"),
    );
    let v1 = Vector::new().updated(ME, 100);
    let places = |size: u64| index.blocks_with(&[size as u8; 32], 10).expect("lookup");
    f.update_local(vec![entry(mapped("a", 10, &v1))])
        .expect("update");
    g.update_local(vec![entry(mapped("b/c", 10, &v1))])
        .expect("update");
    assert_eq!(
        places(10),
        vec![(f.number(), "a".into(), 0), (g.number(), "b/c".into(), 0)]
    );

    // A new version replaces the old blocks; a deletion removes them.
    let v2 = v1.updated(ME, 101);
    f.update_local(vec![entry(mapped("a", 11, &v2))])
        .expect("update");
    assert_eq!(places(10), vec![(g.number(), "b/c".into(), 0)]);
    assert_eq!(places(11), vec![(f.number(), "a".into(), 0)]);
    let mut gone = file("b/c", 0, &v2);
    gone.deleted = true;
    gone.blocks.clear();
    g.update_local(vec![entry(gone)]).expect("update");
    assert!(places(10).is_empty());

    // Small files are not mapped; peers' files are not local copies.
    f.update_local(vec![entry(file("small", 12, &v2))])
        .expect("update");
    assert!(places(12).is_empty());
    f.update_remote(1, vec![mapped("r", 12, &v2)])
        .expect("remote");
    assert!(places(12).is_empty());
}

#[test]
fn a_block_map_is_rebuilt_from_the_local_entries() {
    let (_d, index) = open();
    let f = index.folder("one").expect("folder");
    f.update_local(vec![entry(mapped("a", 10, &Vector::new().updated(ME, 1)))])
        .expect("update");
    // As an index written before the block map existed (schema 1) has it.
    let mut b = Batch::default();
    for r in index.db.scan(key::blocks(&[10; 32])) {
        b.delete(r.expect("scan").0);
    }
    index.db.apply(b).expect("apply");
    assert!(index.blocks_with(&[10; 32], 10).expect("lookup").is_empty());
    build_block_map(&index.db).expect("rebuild");
    assert_eq!(
        index.blocks_with(&[10; 32], 10).expect("lookup"),
        vec![(f.number(), "a".to_string(), 0)]
    );
}

#[test]
fn flags_are_read_without_the_rest_of_the_entry() {
    let (_d, index) = open();
    let f = index.folder("one").expect("folder");
    let mut ignored = entry(mapped("big", 1, &Vector::new().updated(ME, 1)));
    ignored.flags = FLAG_IGNORED;
    f.update_local(vec![
        ignored,
        entry(file("plain", 3, &Vector::new().updated(ME, 2))),
    ])
    .expect("update");
    assert_eq!(f.flags(LOCAL, "big").expect("flags"), Some(FLAG_IGNORED));
    assert_eq!(f.flags(LOCAL, "plain").expect("flags"), Some(0));
    assert_eq!(f.flags(LOCAL, "absent").expect("flags"), None);
}

/// A device that ignores a file announces it invalid (no blocks, size 0)
/// at the version it had. Such an entry is never the source of the file,
/// whichever device number it has.
#[test]
fn an_invalid_entry_at_the_winning_version_is_no_holder() {
    let (_d, index) = open();
    let f = index.folder("default").expect("folder");
    let ignorer = index
        .device_number(&proto::DeviceId::from_bytes([3; 32]))
        .expect("n");
    let editor = index
        .device_number(&proto::DeviceId::from_bytes([4; 32]))
        .expect("n");
    assert!(ignorer < editor, "the invalid entry sorts first");
    let v = Vector::new().updated(PEER, 100);
    let mut ignored = file("x", 0, &v);
    ignored.invalid = true;
    ignored.blocks.clear();
    f.update_remote(ignorer, vec![ignored]).expect("update");
    f.update_remote(editor, vec![file("x", 40, &v)])
        .expect("update");
    let (g, info) = f.global_file("x").expect("read").expect("global");
    assert_eq!(g.devices, vec![editor]);
    assert!(!info.invalid);
    assert_eq!(info.size, 40);
    let needed: Vec<String> = f
        .need_summaries()
        .map(|r| r.map(|(n, _)| n))
        .collect::<Result<_, _>>()
        .expect("need");
    assert_eq!(needed, vec!["x".to_string()], "we lack x: we need it");
    // Alone, the invalid entry is global but never needed or a source.
    f.drop_device(editor).expect("drop");
    let g = f.global("x").expect("read").expect("global");
    assert_eq!(g.devices, vec![ignorer]);
    assert_eq!(f.folder_meta().expect("meta").need, Counts::default());
}

/// Nothing above the durable sequence may be announced: the watermark
/// moves only when a flush has made the entries durable, and an index
/// opened again starts from what is on disk.
#[test]
fn only_flushed_sequences_are_durable() {
    let (dir, index) = open();
    let f = index.folder("default").expect("folder");
    let durable = f.durable();
    assert_eq!(*durable.borrow(), 0);
    let v = Vector::new().updated(ME, 1);
    f.update_local(vec![entry(file("a", 1, &v)), entry(file("b", 2, &v))])
        .expect("update");
    assert_eq!(*durable.borrow(), 0, "committed is not durable");
    f.flush().expect("flush");
    assert_eq!(*durable.borrow(), 2);
    f.update_local(vec![entry(file("c", 3, &v))])
        .expect("update");
    assert_eq!(*durable.borrow(), 2);
    drop((f, durable, index));
    let path = dir.path().join("index");
    let index = db::retry_while_locked(|| Index::open(&path, 4 << 20)).expect("reopen");
    let f = index.folder("default").expect("folder");
    assert_eq!(
        *f.durable().borrow(),
        f.device_meta(LOCAL).expect("meta").max_sequence
    );
}

#[test]
fn child_names_list_one_directory_without_its_subtrees() {
    let (_d, index) = open();
    let f = index.folder("default").expect("folder");
    let v = Vector::new().updated(ME, 1);
    let names = [
        "a",
        "a/x",
        "a/y/z",
        "a.txt",
        "a-b",
        "b/only/under",
        "c",
        "d/e",
    ];
    f.update_local(names.iter().map(|n| entry(file(n, 1, &v))).collect())
        .expect("update");
    // Recorded under another device: not this one's children.
    f.update_remote(1, vec![file("zz", 1, &v)]).expect("remote");
    let root = f.child_names(LOCAL, "").expect("root");
    // `b` appears though only entries under it are recorded.
    assert_eq!(root, ["a", "a-b", "a.txt", "b", "c", "d"]);
    assert_eq!(f.child_names(LOCAL, "a").expect("a"), ["x", "y"]);
    assert_eq!(f.child_names(LOCAL, "a/y").expect("a/y"), ["z"]);
    assert!(f.child_names(LOCAL, "c").expect("c").is_empty());
    assert!(f.child_names(LOCAL, "nothing").expect("none").is_empty());
    assert_eq!(f.child_names(1, "").expect("remote"), ["zz"]);
}
