//! Resource bounds and stalls against a hand-built peer: floods of
//! requests or connections, claims no one backs, vanished peers, and long
//! scans. Each must cost a bounded amount and leave other work going.

use std::time::{Duration, Instant};

use ferrosync::net::Net;
use ferrosync_tests::mallory::{file_entry, Mallory, MalloryId};
use ferrosync_tests::Device;
use proto::message::{Compression, Message};
use proto::{frame, DeviceId};
use tokio::io::AsyncReadExt;

use crate::hostile::victim;

/// Waits for the daemon's next block request on `p` (answering nothing).
fn next_request(
    p: &mut Mallory,
    d: &ferrosync_tests::daemon::Daemon<'_>,
) -> proto::message::Request {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(Message::Request(r)) => return r,
            Ok(_) => continue,
            Err(_) => panic!("no request came; log:\n{}", d.log()),
        }
    }
}

/// A peer that vanishes mid-transfer: the daemon's requests waiting on it
/// fail when its session ends (not at their 60 s time-out), and the file
/// comes from the peer's next session at once.
#[test]
fn requests_end_with_their_session_and_the_pull_goes_on_at_once() {
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let url = daemon.listen_url("tcp");
    let short = m.identity.device_id.short();
    let data = b"the content".to_vec();
    let entry = file_entry("f.txt", &data, short, 1, 1);
    let mut p = Mallory::connect(&m, &url, &a_id, &["f"]);
    p.send_index("f", vec![entry.clone()], true);
    next_request(&mut p, &daemon);
    drop(p); // Gone without answering.
    let started = Instant::now();
    let mut p = Mallory::connect(&m, &url, &a_id, &["f"]);
    p.send_index("f", vec![entry], true);
    let path = root.join("f.txt");
    let (ok, _) = p.serve_until(
        Duration::from_secs(30),
        |_| Some(bytes::Bytes::from(data.clone())),
        || std::fs::read(&path).ok().as_deref() == Some(data.as_slice()),
    );
    assert!(
        ok,
        "not pulled within 30 s of the reconnect; log:\n{}",
        daemon.log()
    );
    eprintln!("pulled {:?} after the reconnect", started.elapsed());
    daemon.stop();
}

/// A protocol error while one of our requests waits on that peer: the
/// connection is closed at once, not when the request times out.
#[test]
fn a_protocol_error_closes_the_transport_at_once() {
    let m = MalloryId::new();
    let (a, a_id, _root) = victim(&m);
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let mut p = Mallory::connect(&m, &daemon.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    p.send_index("f", vec![file_entry("f.txt", b"abc", short, 1, 1)], true);
    next_request(&mut p, &daemon);
    // An Index for a folder not shared: a protocol error.
    p.send_index("elsewhere", vec![file_entry("g", b"g", short, 1, 2)], false);
    let started = Instant::now();
    assert!(
        p.closed_within(Duration::from_secs(30)),
        "never closed; log:\n{}",
        daemon.log()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the socket stayed open {took:?} after the error; log:\n{}",
        daemon.log()
    );
    daemon.stop();
}

/// A peer sends 10,000 requests for 128 KiB blocks and never reads the
/// answers. The daemon's memory stays bounded, another device keeps
/// syncing meanwhile, and the stuck peer's session ends once its writes
/// stall.
#[test]
fn a_peer_that_floods_requests_and_never_reads_costs_bounded_memory() {
    use proto::message::Request;
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let block: Vec<u8> = (0..128u32 << 10).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("block.bin"), &block).expect("write");
    let (b, b_id) = Device::on_loopback("bystander");
    a.ok(&["device", "add", &b_id, "--name", "bystander"]);
    let ga = a.scratch().join("g");
    let gb = b.scratch().join("g");
    let add = |d: &Device, root: &std::path::Path, peer: &str| {
        d.ok(&[
            "folder",
            "add",
            "g",
            root.to_str().expect("utf-8"),
            "--create",
            "--share",
            peer,
        ])
    };
    add(&a, &ga, &b_id);
    let mut da = a.start();
    da.wait_scanned("f");
    let url = da.listen_url("tcp");
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "victim",
        "--address",
        &url,
    ]);
    add(&b, &gb, &a_id);
    let db = b.start();

    let mut p = Mallory::connect(&m, &url, &a_id, &["f"]);
    let hash: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &block,
    ))
    .into();
    let mut flood = Vec::new();
    for id in 0..10_000 {
        let req = Request {
            id,
            folder: "f".into(),
            name: proto::Name::parse("block.bin").expect("name"),
            offset: 0,
            size: 128 << 10,
            hash: Some(hash),
            from_temporary: false,
            weak_hash: 0,
            block_no: 0,
        };
        frame::encode_message_into(&Message::Request(req), Compression::Never, &mut flood);
    }
    let rss_before = da.rss_kib().expect("rss");
    // The daemon may stop reading part-way (that is the bound working).
    let _ = p.try_send_raw(&flood);
    let mut peak = 0;
    let _ = ferrosync_tests::poll(Duration::from_secs(3), || {
        peak = peak.max(da.rss_kib().unwrap_or(0));
        None::<()>
    });
    // Meanwhile another device gets a new file.
    std::fs::write(ga.join("new.txt"), "still syncing").expect("write");
    a.ok(&["folder", "rescan", "g"]);
    let arrived = ferrosync_tests::poll(Duration::from_secs(30), || {
        peak = peak.max(da.rss_kib().unwrap_or(0));
        std::fs::read_to_string(gb.join("new.txt"))
            .ok()
            .filter(|s| s == "still syncing")
    });
    assert!(
        arrived.is_some(),
        "the other device stopped syncing; logs:\n{}\n---\n{}",
        da.log(),
        db.log()
    );
    eprintln!("RSS {rss_before} KiB before the flood, peak {peak} KiB");
    assert!(
        peak < 150 << 10,
        "RSS peaked at {peak} KiB (before: {rss_before}); log:\n{}",
        da.log()
    );
    // Its writes stall; the session ends (without our reading anything).
    let mallory = m.id();
    da.wait_until("the stuck session ends", Duration::from_secs(60), |s| {
        s["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["id"] == mallory.as_str() && d["connected"] == false)
    });
    drop(p);
    da.stop();
}

/// Two large folders scanning at once hold no thread that short work
/// needs: a third folder is scanned and its file served to a peer while
/// both are still scanning (with the scans on the runtime's two blocking
/// threads, nothing else could run until one finished).
#[test]
fn long_scans_do_not_starve_serving() {
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    std::fs::write(root.join("small.txt"), "small").expect("write");
    for big in ["s1", "s2"] {
        let r = a.scratch().join(big);
        for d in 0..20 {
            let dir = r.join(format!("d{d}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for i in 0..500 {
                std::fs::write(dir.join(format!("f{i}")), format!("{big} {d} {i}")).expect("w");
            }
        }
        a.ok(&["folder", "add", big, r.to_str().expect("utf-8")]);
    }
    let mut d = a.start();
    d.wait_scanned("f");
    let scanning = |d: &ferrosync_tests::daemon::Daemon<'_>| {
        d.status().is_some_and(|s| {
            ["s1", "s2"].iter().all(|id| {
                ferrosync_tests::daemon::folder(&s, id).is_some_and(|f| f["scans_completed"] == 0)
            })
        })
    };
    assert!(
        scanning(&d),
        "the big scans were too short to show anything"
    );
    let mut p = Mallory::connect(&m, &d.listen_url("tcp"), &a_id, &["f"]);
    let answer = p
        .ask(1, "f", "small.txt", 5, None, 0)
        .unwrap_or_else(|| panic!("no answer; log:\n{}", d.log()));
    assert_eq!(&answer.data[..], b"small");
    assert!(
        scanning(&d),
        "answered only after a big scan finished; log:\n{}",
        d.log()
    );
    d.stop();
}

/// Holds `per_source` silent TCP connections to `target` open from each
/// of `sources` (loopback addresses), opening a new one whenever the
/// daemon drops one, until the returned flag is set.
fn flood(
    target: std::net::SocketAddr,
    sources: Vec<std::net::IpAddr>,
    per_source: usize,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || {
        let mut slots: Vec<(std::net::IpAddr, Option<std::net::TcpStream>)> = sources
            .iter()
            .flat_map(|&ip| std::iter::repeat_n(ip, per_source))
            .map(|ip| (ip, None))
            .collect();
        let mut opened = 0u64;
        let open = |ip: std::net::IpAddr| -> Option<std::net::TcpStream> {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.bind(&std::net::SocketAddr::new(ip, 0).into()).ok()?;
            s.connect_timeout(&target.into(), Duration::from_millis(500))
                .ok()?;
            let s: std::net::TcpStream = s.into();
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        while !flag.load(Ordering::Relaxed) {
            for (ip, slot) in slots.iter_mut() {
                let alive = slot.as_mut().is_some_and(|s| {
                    matches!(s.read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                if !alive {
                    *slot = open(*ip);
                    opened += 1;
                }
            }
            // Pacing for the load generator (not a wait for a condition).
            std::thread::park_timeout(Duration::from_millis(20));
        }
        opened
    });
    (stop, t)
}

/// Silent connections held open from one address, then from many: a
/// configured device still connects the first time (one address gets a
/// few places only), and reconnects while many addresses flood (its
/// address keeps a reserve).
#[test]
fn a_connection_flood_does_not_lock_out_a_configured_device() {
    let (a, a_id) = Device::on_loopback("victim");
    let (b, b_id) = Device::on_loopback("friend");
    let ra = a.scratch().join("data");
    a.ok(&["device", "add", &b_id, "--name", "friend"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--create",
        "--share",
        &b_id,
    ]);
    let mut da = a.start();
    let url = da.listen_url("tcp");
    let target: std::net::SocketAddr = url.trim_start_matches("tcp://").parse().expect("addr");
    let connected = |d: &mut ferrosync_tests::daemon::Daemon<'_>, what: &str| {
        d.wait_until(what, Duration::from_secs(20), |s| {
            s["devices"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x["connected"] == true))
        });
    };
    // One address holds 100 silent connections.
    let one = vec![std::net::IpAddr::from([127, 0, 0, 2])];
    let (stop1, t1) = flood(target, one, 100);
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "victim",
        "--address",
        &url,
    ]);
    let rb = b.scratch().join("data");
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
    connected(&mut db, "the first connection despite one flooding address");
    // Many addresses hold 200 between them.
    let many = (3..53)
        .map(|n| std::net::IpAddr::from([127, 0, 0, n]))
        .collect();
    let (stop2, t2) = flood(target, many, 4);
    db.stop();
    let mut db = b.start();
    connected(&mut db, "a reconnection despite many flooding addresses");
    connected(&mut da, "the victim sees it");
    for s in [&stop1, &stop2] {
        s.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let opened = t1.join().expect("flood") + t2.join().expect("flood");
    eprintln!("flood opened {opened} connections");
    db.stop();
    da.stop();
}

/// A file claimed with 1,000,000 one-byte blocks (measured before: 317–401
/// MiB peak, over 200 MiB kept) is refused at the edge by the block rule;
/// the daemon's memory stays bounded.
#[test]
fn a_million_tiny_blocks_are_refused_with_bounded_memory() {
    let m = MalloryId::new();
    let (a, a_id, _root) = victim(&m);
    let mut d = a.start();
    d.wait_scanned("f");
    let before = d.rss_kib().expect("rss");
    let mut p = Mallory::connect(&m, &d.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    let mut f = file_entry("tiny.bin", b"x", short, 1, 1);
    f.size = 1_000_000;
    f.blocks = (0..1_000_000u64)
        .map(|i| proto::message::BlockInfo {
            offset: i,
            size: 1,
            hash: [(i % 251) as u8; 32],
            weak_hash: 0,
        })
        .collect();
    p.send_index("f", vec![f], true);
    let mut peak = 0;
    let closed = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            peak = peak.max(d.rss_kib().unwrap_or(0));
            match p.recv(Duration::from_millis(20)) {
                Err(true) => break true,
                _ if Instant::now() > deadline => break false,
                _ => {}
            }
        }
    };
    assert!(closed, "kept the connection; log:\n{}", d.log());
    let after = d.rss_kib().expect("rss");
    eprintln!("RSS {before} KiB before, peak seen {peak} KiB, {after} KiB after");
    assert!(
        d.log().contains("block 0 of 1000000 has size 1"),
        "{}",
        d.log()
    );
    assert!(after < 150 << 10, "RSS {after} KiB after the refusal");
    d.stop();
}

/// Connections that complete TLS and then never send their BEP Hello keep
/// their place among handshakes until the Hello (or its time-out): one
/// address cannot pile them up.
#[test]
fn silent_authenticated_connections_are_bounded_per_address() {
    let m = MalloryId::new();
    let (a, a_id, _root) = victim(&m);
    let d = a.start();
    let url = d.listen_url("tcp");
    let peer: DeviceId = a_id.parse().expect("id");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let held = rt.block_on(async {
        // An unknown device: its address has no reserve.
        let stranger = MalloryId::new();
        let (net, _rx) = Net::start(&stranger.identity, &[]).await.expect("net");
        let mut held = Vec::new();
        for _ in 0..12 {
            if let Ok(Ok(c)) =
                tokio::time::timeout(Duration::from_secs(5), net.dial(&url, peer)).await
            {
                held.push(c);
            }
        }
        // A connection the daemon dropped during TLS may still look open
        // on our side: count those it still answers (with its Hello).
        let mut alive = 0;
        for c in held.iter_mut() {
            let mut b = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), c.reader.read(&mut b)).await
            {
                alive += usize::from(n > 0);
            }
        }
        alive
    });
    assert!(held <= 4, "{held} silent connections held from one address");
    drop(d);
}

/// A peer claims a 1 GiB file and refuses every block. The temp file is
/// sparse and holds nothing: later pull passes must not read and hash the
/// claimed size again (measured: 3 CPU-s per GiB per pass before).
#[test]
fn resuming_a_claimed_but_never_written_file_costs_nothing() {
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let mut p = Mallory::connect(&m, &daemon.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    let block = 128u32 << 10;
    let n = 8192u64; // 1 GiB
    let mut claim = file_entry("claim.bin", b"", short, 1, 1);
    claim.size = n * u64::from(block);
    claim.block_size = block;
    claim.blocks = (0..n)
        .map(|i| proto::message::BlockInfo {
            offset: i * u64::from(block),
            size: block,
            hash: [(i % 251) as u8; 32],
            weak_hash: 0,
        })
        .collect();
    p.send_index("f", vec![claim], true);
    let tmp = root.join(".syncthing.claim.bin.tmp");
    let (ok, _) = p.serve_until(Duration::from_secs(30), |_| None, || tmp.exists());
    assert!(ok, "no pull started; log:\n{}", daemon.log());
    let cpu_before = daemon.cpu_seconds().expect("cpu");
    // Three more passes, each woken by a new small file that does arrive.
    for i in 0..3i64 {
        let name = format!("t{i}");
        p.send_index("f", vec![file_entry(&name, b"t", short, 1, 2 + i)], false);
        let path = root.join(&name);
        let (ok, _) = p.serve_until(
            Duration::from_secs(30),
            |r| (r.name.as_str() != "claim.bin").then(|| bytes::Bytes::from_static(b"t")),
            || path.exists(),
        );
        assert!(ok, "{name} never arrived; log:\n{}", daemon.log());
    }
    let cpu = daemon.cpu_seconds().expect("cpu") - cpu_before;
    assert!(
        cpu < 1.0,
        "three passes over an empty 1 GiB temp file took {cpu:.2} CPU-s"
    );
    assert!(!root.join("claim.bin").exists());
    daemon.stop();
}
