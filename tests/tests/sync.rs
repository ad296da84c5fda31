use std::fs;
use std::path::Path;
use std::time::Duration;

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::trees::wait_equal;
use ferrosync_tests::Device;

fn wait_converged(a: &Path, b: &Path, daemons: &[&Daemon], limit: Duration) {
    wait_equal(&[a, b], daemons, limit, "two devices");
}

/// A with data, B empty; B dials A over `scheme` only; both share "f".
fn two_devices_sync_over(scheme: &str) {
    let (a, a_id) = Device::on_loopback("alpha");
    let (b, b_id) = Device::on_loopback("bravo");
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    a.ok(&["device", "add", &b_id, "--name", "bravo"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--create",
        "--share",
        &b_id,
    ]);
    fs::create_dir_all(ra.join("sub/deeper")).expect("mkdir");
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(ra.join("big.bin"), &big).expect("write");
    for i in 0..30 {
        fs::write(ra.join(format!("sub/file-{i}.txt")), format!("content {i}")).expect("write");
    }
    fs::write(ra.join("sub/deeper/empty"), b"").expect("write");
    std::os::unix::fs::symlink("sub/file-1.txt", ra.join("link")).expect("symlink");

    let mut da = a.start();
    da.wait_scanned("f");
    let a_url = da.listen_url(scheme);
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "alpha",
        "--address",
        &a_url,
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
    let mut db = b.start();
    wait_converged(&ra, &rb, &[&da, &db], Duration::from_secs(60));

    let s = db.wait_until(
        "the connection shows in status",
        Duration::from_secs(10),
        |s| s["devices"][0]["connected"] == true,
    );
    assert_eq!(s["devices"][0]["transport"], scheme, "{s}");
    let f = folder(&s, "f").expect("folder").clone();
    assert_eq!(f["need_files"], 0, "{f}");

    // A change on B propagates back to A.
    fs::write(rb.join("sub/file-2.txt"), "edited on bravo").expect("write");
    fs::remove_file(rb.join("sub/file-3.txt")).expect("rm");
    b.ok(&["folder", "rescan", "f"]);
    wait_converged(&rb, &ra, &[&da, &db], Duration::from_secs(30));
    assert_eq!(
        fs::read_to_string(ra.join("sub/file-2.txt")).expect("read"),
        "edited on bravo"
    );
    assert!(!ra.join("sub/file-3.txt").exists());

    // A rename costs no data transfer: the blocks come from the old file.
    let pulled = |d: &Daemon| {
        d.status()
            .and_then(|s| folder(&s, "f").and_then(|f| f["pulled_bytes"].as_u64()))
    };
    let before = pulled(&db).expect("pulled_bytes");
    fs::create_dir(ra.join("moved")).expect("mkdir");
    fs::rename(ra.join("big.bin"), ra.join("moved/big-renamed.bin")).expect("mv");
    a.ok(&["folder", "rescan", "f"]);
    wait_converged(&ra, &rb, &[&da, &db], Duration::from_secs(30));
    assert!(!rb.join("big.bin").exists());
    assert_eq!(
        pulled(&db).expect("pulled_bytes"),
        before,
        "the renamed file was downloaded again"
    );
    db.stop();
    da.stop();
}

#[test]
fn two_devices_sync_over_tcp() {
    two_devices_sync_over("tcp");
}

#[test]
fn two_devices_sync_over_quic() {
    two_devices_sync_over("quic");
}

#[test]
fn an_unknown_device_is_refused_and_shown_as_pending() {
    let (a, _a_id) = Device::on_loopback("alpha");
    let (c, c_id) = Device::on_loopback("stranger");
    let mut da = a.start();
    let a_id = a.ok(&["id"]).trim().to_string();
    c.ok(&["device", "add", &a_id, "--address", &da.listen_url("tcp")]);
    let dc = c.start();
    let pending = || -> serde_json::Value {
        serde_json::from_str(&a.ok(&["pending", "--json"])).expect("json")
    };
    let v = ferrosync_tests::poll(Duration::from_secs(30), || {
        let v = pending();
        v["devices"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["id"] == c_id.as_str()))
            .then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "not pending: {}\nlog A:\n{}\nlog C:\n{}",
            pending(),
            da.log(),
            dc.log()
        )
    });
    assert_eq!(v["devices"][0]["name"], "stranger", "{v}");
    // A never shows it as a connected device.
    let s = da.wait_until("status", Duration::from_secs(5), |_| true);
    assert!(s["devices"].as_array().expect("list").is_empty(), "{s}");
    da.stop();
    dc.stop();
}

#[test]
fn devices_and_folders_added_while_running_apply_at_once() {
    let (a, a_id) = Device::on_loopback("alpha");
    let (b, b_id) = Device::on_loopback("bravo");
    let mut da = a.start();
    let mut db = b.start();
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    fs::create_dir_all(&ra).expect("mkdir");
    fs::write(ra.join("hello.txt"), "added live").expect("write");
    a.ok(&["device", "add", &b_id]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--share",
        &b_id,
    ]);
    da.wait_scanned("f");
    b.ok(&["device", "add", &a_id, "--address", &da.listen_url("tcp")]);
    b.ok(&[
        "folder",
        "add",
        "f",
        rb.to_str().expect("utf-8"),
        "--create",
        "--share",
        &a_id,
    ]);
    wait_converged(&ra, &rb, &[&da, &db], Duration::from_secs(30));
    db.wait_until("connected", Duration::from_secs(10), |s| {
        s["devices"][0]["connected"] == true
    });

    // Removing the device ends the session at once.
    b.ok(&["device", "remove", &a_id]);
    let s = db.wait_until("device gone", Duration::from_secs(10), |s| {
        s["devices"].as_array().is_some_and(|d| d.is_empty())
    });
    assert!(folder(&s, "f").is_some());
    da.wait_until("peer disconnected", Duration::from_secs(10), |s| {
        s["devices"][0]["connected"] == false
    });
    db.stop();
    da.stop();
}

/// A receive-only folder takes changes but never sends its own; a
/// send-only folder sends but never applies others' changes.
#[test]
fn receive_only_and_send_only_folders_keep_to_their_direction() {
    for kind in ["receive-only", "send-only"] {
        let (a, a_id) = Device::on_loopback("alpha");
        let (b, b_id) = Device::on_loopback("bravo");
        let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
        fs::create_dir_all(&ra).expect("mkdir");
        fs::write(ra.join("x.txt"), "from alpha").expect("write");
        a.ok(&["device", "add", &b_id]);
        a.ok(&[
            "folder",
            "add",
            "f",
            ra.to_str().expect("utf-8"),
            "--share",
            &b_id,
        ]);
        let mut da = a.start();
        da.wait_scanned("f");
        b.ok(&["device", "add", &a_id, "--address", &da.listen_url("tcp")]);
        let rb_s = rb.to_str().expect("utf-8");
        if kind == "receive-only" {
            b.ok(&[
                "folder", "add", "f", rb_s, "--create", "--type", kind, "--share", &a_id,
            ]);
            let db = b.start();
            wait_converged(&ra, &rb, &[&da, &db], Duration::from_secs(30));
            // B's own changes stay on B, though A has seen them.
            fs::write(rb.join("x.txt"), "changed on bravo").expect("write");
            fs::write(rb.join("z.txt"), "new on bravo").expect("write");
            b.ok(&["folder", "rescan", "f"]);
            let seq = db
                .status()
                .and_then(|s| folder(&s, "f").and_then(|f| f["sequence"].as_i64()));
            let seq = seq.expect("B's sequence");
            da.wait_until("A holds B's latest index", Duration::from_secs(30), |s| {
                folder(s, "f")
                    .is_some_and(|f| f["remote_sequences"][b_id.as_str()].as_i64() >= Some(seq))
            });
            assert_eq!(
                fs::read_to_string(ra.join("x.txt")).expect("read"),
                "from alpha"
            );
            assert!(!ra.join("z.txt").exists());
            db.stop();
        } else {
            fs::create_dir_all(&rb).expect("mkdir");
            fs::write(rb.join("x.txt"), "from bravo").expect("write");
            b.ok(&["folder", "add", "f", rb_s, "--type", kind, "--share", &a_id]);
            let mut db = b.start();
            // B knows it is behind but applies nothing.
            let s = db.wait_until("B needs x", Duration::from_secs(30), |s| {
                folder(s, "f").is_some_and(|f| f["need_files"].as_u64() > Some(0))
            });
            assert!(folder(&s, "f").is_some_and(|f| f["state"] != "syncing"));
            assert_eq!(
                fs::read_to_string(rb.join("x.txt")).expect("read"),
                "from bravo"
            );
            db.stop();
        }
        da.stop();
    }
}

/// A file whose data the receiver already has anywhere (here: in another
/// folder) is assembled from that local copy, with nothing downloaded.
#[test]
fn blocks_come_from_a_local_copy_in_any_folder() {
    let (a, a_id) = Device::on_loopback("alpha");
    let (b, b_id) = Device::on_loopback("bravo");
    let root = |d: &Device, f: &str| d.scratch().join(f);
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    a.ok(&["device", "add", &b_id]);
    for f in ["f", "g"] {
        let r = root(&a, f);
        a.ok(&["folder", "add", f, r.to_str().expect("utf-8"), "--create"]);
        a.ok(&["folder", "share", f, &b_id]);
    }
    fs::write(root(&a, "g").join("original.bin"), &data).expect("write");
    let mut da = a.start();
    da.wait_scanned("g");
    b.ok(&["device", "add", &a_id, "--address", &da.listen_url("tcp")]);
    for f in ["f", "g"] {
        let r = root(&b, f);
        b.ok(&["folder", "add", f, r.to_str().expect("utf-8"), "--create"]);
        b.ok(&["folder", "share", f, &a_id]);
    }
    let db = b.start();
    wait_converged(
        &root(&a, "g"),
        &root(&b, "g"),
        &[&da, &db],
        Duration::from_secs(30),
    );

    // The same data under a new name in the other folder.
    fs::write(root(&a, "f").join("copy.bin"), &data).expect("write");
    a.ok(&["folder", "rescan", "f"]);
    wait_converged(
        &root(&a, "f"),
        &root(&b, "f"),
        &[&da, &db],
        Duration::from_secs(30),
    );
    let s = db.status().expect("status");
    assert_eq!(
        folder(&s, "f").and_then(|f| f["pulled_bytes"].as_u64()),
        Some(0),
        "the copy was downloaded although B had its blocks: {s}"
    );
    assert_eq!(
        fs::read(root(&b, "f").join("copy.bin")).expect("read"),
        data
    );
    db.stop();
    da.stop();
}

/// Syncthing's receive-only rule: a local change is invalid here too, so
/// when the global version changes (here, an older version restored on
/// the source, with an older mtime) it is pulled, and the local change is
/// kept as a conflict copy rather than lost.
#[test]
fn a_receive_only_folder_takes_a_restored_older_version() {
    let (a, a_id) = Device::on_loopback("source");
    let (b, b_id) = Device::on_loopback("mirror");
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    fs::create_dir_all(&ra).expect("mkdir");
    fs::write(ra.join("doc.txt"), "version one").expect("write");
    a.ok(&["device", "add", &b_id]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--share",
        &b_id,
    ]);
    let mut da = a.start();
    da.wait_scanned("f");
    b.ok(&["device", "add", &a_id, "--address", &da.listen_url("tcp")]);
    let rb_s = rb.to_str().expect("utf-8");
    b.ok(&[
        "folder",
        "add",
        "f",
        rb_s,
        "--create",
        "--type",
        "receive-only",
        "--share",
        &a_id,
    ]);
    let mut db = b.start();
    wait_converged(&ra, &rb, &[&da, &db], Duration::from_secs(30));

    fs::write(rb.join("doc.txt"), "edited on the mirror").expect("write");
    b.ok(&["folder", "rescan", "f"]);
    // The source restores an older copy: a new version with an old mtime.
    fs::write(ra.join("doc.txt"), "version zero, restored").expect("write");
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    fs::File::options()
        .write(true)
        .open(ra.join("doc.txt"))
        .and_then(|f| f.set_modified(day_ago))
        .expect("mtime");
    a.ok(&["folder", "rescan", "f"]);
    db.wait_until(
        "the restore reaches the mirror",
        Duration::from_secs(30),
        |_| fs::read_to_string(rb.join("doc.txt")).is_ok_and(|c| c == "version zero, restored"),
    );
    let copies: Vec<String> = ferrosync_tests::trees::tree(&rb)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("doc.sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        fs::read_to_string(rb.join(&copies[0])).expect("read"),
        "edited on the mirror"
    );
    // The source never took the mirror's change or its conflict copy.
    assert_eq!(
        fs::read_to_string(ra.join("doc.txt")).expect("read"),
        "version zero, restored"
    );
    db.stop();
    da.stop();
}
