//! `ferrosync doctor`: why a folder or a file is not in sync, said for
//! each case the daemon can tell apart.

use std::fs;
use std::time::Duration;

use ferrosync_tests::daemon::folder;
use ferrosync_tests::pair::Pair;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn f(s: &Value) -> Value {
    folder(s, "f").cloned().unwrap_or_default()
}

/// The finding codes of `doctor ARGS --json` (one diagnosis).
fn codes(d: &ferrosync_tests::Device, args: &[&str]) -> (bool, Vec<String>) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    all.push("--json");
    let v: Value = serde_json::from_str(&d.ok(&all)).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let codes = v[0]["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (v[0]["in_sync"] == true, codes)
}

#[test]
fn doctor_says_why_a_file_is_not_in_sync() {
    let p = Pair::new();
    fs::create_dir_all(&p.ra).expect("mkdir");
    fs::write(p.ra.join("a.txt"), "a").expect("write");
    let (mut da, mut db) = p.start();
    assert!(
        ferrosync_tests::poll(LIMIT, || p.rb.join("a.txt").exists().then_some(())).is_some(),
        "synced; log:\n{}",
        db.log()
    );
    db.wait_until("B idle", LIMIT, |s| f(s)["need_files"] == 0);
    assert_eq!(codes(&p.a, &["f"]), (true, vec![]));
    assert_eq!(codes(&p.a, &["f", "a.txt"]), (true, vec![]));
    assert!(p.a.ok(&["doctor"]).contains("folder \"f\": in sync"));

    // B stops pulling; A gains a file B has heard of, and one it ignores.
    p.b.ok(&["folder", "pause", "f"]);
    db.wait_until("B paused", LIMIT, |s| f(s)["state"] == "paused");
    fs::write(p.ra.join(".stignore"), "secret\n").expect("write");
    fs::write(p.ra.join("secret"), "s").expect("write");
    fs::write(p.ra.join("late.txt"), "late").expect("write");
    let seq =
        f(&da.wait_until("A scanned", LIMIT, |s| f(s)["local_files"] == 2))["sequence"].clone();
    db.wait_until("B has A's index", LIMIT, |s| {
        f(s)["remote_sequences"]
            .as_object()
            .is_some_and(|m| m.values().any(|v| *v == seq))
    });
    assert_eq!(
        codes(&p.a, &["f", "secret"]),
        (false, vec!["ignored_here".into()])
    );
    assert_eq!(
        codes(&p.a, &["f", "late.txt"]),
        (false, vec!["not_yet_at_device".into()])
    );
    let (_, on_b) = codes(&p.b, &["f"]);
    assert!(on_b.contains(&"paused".to_string()), "{on_b:?}");
    assert!(on_b.contains(&"needed".to_string()), "{on_b:?}");

    // A goes away before B could pull: B waits for it.
    da.stop();
    p.b.ok(&["folder", "resume", "f"]);
    db.wait_until("A gone", LIMIT, |s| s["devices"][0]["connected"] == false);
    let (in_sync, on_b) = codes(&p.b, &["f", "late.txt"]);
    assert!(!in_sync);
    assert!(on_b.contains(&"device_offline".to_string()), "{on_b:?}");
    assert!(on_b.contains(&"waiting_for_device".to_string()), "{on_b:?}");
    let text = p.b.ok(&["doctor", "f", "late.txt"]);
    assert!(
        text.contains("not in sync") && text.contains("only alpha") && text.contains("to fix:"),
        "{text}"
    );
    let err = p.b.fails(&["doctor", "nope"]);
    assert!(err.contains("not configured"), "{err}");
}
