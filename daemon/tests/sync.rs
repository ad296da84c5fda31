//! Component test: two complete devices in one process (index, folder
//! runner, BEP session, puller), joined by an in-memory byte stream instead
//! of a network connection. Proves the session and the puller converge two
//! folders, independently of the transport.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrosync::config::{Config, FolderType};
use ferrosync::home::Home;
use ferrosync::identity;
use ferrosync::index::Index;
use ferrosync::model::folder::{self, FolderHandle};
use ferrosync::peer::{Link, Peers};
use proto::DeviceId;

struct Node {
    _dir: tempfile::TempDir,
    id: DeviceId,
    root: PathBuf,
    config: Config,
    index: Index,
}

fn node(name: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = Home::new(dir.path().join("home"));
    let (ident, _) = identity::load_or_create(&home).expect("identity");
    let root = dir.path().join("folder");
    fs::create_dir_all(&root).expect("mkdir");
    ferrosync::fs::ensure_marker(&root).expect("marker");
    let index = Index::open(&home.index_path(), 4 << 20).expect("index");
    Node {
        _dir: dir,
        id: ident.device_id,
        root,
        config: Config::new_for(name),
        index,
    }
}

fn share(a: &mut Node, b: &Node) {
    a.config
        .add_device(&a.id, b.id, Some("peer"), &[])
        .expect("device");
    a.config
        .add_folder("f", &a.root, FolderType::SendReceive, &[b.id])
        .expect("folder");
}

fn start(n: &Node) -> (Arc<Peers>, FolderHandle) {
    let peers = Peers::new(
        n.id,
        ferrosync::config::live::Live::new(n.config.clone()),
        n.index.clone(),
    );
    let fc = n.config.folders[0].clone();
    let fi = n.index.folder("f").expect("folder index");
    let (h, _task) = folder::spawn(
        fc,
        fi,
        n.id.short(),
        Some(peers.clone()),
        Arc::new(AtomicBool::new(false)),
        0,
    );
    (peers, h)
}

fn connect(a: (&Arc<Peers>, DeviceId), b: (&Arc<Peers>, DeviceId)) {
    let (x, y) = tokio::io::duplex(1 << 20);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let addr = "127.0.0.1:1".parse().expect("addr");
    let link = |peer: DeviceId, r, w, outgoing| Link {
        device_id: peer,
        transport: "tcp",
        remote_addr: addr,
        outgoing,
        relay: None,
        reader: r,
        writer: w,
        keepalive: None,
        until_hello: None,
    };
    tokio::spawn(
        a.0.clone()
            .run_link(link(b.1, Box::new(xr), Box::new(xw), true)),
    );
    tokio::spawn(
        b.0.clone()
            .run_link(link(a.1, Box::new(yr), Box::new(yw), false)),
    );
}

/// Every regular file, directory and symlink under `root` (internal names
/// excepted) with its content or target.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if ferrosync::fs::is_internal(&rel) {
                continue;
            }
            let m = fs::symlink_metadata(&p).expect("meta");
            if m.file_type().is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", fs::read_link(&p).expect("link").display()),
                ));
            } else if m.is_dir() {
                out.push((rel, "dir".into()));
                stack.push(p);
            } else {
                let data = fs::read(&p).expect("read");
                out.push((
                    rel,
                    format!(
                        "{} bytes, sha {:x}",
                        data.len(),
                        sha2::Sha256::digest(&data)
                    ),
                ));
            }
        }
    }
    out.sort();
    out
}

use sha2::Digest;

async fn converge(a: &Path, b: &Path, limit: Duration) {
    let start = Instant::now();
    loop {
        let (ta, tb) = (tree(a), tree(b));
        if ta == tb && !ta.is_empty() {
            return;
        }
        if start.elapsed() > limit {
            panic!("did not converge in {limit:?}\nA: {ta:#?}\nB: {tb:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_converge_over_a_bep_session() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "ferrosync=info".into()))
        .try_init();
    let (mut a, mut b) = (node("a"), node("b"));
    share(&mut a, &b);
    share(&mut b, &a);
    // A has data before connecting: a big file, small ones, a directory
    // tree, an empty file and a symlink.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(a.root.join("big.bin"), &big).expect("write");
    fs::create_dir_all(a.root.join("docs/deep")).expect("mkdir");
    for i in 0..20 {
        fs::write(
            a.root.join(format!("docs/note-{i}.txt")),
            format!("note {i}"),
        )
        .expect("write");
    }
    fs::write(a.root.join("docs/deep/empty"), b"").expect("write");
    std::os::unix::fs::symlink("docs/note-1.txt", a.root.join("link")).expect("symlink");

    let (pa, ha) = start(&a);
    let (pb, hb) = start(&b);
    connect((&pa, a.id), (&pb, b.id));
    converge(&a.root, &b.root, Duration::from_secs(30)).await;

    // Edits on B flow back: modify, add, delete.
    fs::write(b.root.join("docs/note-3.txt"), "changed on b").expect("write");
    fs::write(b.root.join("docs/deep/new.txt"), "new on b").expect("write");
    fs::remove_file(b.root.join("docs/note-4.txt")).expect("rm");
    let t = hb.request_rescan();
    hb.wait_for_scan(t).await;
    converge(&b.root, &a.root, Duration::from_secs(30)).await;
    assert!(!a.root.join("docs/note-4.txt").exists());
    assert_eq!(
        fs::read_to_string(a.root.join("docs/note-3.txt")).expect("read"),
        "changed on b"
    );

    // No temp files are left behind.
    for root in [&a.root, &b.root] {
        let temps: Vec<_> = tree(root)
            .into_iter()
            .filter(|(n, _)| n.contains(".syncthing."))
            .collect();
        assert!(temps.is_empty(), "{temps:?}");
    }
    let st = ha.index.folder_meta().expect("meta");
    assert_eq!(st.need, Default::default(), "A needs nothing");
    assert_eq!(
        hb.index.folder_meta().expect("meta").need,
        Default::default(),
        "B needs nothing"
    );
}
