//! Ignore patterns on the receiving side and on the serving side: an
//! ignored remote file is recorded as ignored and never fetched, an ignored
//! local file is never served (indexed or not, asked with a hash or
//! without), and nothing loops.

use std::fs;
use std::time::Duration;

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::mallory::{Mallory, MalloryId};
use ferrosync_tests::Device;
use proto::message::ErrorCode;

fn scans(d: &Daemon<'_>) -> u64 {
    d.status()
        .and_then(|s| folder(&s, "f")?["scans_completed"].as_u64())
        .unwrap_or(0)
}

#[test]
fn ignored_remote_files_are_never_fetched_and_nothing_loops() {
    let (a, a_id) = Device::on_loopback("source");
    let (b, b_id) = Device::on_loopback("ignorer");
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    a.ok(&["device", "add", &b_id, "--name", "ignorer"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--create",
        "--share",
        &b_id,
    ]);
    fs::create_dir_all(ra.join("skip")).expect("mkdir");
    for (n, c) in [
        ("keep.txt", "kept"),
        ("app.log", "log"),
        ("skip/x", "x"),
        ("skip/y", "y"),
    ] {
        fs::write(ra.join(n), c).expect("write");
    }
    let mut da = a.start();
    da.wait_scanned("f");
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "source",
        "--address",
        &da.listen_url("tcp"),
    ]);
    b.ok(&[
        "folder",
        "add",
        "f",
        rb.to_str().expect("utf-8"),
        "--create",
        "--share",
        &a_id,
    ]);
    fs::write(rb.join(".stignore"), "*.log\nskip\n").expect("stignore");
    // A local ignored item that was never indexed sits where a remote one
    // goes: it must neither be replaced nor make the folder rescan.
    fs::write(rb.join("app.log"), "mine, ignored").expect("write");
    let mut db = b.start();
    let s = db.wait_until(
        "keep.txt arrives and nothing is needed",
        Duration::from_secs(60),
        |s| {
            rb.join("keep.txt").exists()
                && folder(s, "f").is_some_and(|f| f["need_files"] == 0 && f["state"] == "idle")
        },
    );
    assert_eq!(
        fs::read_to_string(rb.join("app.log")).expect("read"),
        "mine, ignored"
    );
    assert!(
        !rb.join("skip").exists(),
        "an ignored directory was pulled: {s}"
    );
    let fetched = folder(&s, "f").and_then(|f| f["pulled_bytes"].as_u64());
    assert_eq!(fetched, Some(4), "only keep.txt is fetched: {s}");
    let before = scans(&db);
    let moved = ferrosync_tests::poll(Duration::from_secs(2), || {
        (scans(&db) > before).then_some(())
    });
    assert!(
        moved.is_none(),
        "the folder keeps rescanning; log:\n{}",
        db.log()
    );

    // A newer version of an ignored file is recorded, still not fetched.
    fs::write(ra.join("app.log"), "log, longer now").expect("write");
    fs::write(ra.join("keep.txt"), "kept, again").expect("write");
    a.ok(&["folder", "rescan", "f"]);
    db.wait_until("the new keep.txt", Duration::from_secs(30), |s| {
        fs::read_to_string(rb.join("keep.txt")).is_ok_and(|c| c == "kept, again")
            && folder(s, "f").is_some_and(|f| f["need_files"] == 0)
    });
    assert_eq!(
        fs::read_to_string(rb.join("app.log")).expect("read"),
        "mine, ignored"
    );

    // Un-ignoring brings the directory's files (their history kept: no
    // conflict copies, no deletion spreading back to the source).
    fs::write(rb.join(".stignore"), "*.log\n").expect("stignore");
    b.ok(&["folder", "rescan", "f"]);
    db.wait_until("skip/ arrives", Duration::from_secs(30), |_| {
        fs::read_to_string(rb.join("skip/y")).is_ok_and(|c| c == "y")
    });
    assert!(ra.join("skip/x").exists() && ra.join("skip/y").exists());
    db.stop();
    da.stop();
}

#[test]
fn ignored_local_files_are_never_served() {
    let m = MalloryId::new();
    let (a, a_id) = Device::on_loopback("holder");
    let root = a.scratch().join("data");
    a.ok(&["device", "add", &m.id(), "--name", "mallory"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        root.to_str().expect("utf-8"),
        "--create",
        "--share",
        &m.id(),
    ]);
    fs::write(root.join(".stignore"), "secret.key\n").expect("stignore");
    fs::write(root.join("secret.key"), "the secret").expect("write");
    fs::write(root.join("public.txt"), "public").expect("write");
    let mut d = a.start();
    d.wait_scanned("f");
    let mut p = Mallory::connect(&m, &d.listen_url("tcp"), &a_id, &["f"]);
    let ask = |p: &mut Mallory, id: i32, name: &str, size: u32| {
        p.ask(id, "f", name, size, None, 0)
            .unwrap_or_else(|| panic!("no answer for {name}; log:\n{}", d.log()))
    };
    let r = ask(&mut p, 1, "public.txt", 6);
    assert_eq!((r.code, &r.data[..]), (ErrorCode::NoError, &b"public"[..]));
    let r = ask(&mut p, 2, "secret.key", 10);
    assert_eq!(r.code, ErrorCode::InvalidFile, "served an ignored file");
    assert!(r.data.is_empty());
    // Not ignored, but never announced: not served either.
    fs::write(root.join("unscanned.txt"), "not yet").expect("write");
    let r = ask(&mut p, 3, "unscanned.txt", 7);
    assert_eq!(r.code, ErrorCode::NoSuchFile);
    d.stop();
}
