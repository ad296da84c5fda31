//! A device whose wall clock is a year ahead, or a year behind (its
//! identity made on that clock too), under `faketime`. Version vectors,
//! not clocks, order changes: a later edit made on the correct device
//! replaces the skewed device's "newer-looking" one and the other way
//! round, with no conflict; concurrent edits make one conflict copy and
//! keep both contents, as with correct clocks.

use std::path::Path;
use std::time::Duration;

use ferrosync_tests::daemon::Daemon;
use ferrosync_tests::{poll, Device};

const LIMIT: Duration = Duration::from_secs(60);

fn has(root: &Path, name: &str, body: &str) -> bool {
    std::fs::read_to_string(root.join(name)).is_ok_and(|s| s == body)
}

fn arrives(root: &Path, name: &str, body: &str, logs: [&Daemon<'_>; 2]) {
    assert!(
        poll(LIMIT, || has(root, name, body).then_some(())).is_some(),
        "{name} = {body:?} did not arrive at {}; logs:\n{}\n---\n{}",
        root.display(),
        logs[0].log(),
        logs[1].log()
    );
}

fn conflict_copies(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .expect("read_dir")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.contains(".sync-conflict-"))
        .collect()
}

/// The year now, give or take a day at its ends.
fn year_now() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    1970 + secs / 31_556_952
}

fn skewed(offset: &str) {
    let (a, a_id) = Device::on_loopback("correct");
    let mut b = Device::new();
    if b.set_clock(offset).is_none() {
        return;
    }
    let b_id = b.ok(&["init", "--name", "skewed"]).trim().to_string();
    b.isolate();
    b.ok(&["config", "set", "listen", "tcp://127.0.0.1:0"]);
    let (ra, rb) = (a.scratch().join("f"), b.scratch().join("f"));
    a.ok(&["device", "add", &b_id, "--name", "skewed"]);
    a.share_folder("f", &ra, &b_id);
    let mut da = a.start();
    da.wait_scanned("f");
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "correct",
        "--address",
        &da.listen_url("tcp"),
    ]);
    b.share_folder("f", &rb, &a_id);
    let mut db = b.start();
    let rescan = |d: &Daemon<'_>| {
        d.api_post("/rest/folders/f/rescan");
    };

    // Made on the skewed device (its mtime a year off), then edited on the
    // correct one: the edit wins on both, with no conflict.
    std::fs::write(rb.join("doc.txt"), "v1 from the skewed device").expect("write");
    rescan(&db);
    arrives(&ra, "doc.txt", "v1 from the skewed device", [&da, &db]);
    std::fs::write(ra.join("doc.txt"), "v2 from the correct device").expect("write");
    rescan(&da);
    arrives(&rb, "doc.txt", "v2 from the correct device", [&da, &db]);
    // And back: the skewed device's next edit wins too.
    std::fs::write(rb.join("doc.txt"), "v3 from the skewed device").expect("write");
    rescan(&db);
    arrives(&ra, "doc.txt", "v3 from the skewed device", [&da, &db]);
    assert!(conflict_copies(&ra).is_empty() && conflict_copies(&rb).is_empty());

    // Concurrent edits (the skewed device paused): one conflict copy, and
    // both contents on both devices.
    db.api_post("/rest/folders/f/pause");
    std::fs::write(ra.join("doc.txt"), "v4 on the correct device").expect("write");
    rescan(&da);
    std::fs::write(rb.join("doc.txt"), "v4 on the skewed device").expect("write");
    db.api_post("/rest/folders/f/resume");
    let both = |root: &Path| {
        let copies = conflict_copies(root);
        let mut bodies: Vec<String> = copies
            .iter()
            .chain(std::iter::once(&"doc.txt".to_string()))
            .filter_map(|n| std::fs::read_to_string(root.join(n)).ok())
            .collect();
        bodies.sort();
        (copies.len() == 1 && bodies == ["v4 on the correct device", "v4 on the skewed device"])
            .then_some(())
    };
    for (root, d) in [(&ra, &mut da), (&rb, &mut db)] {
        assert!(
            poll(LIMIT, || both(root)).is_some(),
            "{offset}: at {}: {:?}; log:\n{}",
            root.display(),
            conflict_copies(root),
            d.log()
        );
    }
    // The skewed daemon did live in its year (its log's time stamps).
    let year = if offset.starts_with('+') {
        year_now() + 1
    } else {
        year_now() - 1
    };
    assert!(
        db.log().contains(&format!("\n{year}-")),
        "the clock was not skewed:\n{}",
        db.log()
    );
    db.stop();
    da.stop();
}

#[test]
fn a_device_a_year_ahead_orders_changes_by_version_not_clock() {
    skewed("+365d");
}

#[test]
fn a_device_a_year_behind_orders_changes_by_version_not_clock() {
    skewed("-365d");
}
