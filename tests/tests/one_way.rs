//! One-way folders getting back into agreement: `folder revert` drops a
//! receive-only folder's local changes, `folder override` makes the
//! cluster take a send-only folder's version. What either replaces is
//! kept as a version.

use std::fs;
use std::path::Path;
use std::time::Duration;

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::pair::Pair;
use ferrosync_tests::poll;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn f(s: &Value) -> Value {
    folder(s, "f").cloned().unwrap_or_default()
}

fn wait_for(what: &str, daemons: &[&Daemon], cond: impl Fn() -> bool) {
    if poll(LIMIT, || cond().then_some(())).is_none() {
        for d in daemons {
            eprintln!("--- log:\n{}", d.log());
        }
        panic!("timed out waiting for {what}");
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// B (receive-only) edits a file and adds one: A never gets either;
/// `revert` on B brings A's version back and takes the addition away,
/// both kept in B's versions.
#[test]
fn revert_drops_a_receive_only_folders_local_changes() {
    let p = Pair::new();
    fs::create_dir_all(&p.ra).expect("mkdir");
    fs::write(p.ra.join("x.txt"), "from alpha").expect("write");
    let (mut da, mut db) = p.start();
    p.b.ok(&["folder", "set", "f", "--type", "receive-only"]);
    db.wait_until("B receive-only", LIMIT, |s| {
        f(s)["type"] == "receive-only" && f(s)["scans_completed"].as_u64() >= Some(1)
    });
    wait_for("x on B", &[&da, &db], || {
        read(&p.rb.join("x.txt")) == "from alpha"
    });

    fs::write(p.rb.join("x.txt"), "changed on bravo").expect("write");
    fs::write(p.rb.join("z.txt"), "new on bravo").expect("write");
    p.b.ok(&["folder", "rescan", "f"]);
    let seq = f(&db.status().expect("status"))["sequence"].clone();
    da.wait_until("A holds B's latest index", LIMIT, |s| {
        f(s)["remote_sequences"]
            .as_object()
            .is_some_and(|m| m.values().any(|v| *v == seq))
    });
    assert_eq!(read(&p.ra.join("x.txt")), "from alpha", "never pushed");
    assert!(!p.ra.join("z.txt").exists(), "never pushed");
    p.a.fails(&["folder", "revert", "f"]);

    let out = p.b.ok(&["folder", "revert", "f"]);
    assert!(out.contains("2 local changes reverted"), "{out}");
    wait_for("x back on B", &[&da, &db], || {
        read(&p.rb.join("x.txt")) == "from alpha"
    });
    assert!(!p.rb.join("z.txt").exists());
    assert_eq!(read(&p.rb.join(".stversions/z.txt")), "new on bravo");
    assert_eq!(read(&p.rb.join(".stversions/x.txt")), "changed on bravo");
    p.b.ok(&["folder", "rescan", "f"]);
    let s = db.wait_until("B in sync", LIMIT, |s| f(s)["need_files"] == 0);
    assert_eq!(f(&s)["local_files"], 1, "{s}");
    assert_eq!(read(&p.ra.join("x.txt")), "from alpha");
}

/// A (send-only) applies nothing B changes; `override` on A makes B take
/// A's version back (an edit undone, an addition deleted), B keeping what
/// it loses as versions.
#[test]
fn override_makes_the_cluster_take_a_send_only_folders_version() {
    let p = Pair::new();
    fs::create_dir_all(&p.ra).expect("mkdir");
    fs::write(p.ra.join("x.txt"), "from alpha").expect("write");
    p.a.ok(&["folder", "set", "f", "--type", "send-only"]);
    let (mut da, db) = p.start();
    wait_for("x on B", &[&da, &db], || {
        read(&p.rb.join("x.txt")) == "from alpha"
    });

    fs::write(p.rb.join("x.txt"), "changed on bravo").expect("write");
    fs::write(p.rb.join("extra.txt"), "new on bravo").expect("write");
    da.wait_until("A needs B's changes", LIMIT, |s| {
        f(s)["need_files"].as_u64() >= Some(2)
    });
    assert_eq!(read(&p.ra.join("x.txt")), "from alpha", "never applied");
    assert!(!p.ra.join("extra.txt").exists(), "never applied");
    p.b.fails(&["folder", "override", "f"]);

    let out = p.a.ok(&["folder", "override", "f"]);
    assert!(out.contains("of 2 entries"), "{out}");
    wait_for("B takes A's version", &[&da, &db], || {
        read(&p.rb.join("x.txt")) == "from alpha" && !p.rb.join("extra.txt").exists()
    });
    assert_eq!(read(&p.rb.join(".stversions/x.txt")), "changed on bravo");
    assert_eq!(read(&p.rb.join(".stversions/extra.txt")), "new on bravo");
    da.wait_until("A needs nothing", LIMIT, |s| f(s)["need_files"] == 0);
    assert!(!p.ra.join("extra.txt").exists());
}
