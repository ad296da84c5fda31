use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use ferrosync_tests::daemon::folder;
use ferrosync_tests::Device;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A device with one folder "f" at `<scratch>/data`, added by the CLI.
fn device_with_folder() -> (Device, std::path::PathBuf) {
    let (d, _) = Device::init("scan");
    d.isolate();
    let root = d.scratch().join("data");
    d.ok(&[
        "folder",
        "add",
        "f",
        root.to_str().expect("utf-8"),
        "--create",
    ]);
    assert!(
        root.join(".stfolder").is_dir(),
        "folder add makes the marker"
    );
    (d, root)
}

fn write(root: &Path, name: &str, data: &[u8]) {
    let p = root.join(name);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn status_reports_the_folder_and_follows_rescans() {
    let (d, root) = device_with_folder();
    write(&root, "a.txt", b"hello");
    write(&root, "dir/b.bin", &[7u8; 300_000]);
    write(&root, "dir/sub/empty", b"");
    symlink("a.txt", root.join("link")).expect("symlink");
    write(&root, ".stignore", b"*.log\n");
    write(&root, "skip.log", b"ignored");

    let mut daemon = d.start();
    let f = daemon.wait_scanned("f");
    assert_eq!(f["state"], "idle", "{f}");
    assert_eq!(n(&f, "local_files"), 3, "{f}");
    assert_eq!(n(&f, "local_directories"), 2, "{f}");
    assert_eq!(n(&f, "local_symlinks"), 1, "{f}");
    assert_eq!(n(&f, "local_bytes"), 300_005, "{f}");
    // Alone, the global state is ours and nothing is needed.
    assert_eq!(n(&f, "global_files"), 3);
    assert_eq!(n(&f, "global_bytes"), 300_005);
    assert_eq!((n(&f, "need_files"), n(&f, "need_bytes")), (0, 0));

    let entries = daemon.api_get("/rest/folders/f/entries?blocks=true");
    let names: Vec<&str> = entries
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "a.txt",
            "dir",
            "dir/b.bin",
            "dir/sub",
            "dir/sub/empty",
            "link"
        ]
    );
    let b = &entries[2];
    assert_eq!(n(b, "block_count"), 3, "300 000 bytes in 128 KiB blocks");
    let want = format!("{:x}", Sha256::digest([7u8; 131072]));
    assert_eq!(b["blocks"][0], want.as_str());

    // Changes: one file added, one changed, one deleted; rescan on request.
    write(&root, "new.txt", b"new");
    write(&root, "a.txt", b"hello, again");
    fs::remove_file(root.join("dir/sub/empty")).expect("rm");
    let out = d.ok(&["folder", "rescan", "f"]);
    assert!(out.contains("scanned \"f\""), "{out}");
    let s = daemon.status().expect("status");
    let f = folder(&s, "f").expect("folder");
    assert_eq!(n(f, "local_files"), 3, "{f}");
    assert_eq!(n(f, "local_deleted"), 1, "{f}");
    assert_eq!(n(f, "local_bytes"), 300_000 + 12 + 3, "{f}");
    assert!(n(f, "scans_completed") >= 2);
    daemon.stop();
}

#[test]
fn a_folder_without_its_marker_is_an_error_not_a_deletion() {
    let (d, root) = device_with_folder();
    write(&root, "precious", b"data");
    let mut daemon = d.start();
    assert_eq!(n(&daemon.wait_scanned("f"), "local_files"), 1);
    daemon.stop();

    // As if the disk were not mounted: the marker is gone.
    fs::remove_dir(root.join(".stfolder")).expect("rm marker");
    let mut daemon = d.start();
    let f = daemon.wait_scanned("f");
    assert_eq!(f["state"], "error", "{f}");
    assert!(
        f["error"].as_str().is_some_and(|e| e.contains(".stfolder")),
        "{f}"
    );
    assert_eq!(
        (n(&f, "local_files"), n(&f, "local_deleted")),
        (1, 0),
        "{f}"
    );
    let err = d.run(&["folder", "rescan", "f"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("cannot be scanned"));
    daemon.stop();
}

#[test]
fn sigkill_during_a_large_scan_then_restart_gives_a_complete_index() {
    let (d, root) = device_with_folder();
    // Real data in many files (committed in batches as the scan goes) and
    // one sparse 2 GiB file whose hashing keeps the scan busy for a second
    // or more, long enough to be caught mid-scan.
    let mut want = Vec::new();
    for i in 0..2000u32 {
        let data: Vec<u8> = (0..(1000 + i % 3000))
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect();
        let name = format!("d{:02}/file-{i:04}", i % 40);
        write(&root, &name, &data);
        want.push((name, format!("{:x}", Sha256::digest(&data))));
    }
    let sparse = fs::File::create(root.join("sparse.img")).expect("create");
    sparse.set_len(2 << 30).expect("truncate");
    drop(sparse);

    let mut daemon = d.start();
    let s = daemon.wait_until("the scan to be hashing", Duration::from_secs(60), |s| {
        folder(s, "f").is_some_and(|f| {
            f["state"] == "scanning" && f["scan_progress"]["bytes_done"].as_u64() > Some(0)
        })
    });
    let f = folder(&s, "f").expect("folder");
    assert!(n(&f["scan_progress"], "bytes_total") >= 2 << 30, "{f}");
    daemon.kill();

    let mut daemon = d.start();
    let f = daemon.wait_scanned("f");
    assert_eq!(f["state"], "idle", "{f}");
    assert_eq!(n(&f, "local_files"), 2001, "{f}");
    assert_eq!(n(&f, "local_directories"), 40, "{f}");
    assert_eq!(n(&f, "local_deleted"), 0, "{f}");
    let entries = daemon.api_get("/rest/folders/f/entries?blocks=true");
    let by_name: std::collections::HashMap<&str, &Value> = entries
        .as_array()
        .expect("list")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    for (name, hash) in &want {
        let e = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(e["blocks"][0], hash.as_str(), "{name}");
    }
    let img = by_name["sparse.img"];
    assert_eq!(n(img, "size"), 2 << 30);
    assert_eq!(n(img, "block_count"), (2u64 << 30) / n(img, "block_size"));
    // Sequences are unique: the index was not left half-written.
    let mut seqs: Vec<u64> = by_name.values().map(|e| n(e, "sequence")).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), by_name.len());
    daemon.stop();
}

#[test]
fn commands_that_need_the_daemon_say_how_to_start_it() {
    let (d, _root) = device_with_folder();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["folder", "rescan", "f"],
    ] {
        let line = d.fails(args);
        assert!(
            line.contains("not running") && line.contains(" run`"),
            "{args:?}: {line}"
        );
    }
}
