//! Crashes under load: three devices in a mesh, each editing its own
//! files all the time, while a random one is killed (SIGKILL) at a random
//! instant and restarted, again and again. Afterwards the three converge
//! on exactly the last content each editor wrote, with no conflict copy
//! (no file was ever edited on two devices), no partial file under a real
//! name, and every device's index matching its disk (`folder verify`).
//!
//! Short here (`FERROSYNC_KILLS`, default 8); `scripts/soak` runs it long.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrosync_tests::bench::Rng;
use ferrosync_tests::daemon::Daemon;
use ferrosync_tests::trees::{tree, wait_equal};
use ferrosync_tests::Device;

/// A free TCP port on loopback (a restarted daemon must come back where
/// its peers dial it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

struct Node {
    dev: Device,
    id: String,
    root: PathBuf,
    url: String,
}

fn node(name: &str) -> Node {
    let (dev, id) = Device::on_loopback(name);
    let url = format!("tcp://127.0.0.1:{}", free_port());
    dev.ok(&["config", "set", "listen", &url]);
    let root = dev.scratch().join("data");
    std::fs::create_dir_all(&root).expect("mkdir");
    Node { dev, id, root, url }
}

/// Writes `name` under `root` as an editor saves: a new file renamed over
/// the old one. Returns the content written.
fn save(root: &Path, name: &str, rng: &mut Rng) -> Vec<u8> {
    let size = (rng.next_u64() % (768 << 10)) as usize;
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    let tmp = root.join(format!("{name}.editor-tmp"));
    std::fs::write(&tmp, &data).expect("write");
    std::fs::rename(&tmp, root.join(name)).expect("rename");
    data
}

#[test]
fn a_mesh_killed_at_random_converges_on_every_last_edit() {
    let kills: usize = std::env::var("FERROSYNC_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let nodes = [node("alpha"), node("bravo"), node("charlie")];
    for n in &nodes {
        // The editors' temp files are not synced.
        std::fs::write(n.root.join(".stignore"), "*.editor-tmp\n").expect("ignores");
        for p in nodes.iter().filter(|p| p.id != n.id) {
            n.dev.ok(&[
                "device",
                "add",
                &p.id,
                "--name",
                "peer",
                "--address",
                &p.url,
            ]);
        }
        let mut args = vec!["folder", "add", "f", n.root.to_str().expect("utf-8")];
        for p in nodes.iter().filter(|p| p.id != n.id) {
            args.extend(["--share", p.id.as_str()]);
        }
        n.dev.ok(&args);
    }
    let mut daemons: Vec<Daemon<'_>> = nodes.iter().map(|n| n.dev.start()).collect();

    // Each device edits (and now and then deletes) only its own files, so
    // any conflict copy is a spurious one.
    let mut rng = Rng::new(0x5eed);
    let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let edit = |rng: &mut Rng, last: &mut BTreeMap<String, Option<Vec<u8>>>| {
        let who = (rng.next_u64() % 3) as usize;
        let name = format!("{}-{}.bin", ["a", "b", "c"][who], rng.next_u64() % 12);
        let root = &nodes[who].root;
        if rng.next_u64() % 8 == 0 && root.join(&name).exists() {
            std::fs::remove_file(root.join(&name)).expect("delete");
            last.insert(name, None);
        } else {
            let data = save(root, &name, rng);
            last.insert(name, Some(data));
        }
    };
    for k in 0..kills {
        // Edits go on, daemons up or down; the kill lands at a random
        // moment among them (pacing, not waiting for anything).
        for _ in 0..(rng.next_u64() % 6 + 2) {
            edit(&mut rng, &mut last);
            std::thread::park_timeout(Duration::from_millis(rng.next_u64() % 150));
        }
        let victim = (rng.next_u64() % 3) as usize;
        let d = daemons.remove(victim);
        d.kill();
        edit(&mut rng, &mut last);
        let d = nodes[victim].dev.start();
        daemons.insert(victim, d);
        eprintln!(
            "kill {} of {kills}: {}",
            k + 1,
            ["alpha", "bravo", "charlie"][victim]
        );
    }
    // The last edits, then everything must settle.
    for _ in 0..5 {
        edit(&mut rng, &mut last);
    }
    let roots: Vec<&Path> = nodes.iter().map(|n| n.root.as_path()).collect();
    let refs: Vec<&Daemon<'_>> = daemons.iter().collect();
    let settled = wait_equal(&roots, &refs, Duration::from_secs(120), "after the kills");

    // Exactly the last content of every file (the editor's temp files
    // ignored and so not in the trees).
    let want: Vec<(String, Vec<u8>)> = last
        .iter()
        .filter_map(|(n, d)| d.clone().map(|d| (n.clone(), d)))
        .collect();
    for n in &nodes {
        for (name, data) in &want {
            let got = std::fs::read(n.root.join(name)).unwrap_or_default();
            assert!(
                got == *data,
                "{name} on {}: {} bytes, not the last {} written",
                n.root.display(),
                got.len(),
                data.len()
            );
        }
        for (name, _) in last.iter().filter(|(_, d)| d.is_none()) {
            assert!(!n.root.join(name).exists(), "{name} came back");
        }
    }
    let names: Vec<&String> = settled.iter().map(|(n, _)| n).collect();
    assert!(
        !names.iter().any(|n| n.contains(".sync-conflict-")),
        "spurious conflict copies: {names:?}"
    );
    assert_eq!(tree(&nodes[0].root).len(), names.len());
    // Every index matches its disk once the last scans are in.
    for (n, d) in nodes.iter().zip(daemons.iter_mut()) {
        d.wait_scanned("f");
        let out = n.dev.run(&["folder", "verify", "f"]);
        assert!(
            out.status.success(),
            "{}: {}\nlog:\n{}",
            n.root.display(),
            ferrosync_tests::describe(&out),
            d.log()
        );
    }
    for d in daemons {
        d.stop();
    }
}

/// `folder verify` is the check above: it must see a file whose bytes are
/// not its indexed blocks, a file gone, and a file never indexed (the
/// folder paused, so no scan records them first).
#[test]
fn folder_verify_reports_every_difference_from_the_index() {
    let (dev, _) = Device::on_loopback("solo");
    let root = dev.scratch().join("data");
    std::fs::create_dir_all(&root).expect("mkdir");
    for n in ["same.txt", "changed.txt", "gone.txt"] {
        std::fs::write(root.join(n), format!("{n} as indexed")).expect("write");
    }
    dev.ok(&["folder", "add", "f", root.to_str().expect("utf-8")]);
    let mut d = dev.start();
    d.wait_scanned("f");
    assert!(dev
        .ok(&["folder", "verify", "f"])
        .contains("matches its index"));
    d.api_post("/rest/folders/f/pause");
    let mut changed = std::fs::read(root.join("changed.txt")).expect("read");
    changed[0] ^= 1;
    std::fs::write(root.join("changed.txt"), changed).expect("write");
    std::fs::remove_file(root.join("gone.txt")).expect("rm");
    std::fs::write(root.join("new.txt"), "never indexed").expect("write");
    let out = dev.run(&["folder", "verify", "f"]);
    let text = ferrosync_tests::describe(&out);
    assert!(!out.status.success(), "{text}");
    for want in [
        "changed.txt: its content is not the indexed blocks",
        "gone.txt: in the index, not on disk",
        "new.txt: on disk, not in the index",
        "differs from its index in 3 places",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("same.txt"), "{text}");
    d.stop();
}
