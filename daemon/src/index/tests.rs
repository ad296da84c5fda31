//! Index behaviour: sequences, counters, global winners and the need-set.

use proto::message::{BlockInfo, FileInfo, FileKind};
use proto::{Name, ShortId, Vector};

use super::*;

const ME: ShortId = ShortId(1);
const PEER: ShortId = ShortId(2);

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
    let index = Index::open(&path, 4 << 20).expect("reopen");
    let f = index.folder("one").expect("folder");
    assert_eq!(f.device_meta(LOCAL).expect("meta").index_id, index_id);
    assert_eq!(f.entries(LOCAL).count(), 1);
}
