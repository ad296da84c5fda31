//! The guards against an accident on one device spreading: a missing root
//! deletes nothing anywhere, a mass delete waits for confirmation in both
//! directions, and a paused folder neither scans nor pulls.

use std::fs;
use std::path::Path;
use std::time::Duration;

use ferrosync_tests::daemon::{folder, Daemon};
use ferrosync_tests::pair::Pair;
use ferrosync_tests::poll;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// Regular files under `root` (the marker and temp files aside).
fn files(root: &Path) -> usize {
    ferrosync_tests::trees::tree(root)
        .iter()
        .filter(|(_, what)| what != "dir")
        .count()
}

/// Writes `n` small files, a few directories deep.
fn write_files(root: &Path, n: usize) {
    for i in 0..n {
        let p = root.join(format!("d{}/file{i}", i % 10));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, format!("content {i}")).expect("write");
    }
}

fn f(s: &Value) -> Value {
    folder(s, "f").cloned().unwrap_or_default()
}

fn wait_files(root: &Path, n: usize, daemons: &[&Daemon]) {
    if poll(LIMIT, || (files(root) == n).then_some(())).is_none() {
        for d in daemons {
            eprintln!("--- log:\n{}", d.log());
        }
        panic!("{} has {} files, not {n}", root.display(), files(root));
    }
}

/// 400 of 500 files deleted on A: A pauses the folder and announces none
/// of it; accepted there, B holds the same deletions (showing why) while
/// the rest still syncs; accepted on B too, they are carried out.
#[test]
fn a_mass_delete_is_held_on_both_sides_until_accepted() {
    let p = Pair::new();
    write_files(&p.ra, 500);
    let (mut da, mut db) = p.start();
    wait_files(&p.rb, 500, &[&da, &db]);
    let seq = f(&da.status().expect("status"))["sequence"].clone();

    for i in 0..400 {
        fs::remove_file(p.ra.join(format!("d{}/file{i}", i % 10))).expect("rm");
    }
    let s = da.wait_until("A paused by the guard", LIMIT, |s| {
        f(s)["state"] == "paused"
    });
    let hold = f(&s)["hold"].as_str().unwrap_or_default().to_string();
    assert!(
        hold.contains("400 of") && hold.contains("--accept-deletes"),
        "{hold}"
    );
    assert_eq!(f(&s)["local_deleted"], 0, "no tombstone recorded");
    assert_eq!(f(&s)["sequence"], seq, "nothing announced");
    let text = p.a.ok(&["status"]);
    assert!(text.contains("--accept-deletes"), "status says it: {text}");
    assert_eq!(files(&p.rb), 500);

    let out = p.a.ok(&["folder", "resume", "f", "--accept-deletes"]);
    assert!(out.contains("deletions accepted"), "{out}");
    let s = db.wait_until("B holding the remote deletions", LIMIT, |s| {
        f(s)["deletes_held"] == 400
    });
    let hold = f(&s)["hold"].as_str().unwrap_or_default().to_string();
    assert!(hold.contains("waiting for confirmation"), "{hold}");
    // The rest keeps syncing meanwhile.
    fs::write(p.ra.join("new"), "new").expect("write");
    assert!(
        poll(LIMIT, || fs::read(p.rb.join("new")).ok()).is_some(),
        "a new file still arrives; log:\n{}",
        db.log()
    );
    assert_eq!(files(&p.rb), 501, "the held deletions were not done");

    p.b.ok(&["folder", "resume", "f", "--accept-deletes"]);
    wait_files(&p.rb, 101, &[&da, &db]);
    let s = db.wait_until("B no longer holding", LIMIT, |s| f(s)["deletes_held"] == 0);
    assert!(f(&s)["hold"].is_null());
    assert_eq!(f(&da.status().expect("status"))["state"], "idle");
    p.b.fails(&["folder", "resume", "f", "--accept-deletes"]);
}

/// B's root moved away (as an unmounted disk would be): B stops with an
/// error, re-creates nothing, and deletes nothing on A; with the root
/// back, B catches up on what A changed meanwhile.
#[test]
fn a_missing_root_deletes_nothing_anywhere() {
    let p = Pair::new();
    write_files(&p.ra, 50);
    let (mut da, mut db) = p.start();
    wait_files(&p.rb, 50, &[&da, &db]);
    // Files land before the pass commits them to B's index: read B's
    // sequence once the index holds them all and B is idle.
    let b_seq = f(&db.wait_until("B indexed what it pulled", LIMIT, |s| {
        f(s)["local_files"] == 50 && f(s)["state"] == "idle"
    }))["sequence"]
        .clone();

    let away = p.rb.with_extension("unmounted");
    fs::rename(&p.rb, &away).expect("move the root away");
    let out = p.b.run(&["folder", "rescan", "f"]);
    assert!(
        !out.status.success(),
        "a folder without its root cannot be scanned"
    );
    db.wait_until("B in error", LIMIT, |s| f(s)["state"] == "error");
    // A change on A reaches B's index, and B must not write it anywhere.
    fs::write(p.ra.join("while-away"), "x").expect("write");
    let a_seq = f(&da.wait_until("A scanned the new file", LIMIT, |s| {
        f(s)["local_files"] == 51
    }))["sequence"]
        .clone();
    let s = db.wait_until("B has A's index", LIMIT, |s| {
        f(s)["remote_sequences"]
            .as_object()
            .is_some_and(|m| m.values().any(|v| *v == a_seq))
    });
    assert_eq!(f(&s)["state"], "error");
    let e = f(&s)["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("missing"), "{e}");
    assert_eq!(f(&s)["sequence"], b_seq, "B announced nothing");
    assert!(!p.rb.exists(), "the root was not re-created");
    assert_eq!(files(&p.ra), 51, "nothing deleted on A");

    fs::rename(&away, &p.rb).expect("back");
    p.b.ok(&["folder", "rescan", "f"]);
    assert!(poll(LIMIT, || p.rb.join("while-away").exists().then_some(())).is_some());
    assert_eq!(files(&p.ra), 51);
}

/// A paused folder takes in the index but applies nothing, and refuses
/// rescans; resumed (over the API), it catches up. Pausing over the API
/// is saved in the config too.
#[test]
fn a_paused_folder_neither_scans_nor_pulls() {
    let p = Pair::new();
    write_files(&p.ra, 5);
    let (mut da, mut db) = p.start();
    wait_files(&p.rb, 5, &[&da, &db]);

    db.api_post("/rest/folders/f/pause");
    assert!(p
        .b
        .ok(&["folder", "list", "--json"])
        .contains("\"paused\": true"));
    db.wait_until("B paused", LIMIT, |s| f(s)["state"] == "paused");
    db.api_post("/rest/folders/f/resume");
    db.wait_until("B resumed", LIMIT, |s| f(s)["state"] == "idle");
    let out = p.b.ok(&["folder", "pause", "f"]);
    assert!(out.contains("paused"), "{out}");
    db.wait_until("B paused", LIMIT, |s| f(s)["state"] == "paused");
    fs::write(p.ra.join("later"), "later").expect("write");
    fs::write(p.rb.join("local"), "local").expect("write");
    let a_seq =
        f(&da.wait_until("A scanned", LIMIT, |s| f(s)["local_files"] == 6))["sequence"].clone();
    let s = db.wait_until("B has A's index", LIMIT, |s| {
        f(s)["remote_sequences"]
            .as_object()
            .is_some_and(|m| m.values().any(|v| *v == a_seq))
    });
    assert_eq!(f(&s)["state"], "paused");
    assert!(!p.rb.join("later").exists(), "nothing pulled while paused");
    assert_eq!(f(&s)["local_files"], 5, "nothing scanned while paused");
    let err = p.b.fails(&["folder", "rescan", "f"]);
    assert!(err.contains("paused"), "{err}");

    // Resumed over the API, saved in the config: live, and kept.
    db.api_post("/rest/folders/f/resume");
    let saved = p.b.ok(&["folder", "list", "--json"]);
    assert!(saved.contains("\"paused\": false"), "{saved}");
    assert!(poll(LIMIT, || p.rb.join("later").exists().then_some(())).is_some());
    assert!(poll(LIMIT, || p.ra.join("local").exists().then_some(())).is_some());
}

/// A tmpfs mounted for the test, unmounted however the test ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `size` (e.g. `8m`) at `dir`; `None` without root (a failure
    /// in CI).
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !root {
            assert!(
                !ferrosync_tests::in_ci(),
                "the disk-full test needs root in CI"
            );
            eprintln!("SKIPPED: the disk-full test needs root (it mounts a tmpfs)");
            return None;
        }
        fs::create_dir_all(dir).expect("mkdir");
        let opts = format!("size={size}");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &opts,
            "tmpfs",
            dir.to_str().expect("utf-8"),
        ]);
        Some(Self(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let opts = format!("remount,size={size}");
        mount(&["-o", &opts, self.0.to_str().expect("utf-8")]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount(args: &[&str]) {
    let out = std::process::Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        ferrosync_tests::describe(&out)
    );
}

/// B's folder is on an 8 MiB file system and A has 12 MiB for it: B
/// pauses with a clear error, no file under its name is incomplete, and
/// once the file system grows, B completes by itself.
#[test]
fn a_full_disk_pauses_pulling_until_space_returns() {
    let p = Pair::new();
    let Some(disk) = Tmpfs::mount(&p.rb, "8m") else {
        return;
    };
    let files: Vec<(String, Vec<u8>)> = (0..4u32)
        .map(|n| {
            let data = (0..3u32 << 20)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n) >> 11) as u8)
                .collect();
            (format!("part{n}.bin"), data)
        })
        .collect();
    fs::create_dir_all(&p.ra).expect("mkdir");
    for (name, data) in &files {
        fs::write(p.ra.join(name), data).expect("write");
    }
    let (da, mut db) = p.start();
    let s = db.wait_until("B out of space", LIMIT, |s| {
        f(s)["state"] == "paused" && f(s)["error"].is_string()
    });
    let e = f(&s)["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("full") || e.contains("free"), "{e}");
    assert!(e.contains("resumes by itself"), "{e}");
    for (name, data) in &files {
        if let Ok(got) = fs::read(p.rb.join(name)) {
            assert!(got == *data, "{name} is under its name but not whole");
        }
    }
    assert!(
        files.iter().any(|(n, _)| !p.rb.join(n).exists()),
        "not all fit"
    );

    disk.resize("64m");
    wait_files(&p.rb, files.len(), &[&da, &db]);
    for (name, data) in &files {
        assert!(fs::read(p.rb.join(name)).expect("read") == *data, "{name}");
    }
    db.wait_until("B idle again", LIMIT, |s| f(s)["state"] == "idle");
    drop(db);
    drop(da);
}

/// A real `rm -rf` of 4,000 of 5,000 files in 400 directories reaches
/// the watcher a directory at a time; none of it may spread before the
/// guard sees it whole.
#[test]
fn an_rm_rf_spreads_nothing_before_the_guard_holds_it() {
    let p = Pair::new();
    for i in 0..5000 {
        let dir = match i < 4000 {
            true => format!("big/d{}", i % 400),
            false => format!("keep/d{}", i % 100),
        };
        let path = p.ra.join(format!("{dir}/file{i}"));
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, format!("content {i}")).expect("write");
    }
    let (mut da, db) = p.start();
    wait_files(&p.rb, 5000, &[&da, &db]);
    let seq = f(&da.status().expect("status"))["sequence"].clone();
    let rm = std::process::Command::new("rm")
        .arg("-rf")
        .arg(p.ra.join("big"))
        .status()
        .expect("rm");
    assert!(rm.success());
    let s = da.wait_until("A paused by the guard", LIMIT, |s| {
        f(s)["state"] == "paused"
    });
    assert_eq!(f(&s)["local_deleted"], 0, "no tombstone recorded: {s}");
    assert_eq!(f(&s)["sequence"], seq, "nothing announced");
    let hold = f(&s)["hold"].as_str().unwrap_or_default().to_string();
    assert!(hold.contains("4000 of this folder's 5000 files"), "{hold}");
    assert_eq!(files(&p.rb), 5000);
}
