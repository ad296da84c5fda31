//! A configured but malicious peer tries, one connection at a time, what
//! the protocol lets it send: messages out of order, indexes for folders
//! it was not offered, sizes and offsets no file has, block lists that
//! lie, version vectors of a million counters, requests that climb out of
//! the folder, go through a symlink or past the end, and handshakes
//! abandoned by the hundred. After every attempt the daemon still runs,
//! nothing outside the folder (nor the folder's own files) changed, its
//! memory stayed under [`RSS_BOUND_KIB`], and a friendly device still
//! gets a new file from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrosync_tests::daemon::Daemon;
use ferrosync_tests::mallory::{Mallory, MalloryId};
use ferrosync_tests::{poll, Device};
use proto::message::{ErrorCode, Message};
use proto::wire;

/// Peak resident memory the victim may reach over the whole run (its
/// idle footprint is ~20 MiB; the largest legitimate buffer an attempt
/// here can make it hold is one 24 MiB frame).
const RSS_BOUND_KIB: u64 = 150 << 10;

/// Every file under `dir` except those under `skip` and the daemons' logs:
/// size, mtime, mode.
fn snapshot(dir: &Path, skip: &[&Path]) -> BTreeMap<PathBuf, (u64, i64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let log = p.extension().is_some_and(|x| x == "log");
            if log || skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (m.len(), m.mtime(), m.mode()));
        }
    }
    out
}

struct Scene {
    victim_id: String,
    scratch: PathBuf,
    home: PathBuf,
    root: PathBuf,
    friend_root: PathBuf,
    outside_before: BTreeMap<PathBuf, (u64, i64, u32)>,
    inside_before: BTreeMap<PathBuf, (u64, i64, u32)>,
    probes: usize,
}

/// The victim shares `f` with Mallory and its friend; the folder holds
/// `data.bin` (3 blocks) and `link` → a directory outside it holding
/// `secret.txt`.
fn scene() -> (Device, Device, MalloryId, Scene) {
    let mallory = MalloryId::new();
    let (victim, victim_id) = Device::on_loopback("victim");
    let (friend, friend_id) = Device::on_loopback("friend");
    let root = victim.scratch().join("data");
    std::fs::create_dir_all(&root).expect("mkdir");
    let outside = victim.scratch().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.txt"), "not for peers").expect("write");
    std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
    let data: Vec<u8> = (0..(3u32 << 17) - 100)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    std::fs::write(root.join("data.bin"), &data).expect("write");
    victim.ok(&["device", "add", &mallory.id(), "--name", "mallory"]);
    victim.ok(&["device", "add", &friend_id, "--name", "friend"]);
    victim.ok(&[
        "folder",
        "add",
        "f",
        root.to_str().expect("utf-8"),
        "--share",
        &mallory.id(),
    ]);
    victim.ok(&["folder", "share", "f", &friend_id]);
    let friend_root = friend.scratch().join("f");
    let home = victim.home();
    let outside_before = snapshot(victim.scratch(), &[&root, &home]);
    let inside_before = snapshot(&root, &[]);
    let scene = Scene {
        victim_id,
        scratch: victim.scratch().to_path_buf(),
        home,
        root,
        friend_root,
        outside_before,
        inside_before,
        probes: 0,
    };
    (victim, friend, mallory, scene)
}

impl Scene {
    /// After an attempt: the daemon runs, nothing outside the folder nor
    /// any file that was in it changed, memory is bounded, and the friend
    /// gets a new file.
    fn check(&mut self, what: &str, v: &mut Daemon<'_>, fr: &Daemon<'_>) {
        v.wait_until(&format!("the daemon answers after {what}"), LIMIT, |_| true);
        assert_eq!(
            snapshot(&self.scratch, &[&self.root, &self.home]),
            self.outside_before,
            "{what}: something outside the folder changed"
        );
        let mut inside = snapshot(&self.root, &[]);
        inside.retain(|p, _| self.inside_before.contains_key(p));
        assert_eq!(
            inside, self.inside_before,
            "{what}: a file in the folder changed"
        );
        let peak = v.peak_rss_kib().expect("rss");
        assert!(
            peak < RSS_BOUND_KIB,
            "{what}: peak RSS {peak} KiB; log:\n{}",
            v.log()
        );
        self.probes += 1;
        let name = format!("probe-{}.txt", self.probes);
        let body = format!("after {what}");
        std::fs::write(self.root.join(&name), &body).expect("write");
        v.api_post("/rest/folders/f/rescan");
        let got = poll(LIMIT, || {
            std::fs::read_to_string(self.friend_root.join(&name))
                .ok()
                .filter(|s| *s == body)
        });
        assert!(
            got.is_some(),
            "{what}: the friend no longer syncs; victim log:\n{}\n--- friend log:\n{}",
            v.log(),
            fr.log()
        );
        eprintln!("{what}: survived, peak RSS {peak} KiB");
    }
}

const LIMIT: Duration = Duration::from_secs(30);

/// Whether the daemon closed `m` within the limit and logged `reason`.
fn refused(m: &mut Mallory, v: &Daemon<'_>, reason: &str) -> bool {
    m.closed_within(LIMIT)
        && poll(Duration::from_secs(10), || {
            v.log().contains(reason).then_some(())
        })
        .is_some()
}

fn wire_file(name: &str, size: i64, blocks: Vec<wire::BlockInfo>, counters: u64) -> wire::FileInfo {
    wire::FileInfo {
        name: name.into(),
        size,
        sequence: 1,
        modified_s: 1_700_000_000,
        permissions: 0o644,
        blocks,
        version: Some(wire::Vector {
            counters: (1..=counters)
                .map(|id| wire::Counter { id, value: 1 })
                .collect(),
        }),
        ..Default::default()
    }
}

fn block(offset: i64, size: i32) -> wire::BlockInfo {
    wire::BlockInfo {
        offset,
        size,
        hash: vec![7; 32],
        weak_hash: 0,
    }
}

fn index(folder: &str, files: Vec<wire::FileInfo>) -> wire::Index {
    wire::Index {
        folder: folder.into(),
        files,
        ..Default::default()
    }
}

fn request(id: i32, name: &str, offset: i64, size: i32) -> wire::Request {
    wire::Request {
        id,
        folder: "f".into(),
        name: name.into(),
        offset,
        size,
        ..Default::default()
    }
}

/// The answer to request `id`, `None` if the daemon closed first.
fn answer(m: &mut Mallory, id: i32) -> Option<proto::message::Response> {
    loop {
        match m.recv(LIMIT) {
            Ok(Message::Response(r)) if r.id == id => return Some(r),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn a_malicious_peer_changes_nothing_and_a_friend_still_syncs() {
    let (victim, friend, mallory, mut s) = scene();
    let mut v = victim.start();
    v.wait_scanned("f");
    let url = v.listen_url("tcp");
    friend.ok(&[
        "device",
        "add",
        &s.victim_id,
        "--name",
        "victim",
        "--address",
        &url,
    ]);
    friend.ok(&[
        "folder",
        "add",
        "f",
        s.friend_root.to_str().expect("utf-8"),
        "--create",
        "--share",
        &s.victim_id,
    ]);
    let fr = friend.start();
    s.check("the first sync", &mut v, &fr);
    let (mid, vid) = (&mallory, s.victim_id.clone());

    // An Index before any ClusterConfig.
    let mut m = Mallory::hello_only(mid, &url, &vid);
    m.send_wire(
        wire::MessageType::Index,
        &index("f", vec![wire_file("early.txt", 5, vec![block(0, 5)], 1)]),
    );
    assert!(
        refused(&mut m, &v, "before ClusterConfig"),
        "an index before ClusterConfig was taken; log:\n{}",
        v.log()
    );
    s.check("an index before ClusterConfig", &mut v, &fr);

    // An Index for a folder the victim never offered it.
    let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
    m.send_wire(
        wire::MessageType::Index,
        &index("nope", vec![wire_file("x.txt", 5, vec![block(0, 5)], 1)]),
    );
    assert!(
        refused(&mut m, &v, "which is not shared with this device"),
        "an index for an unshared folder was taken; log:\n{}",
        v.log()
    );
    s.check("an index for an unshared folder", &mut v, &fr);

    // Sizes and offsets no file has, and block lists that lie about the
    // file they make up: each closes the connection as an invalid entry.
    let lies: [(&str, wire::FileInfo); 6] = [
        ("a negative size", wire_file("neg.bin", -1, vec![], 1)),
        (
            "a negative block offset",
            wire_file("negoff.bin", 5, vec![block(-131072, 5)], 1),
        ),
        (
            "a negative block size",
            wire_file("negsize.bin", 5, vec![block(0, -5)], 1),
        ),
        (
            "a size of 2^63-1 in one block",
            wire_file("huge.bin", i64::MAX, vec![block(0, 131072)], 1),
        ),
        (
            "blocks that overlap",
            wire_file(
                "overlap.bin",
                262144,
                vec![block(0, 131072), block(0, 131072)],
                1,
            ),
        ),
        (
            "blocks shorter than the size",
            wire_file("short.bin", 1 << 30, vec![block(0, 131072)], 1),
        ),
    ];
    for (what, f) in lies {
        let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
        m.send_wire(wire::MessageType::Index, &index("f", vec![f]));
        assert!(
            refused(&mut m, &v, "invalid FileInfo"),
            "{what}: taken; log:\n{}",
            v.log()
        );
        s.check(what, &mut v, &fr);
    }

    // A version vector of a million counters (a 24 MB frame; a real one
    // has one counter per device that ever changed the file).
    let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
    m.send_wire(
        wire::MessageType::Index,
        &index(
            "f",
            vec![wire_file("vv.txt", 5, vec![block(0, 5)], 1_000_000)],
        ),
    );
    assert!(
        refused(&mut m, &v, "invalid FileInfo"),
        "a million-counter version vector was taken; log:\n{}",
        v.log()
    );
    s.check("a version vector of a million counters", &mut v, &fr);

    // Requests that climb out of the folder are protocol errors.
    for (what, name) in [
        (
            "a request for ../outside/secret.txt",
            "../outside/secret.txt",
        ),
        ("a request for an absolute path", "/etc/passwd"),
    ] {
        let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
        m.send_wire(wire::MessageType::Request, &request(1, name, 0, 13));
        assert!(
            answer(&mut m, 1).is_none() && m.closed_within(LIMIT),
            "{what}: answered; log:\n{}",
            v.log()
        );
        s.check(what, &mut v, &fr);
    }

    // Requests the protocol can carry but no file backs: through the
    // symlink, past the end, at a negative offset, of 2 GiB. Each gets an
    // error and no bytes, or closes the connection; none returns data.
    let end = std::fs::metadata(s.root.join("data.bin"))
        .expect("meta")
        .len() as i64;
    let tries = [
        (
            "a request through a symlink",
            request(2, "link/secret.txt", 0, 13),
        ),
        ("a request for the symlink", request(3, "link", 0, 13)),
        (
            "a request past the end",
            request(4, "data.bin", end + 10, 131072),
        ),
        (
            "a request at a negative offset",
            request(5, "data.bin", -131072, 131072),
        ),
        ("a request of 2 GiB", request(6, "data.bin", 0, i32::MAX)),
        (
            "a request of a negative size",
            request(7, "data.bin", 0, -1),
        ),
    ];
    for (what, req) in tries {
        let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
        let id = req.id;
        m.send_wire(wire::MessageType::Request, &req);
        if let Some(r) = answer(&mut m, id) {
            assert!(
                r.code != ErrorCode::NoError && r.data.is_empty(),
                "{what}: answered {:?} with {} bytes",
                r.code,
                r.data.len()
            );
        }
        s.check(what, &mut v, &fr);
    }

    // A legitimate request still gets the bytes (the attempts above are
    // refused for what they are, not because serving broke).
    let mut m = Mallory::connect(mid, &url, &vid, &["f"]);
    m.send_wire(
        wire::MessageType::Request,
        &request(8, "data.bin", 0, 131072),
    );
    let r = answer(&mut m, 8).expect("an answer");
    assert_eq!(r.code, ErrorCode::NoError);
    assert_eq!(
        &r.data[..],
        &std::fs::read(s.root.join("data.bin")).expect("read")[..131072]
    );
    drop(m);

    // Hundreds of handshakes abandoned at each step: TCP only, half a TLS
    // ClientHello, and a finished TLS handshake with half a BEP Hello (those
    // first, so the raw floods do not keep them from their handshakes).
    // The daemon refuses most of these once one address holds its share
    // of handshakes: that is the bound working, not a failure.
    let mut half = Vec::new();
    let hello = proto::frame::encode_hello(&proto::message::Hello::default());
    for _ in 0..100 {
        if let Ok(mut m) = Mallory::try_raw(mid, &url, &vid) {
            if m.try_send_raw(&hello[..hello.len() / 2]) {
                half.push(m);
            }
        }
    }
    let target: std::net::SocketAddr = url.trim_start_matches("tcp://").parse().expect("addr");
    let mut held = Vec::new();
    for i in 0..300 {
        let Ok(mut c) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
        else {
            continue;
        };
        if i % 2 == 1 {
            use std::io::Write;
            // A TLS record header and the start of a ClientHello.
            let _ = c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]);
        }
        held.push(c);
    }
    eprintln!(
        "{} TCP connections opened, {} TLS sessions with half a Hello",
        held.len(),
        half.len()
    );
    drop(held);
    drop(half);
    s.check("hundreds of abandoned handshakes", &mut v, &fr);

    let peak = v.peak_rss_kib().expect("rss");
    eprintln!("peak RSS over every attempt: {peak} KiB (bound {RSS_BOUND_KIB} KiB)");
    fr.stop();
    v.stop();
}
