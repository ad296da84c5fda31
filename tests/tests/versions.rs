//! Versions: what a peer's change replaces or deletes is kept in the
//! trash can by default, can be listed and restored (and the restore
//! syncs out), costs no transfer when it comes back, and is cleaned out
//! past its age.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::pair::Pair;
use ferrosync_tests::poll;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn content_is(path: &Path, want: &[u8], daemons: &[&Daemon], what: &str) {
    if poll(LIMIT, || (fs::read(path).ok()? == want).then_some(())).is_none() {
        for d in daemons {
            eprintln!("--- log:\n{}", d.log());
        }
        panic!("{what}: {} is not as expected", path.display());
    }
}

/// Replaces `path` as an editor does: a new file renamed over it.
fn replace(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("editing");
    fs::write(&tmp, data).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

fn pulled(d: &Daemon) -> u64 {
    d.status()
        .and_then(|s| folder(&s, "f").map(|f| f["pulled_bytes"].as_u64().unwrap_or(0)))
        .unwrap_or(0)
}

/// Edited on A, B keeps the old content in `.stversions/` (the trash
/// can, by default); `versions` lists it; `restore` on B brings it back
/// on both devices, keeping the edit as a version in turn; cleanup
/// removes a copy past its 30 days.
#[test]
fn the_trash_can_keeps_what_a_peer_replaced_and_restore_brings_it_back() {
    let p = Pair::new();
    fs::create_dir_all(p.ra.join("docs")).expect("mkdir");
    fs::write(p.ra.join("docs/plan.txt"), "first draft").expect("write");
    let (da, db) = p.start();
    content_is(
        &p.rb.join("docs/plan.txt"),
        b"first draft",
        &[&da, &db],
        "synced",
    );
    let listed = p.b.ok(&["folder", "list", "--json"]);
    assert!(listed.contains("trashcan:30"), "the default: {listed}");

    replace(&p.ra.join("docs/plan.txt"), b"second draft");
    content_is(
        &p.rb.join("docs/plan.txt"),
        b"second draft",
        &[&da, &db],
        "edit",
    );
    let kept = p.rb.join(".stversions/docs/plan.txt");
    assert_eq!(fs::read(&kept).expect("kept"), b"first draft");
    assert!(
        !p.ra.join(".stversions").exists(),
        "a local edit is not versioned"
    );

    let text = p.b.ok(&["versions", "f"]);
    assert!(
        text.contains("docs/plan.txt") && text.contains(" 11 "),
        "{text}"
    );
    let json: Value =
        serde_json::from_str(&p.b.ok(&["versions", "f", "docs", "--json"])).expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["stored"], ".stversions/docs/plan.txt");
    assert_eq!(
        p.b.ok(&["versions", "f", "elsewhere"]).trim(),
        "no versions kept"
    );

    let err =
        p.b.fails(&["restore", "f", "docs/plan.txt", "--at", "2000-01-01 00:00"]);
    assert!(
        err.contains("no version") && err.contains("the oldest is from"),
        "{err}"
    );
    let err =
        p.b.fails(&["restore", "f", "docs/plan.txt", "--at", "yesterday"]);
    assert!(err.contains("--at"), "{err}");
    let out =
        p.b.ok(&["restore", "f", "docs/plan.txt", "--at", "2099-01-01T00:00"]);
    assert!(out.contains("restored"), "{out}");
    assert_eq!(
        fs::read(p.rb.join("docs/plan.txt")).expect("read"),
        b"first draft"
    );
    content_is(
        &p.ra.join("docs/plan.txt"),
        b"first draft",
        &[&da, &db],
        "restore synced out",
    );
    assert_eq!(
        fs::read(&kept).expect("the edit kept in turn"),
        b"second draft"
    );
    let err = p.b.fails(&["restore", "f", "docs/none.txt"]);
    assert!(err.contains("no version"), "{err}");
    let err = p.b.fails(&["restore", "f", "../escape"]);
    assert!(err.contains("not a file name"), "{err}");

    // Past its days, a copy goes at the next full scan; others stay.
    let old = SystemTime::now() - Duration::from_secs(31 * 86_400);
    fs::File::options()
        .write(true)
        .open(&kept)
        .and_then(|f| f.set_modified(old))
        .expect("age the copy");
    p.b.ok(&["folder", "rescan", "f"]);
    assert!(!kept.exists(), "cleaned out; log:\n{}", db.log());
    assert!(
        !p.rb.join(".stversions/docs").exists(),
        "empty directories go too"
    );
}

/// A file deleted on A and later put back as it was comes back to B from
/// B's own trash can (the block map knows the copy): nothing is fetched.
#[test]
fn a_file_put_back_is_filled_from_the_trash_can_not_fetched() {
    let p = Pair::new();
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(p.ra.join("big.bin"), &data).expect("write");
    let saved = p.a.scratch().join("big.saved");
    fs::write(&saved, &data).expect("save");
    let (da, db) = p.start();
    content_is(&p.rb.join("big.bin"), &data, &[&da, &db], "synced");
    let before = pulled(&db);
    assert!(
        before >= data.len() as u64,
        "the first copy was fetched: {before}"
    );

    fs::remove_file(p.ra.join("big.bin")).expect("rm");
    assert!(
        poll(LIMIT, || p
            .rb
            .join(".stversions/big.bin")
            .exists()
            .then_some(()))
        .is_some(),
        "the deletion reaches B, which keeps a copy; log:\n{}",
        db.log()
    );
    assert!(!p.rb.join("big.bin").exists());
    fs::copy(&saved, p.ra.join("big.bin")).expect("put back");
    content_is(&p.rb.join("big.bin"), &data, &[&da, &db], "put back");
    assert_eq!(pulled(&db), before, "no byte fetched for it");
}
