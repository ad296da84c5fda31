//! Devices that cannot reach each other directly meet through a relay:
//! on loopback (one side has no listener at all), and in network
//! namespaces behind two NAT routers, where they must then find the
//! direct QUIC path through both NATs; and with the real Syncthing,
//! through our relay and through its own `strelaysrv`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrosync_tests::daemon::Daemon;
use ferrosync_tests::servers::RelayProcess;
use ferrosync_tests::trees::wait_equal;
use ferrosync_tests::wan::Wan;
use ferrosync_tests::Device;
use serde_json::Value;

/// Writes `small` files of a few KiB and one file of `big` bytes under
/// `root` (contents differ per file and per `seed`).
fn fill(root: &Path, small: usize, big: usize, seed: u8) {
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    for i in 0..small {
        let body: Vec<u8> = (0..(1024 + i * 97))
            .map(|j| (j as u8).wrapping_mul(31) ^ seed ^ i as u8)
            .collect();
        std::fs::write(root.join("docs").join(format!("{seed}-{i}.txt")), body).expect("write");
    }
    if big > 0 {
        let mut x = 0x9E37_79B9_u32 ^ u32::from(seed);
        let body: Vec<u8> = (0..big)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(root.join(format!("big-{seed}.bin")), body).expect("write");
    }
}

/// The status entry of the one configured device.
fn peer(s: &Value) -> &Value {
    &s["devices"][0]
}

/// A device joined to a loopback relay and listening nowhere is dialled
/// through the relay by a device that has the relay URI as its address:
/// the folder syncs both ways, status says `relay` and which one on both
/// sides, and the joined side lists the relay as joined.
#[test]
fn a_device_with_no_listener_is_reached_through_a_relay() {
    let relay = RelayProcess::start("127.0.0.1:0", None, &[]);
    let (a, a_id) = Device::init("hidden");
    a.isolate();
    let (b, b_id) = Device::on_loopback("dialler");
    a.ok(&["config", "set", "relays", &relay.uri]);
    a.ok(&["device", "add", &b_id, "--name", "peer"]);
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "peer",
        "--address",
        &relay.uri,
    ]);
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    for (d, root, other) in [(&a, &ra, &b_id), (&b, &rb, &a_id)] {
        d.share_folder("f", root, other);
    }
    fill(&ra, 5, 3 << 20, 1);
    fill(&rb, 5, 0, 2);
    let started = Instant::now();
    let (mut da, mut db) = (a.start(), b.start());
    let sb = db.wait_until(
        "connected through the relay",
        Duration::from_secs(20),
        |s| peer(s)["transport"] == "relay",
    );
    eprintln!("relayed session up {:?} after start", started.elapsed());
    assert_eq!(peer(&sb)["relay"], relay.uri.as_str(), "{sb:#}");
    assert_eq!(peer(&sb)["source"], "static", "{sb:#}");
    wait_equal(&[&ra, &rb], &[&da, &db], Duration::from_secs(60), "relayed");
    let sa = da.wait_until("connected", Duration::from_secs(5), |s| {
        peer(s)["transport"] == "relay"
    });
    assert_eq!(peer(&sa)["source"], "incoming", "{sa:#}");
    assert_eq!(peer(&sa)["relay"], relay.uri.as_str(), "{sa:#}");
    assert_eq!(sa["relays"][0]["entry"], relay.uri.as_str(), "{sa:#}");
    assert_eq!(sa["relays"][0]["joined"], true, "{sa:#}");
    // The CLI says the same.
    let out = a.ok(&["status"]);
    assert!(
        out.contains(&format!("relay {}: joined", relay.uri)),
        "{out}"
    );
    let out = b.ok(&["status"]);
    assert!(
        out.contains(&format!("connected via relay {} (static)", relay.uri)),
        "{out}"
    );
    da.stop();
    db.stop();
}

/// Serves `body` as JSON to every HTTP request on a loopback port (a
/// relay pool's endpoint), from a thread that ends with the process.
fn serve_json(body: String) -> std::net::SocketAddr {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A `dynamic+http://` pool lists a relay that does not answer and one
/// that does: the device probes both at once, joins the live one (status
/// shows which, and its latency) and is reached through it.
#[test]
fn a_pool_is_probed_and_its_live_relay_joined() {
    let relay = RelayProcess::start("127.0.0.1:0", None, &[]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let pool = serve_json(
        serde_json::json!({
            "relays": [{ "url": format!("relay://{dead}") }, { "url": relay.uri }]
        })
        .to_string(),
    );
    let entry = format!("dynamic+http://{pool}/endpoint");
    let (a, a_id) = Device::init("pooled");
    a.isolate();
    let (b, b_id) = Device::on_loopback("dialler");
    a.ok(&["config", "set", "relays", &entry]);
    a.ok(&["device", "add", &b_id, "--name", "peer"]);
    b.ok(&[
        "device",
        "add",
        &a_id,
        "--name",
        "peer",
        "--address",
        &relay.uri,
    ]);
    let (mut da, mut db) = (a.start(), b.start());
    let s = da.wait_until("joined the pool's relay", Duration::from_secs(20), |s| {
        s["relays"][0]["joined"] == true
    });
    let r = &s["relays"][0];
    assert_eq!(r["entry"], entry.as_str(), "{r:#}");
    assert_eq!(r["relay"], relay.uri.as_str(), "{r:#}");
    assert!(r["latency_ms"].is_u64(), "{r:#}");
    db.wait_until(
        "connected through the pool's relay",
        Duration::from_secs(20),
        |s| peer(s)["transport"] == "relay",
    );
    da.stop();
    db.stop();
}

/// Two devices, each behind its own NAT router (MASQUERADE, nothing in
/// but answers), given only each other's ID, a `ferrosync-discovery` and
/// a `ferrosync-relay` on the WAN. With UDP blocked at one router (no
/// punching possible) they connect through the relay within 10 s of
/// starting and sync 40 files and 16 MiB; once UDP passes again, they
/// punch a direct QUIC path through both NATs within 30 s, which replaces
/// the relayed session.
#[test]
fn devices_behind_two_nats_meet_through_the_relay_then_punch_through() {
    let Some(mut wan) = Wan::new() else { return };
    let (nat_a, ha) = wan.behind_nat("a");
    let (nat_b, hb) = wan.behind_nat("b");
    let (disco, relay, stun) = (&wan.disco, &wan.relay, wan.stun.to_string());
    let sessions = || wan.relay_sessions();

    let (a, a_id) = Device::in_netns("alpha", &ha);
    let (b, b_id) = Device::in_netns("bravo", &hb);
    let (ra, rb): (PathBuf, PathBuf) = (a.scratch().join("data"), b.scratch().join("data"));
    for (d, root, other) in [(&a, &ra, &b_id), (&b, &rb, &a_id)] {
        d.ok(&["config", "set", "discovery.global", &disco.url]);
        d.ok(&["config", "set", "relays", &relay.uri]);
        d.ok(&["config", "set", "stun", &stun]);
        d.ok(&["device", "add", other, "--name", "peer"]);
        d.share_folder("f", root, other);
    }
    fill(&ra, 39, 16 << 20, 3);
    Wan::block_udp(&nat_a, true);
    let started = Instant::now();
    let (mut da, mut db) = (a.start(), b.start());
    let mut connected = Duration::ZERO;
    for d in [&mut da, &mut db] {
        let s = d.wait_until(
            "connected through the relay",
            Duration::from_secs(30),
            |s| peer(s)["transport"] == "relay",
        );
        connected = connected.max(started.elapsed());
        assert_eq!(peer(&s)["relay"], relay.uri.as_str(), "{s:#}");
    }
    eprintln!("relayed session up on both sides {connected:?} after start");
    // STUN, asked from B's QUIC socket, saw B's NAT's address and kept
    // port (MASQUERADE keeps it); A's is blocked for now.
    let stun_seen = |d: &Daemon, nat: &ferrosync_tests::netns::Host| {
        let port = d
            .listen_url("quic")
            .rsplit(':')
            .next()
            .unwrap_or("")
            .to_string();
        let want = format!("{}:{port}", nat.ip);
        d.status()
            .is_some_and(|s| s["stun"]["external"] == want.as_str())
    };
    assert!(
        stun_seen(&db, &nat_b),
        "B's STUN: {:#}",
        db.status().map(|s| s["stun"].clone()).unwrap_or_default()
    );
    wait_equal(
        &[&ra, &rb],
        &[&da, &db],
        Duration::from_secs(120),
        "behind NAT",
    );
    eprintln!(
        "synced 40 files + 16 MiB {:?} after start",
        started.elapsed()
    );
    for d in [&da, &db] {
        let s = d.status().expect("status");
        assert_eq!(
            peer(&s)["transport"],
            "relay",
            "synced through the relay: {s:#}"
        );
    }
    assert!(
        connected <= Duration::from_secs(10),
        "the relayed session took {connected:?} (goal: 10 s)\nA:\n{}\nB:\n{}",
        da.log(),
        db.log()
    );
    Wan::block_udp(&nat_a, false);
    let t = Instant::now();
    let punched = ferrosync_tests::poll(Duration::from_secs(30), || {
        let both: Vec<Value> = [&da, &db].iter().filter_map(|d| d.status()).collect();
        (both.len() == 2 && both.iter().all(|s| peer(s)["transport"] == "quic")).then_some(both)
    });
    let Some(punched) = punched else {
        panic!(
            "no direct QUIC path within 30 s\nA: {}\n{}\nB: {}\n{}",
            da.status()
                .map(|s| peer(&s).to_string())
                .unwrap_or_default(),
            da.log(),
            db.status()
                .map(|s| peer(&s).to_string())
                .unwrap_or_default(),
            db.log()
        );
    };
    for s in &punched {
        assert_eq!(peer(s)["relay"], Value::Null, "{s:#}");
    }
    // A's STUN asks again (5 s, then 10 s) and now gets through.
    let a_stun = ferrosync_tests::poll(Duration::from_secs(30), || {
        stun_seen(&da, &nat_a).then_some(())
    });
    assert!(
        a_stun.is_some(),
        "A's STUN: {:#}",
        da.status().map(|s| s["stun"].clone()).unwrap_or_default()
    );
    eprintln!("moved to direct QUIC {:?} after the sync", t.elapsed());
    // The relayed session is closed once replaced ...
    let (_, total) = ferrosync_tests::poll(Duration::from_secs(10), || {
        sessions().filter(|(active, _)| *active == 0)
    })
    .expect("the relayed session was not closed");
    // ... the direct path carries new changes ...
    std::fs::write(rb.join("after.txt"), "over the punched path").expect("write");
    b.ok(&["folder", "rescan", "f"]);
    wait_equal(&[&ra, &rb], &[&da, &db], Duration::from_secs(30), "punched");
    // ... and while it is up, neither side dials through the relay again
    // (a Syncthing 1.19.2 peer would let a newer relayed connection replace
    // a direct one): watched for longer than the 5 s upgrade interval.
    let redialled = ferrosync_tests::poll(Duration::from_secs(7), || {
        sessions().filter(|(_, t)| *t > total)
    });
    assert!(
        redialled.is_none(),
        "a relayed session after the direct one: {redialled:?}"
    );
    da.stop();
    db.stop();
}

/// Waits until `files` exist under both roots; on failure shows both
/// sides' logs.
fn wait_files(roots: [&Path; 2], files: &[&str], ours: &Daemon, theirs: &str) {
    let both = ferrosync_tests::poll(Duration::from_secs(120), || {
        files
            .iter()
            .all(|f| roots.iter().all(|r| r.join(f).exists()))
            .then_some(())
    });
    if both.is_none() {
        panic!(
            "not synced\nferrosync:\n{}\nSyncthing:\n{theirs}",
            ours.log()
        );
    }
}

/// Adds ferrosync device `a` (ID `a_id`) and Syncthing `st` to each other
/// (at `address` when given, else found by discovery) and shares folder
/// "f" between them, one file written on each side; returns both roots.
fn share_with_syncthing(
    a: &Device,
    a_id: &str,
    st: &ferrosync_tests::syncthing::Syncthing,
    address: Option<&str>,
) -> (PathBuf, PathBuf) {
    let (ra, rs) = (a.scratch().join("data"), st.scratch().join("data"));
    std::fs::create_dir_all(&rs).expect("mkdir");
    std::fs::write(rs.join("from-syncthing.txt"), "Syncthing's").expect("write");
    st.add_device(a_id, "ferro", address.as_slice());
    st.add_folder(
        "f",
        &rs,
        &[a_id],
        ferrosync_tests::syncthing::FolderType::SendReceive,
    );
    let mut add = vec!["device", "add", st.device_id(), "--name", "st"];
    if let Some(address) = address {
        add.extend(["--address", address]);
    }
    a.ok(&add);
    a.share_folder("f", &ra, st.device_id());
    std::fs::write(ra.join("from-ferrosync.txt"), "ferrosync's").expect("write");
    (ra, rs)
}

/// A real Syncthing behind a NAT router, configured with our relay and
/// our discovery server, and a ferrosync device behind another: knowing
/// only each other's IDs, they sync through `ferrosync-relay`.
#[test]
fn syncthing_behind_a_nat_syncs_with_us_through_our_relay() {
    use ferrosync_tests::syncthing::{Listen, Options, Syncthing};
    let Some(binary) = ferrosync_tests::require("syncthing", "syncthing") else {
        return;
    };
    let Some(mut wan) = Wan::new() else { return };
    let (_, hf) = wan.behind_nat("f");
    let (_, hs) = wan.behind_nat("st");
    let (disco, relay) = (&wan.disco, &wan.relay);
    let mut st = Syncthing::start(Options {
        binary,
        listen: Listen::Tcp,
        netns: Some(hs),
        global_discovery: Some(disco.url.replace("/?id=", "/v2/?id=")),
        relay: Some(relay.uri.clone()),
        ..Options::default()
    });
    let (a, a_id) = Device::in_netns("ferro", &hf);
    a.ok(&["config", "set", "discovery.global", &disco.url]);
    a.ok(&["config", "set", "relays", &relay.uri]);
    let (ra, rs) = share_with_syncthing(&a, &a_id, &st, None);
    // Syncthing dials its devices as it starts, and waits minutes after a
    // failed relay dial: start it again once we are there to be found.
    let started = Instant::now();
    let mut da = a.start();
    st.restart();
    let s = da.wait_until("connected to Syncthing", Duration::from_secs(120), |s| {
        peer(s)["connected"] == true
    });
    eprintln!(
        "connected to Syncthing {:?} after start: {:#}",
        started.elapsed(),
        peer(&s)
    );
    assert_eq!(peer(&s)["transport"], "relay", "{s:#}");
    assert_eq!(peer(&s)["relay"], relay.uri.as_str(), "{s:#}");
    wait_files(
        [&ra, &rs],
        &["from-ferrosync.txt", "from-syncthing.txt"],
        &da,
        &st.log_tail(80),
    );
    da.stop();
}

/// On loopback, a ferrosync device that listens nowhere and a real
/// Syncthing both join Syncthing's own `strelaysrv` (no pool), each with
/// the relay's URI as the other's address: they sync through it.
#[test]
fn we_sync_with_syncthing_through_strelaysrv() {
    use ferrosync_tests::syncthing::{Listen, Options, Syncthing};
    let Some(binary) = ferrosync_tests::require("syncthing", "syncthing") else {
        return;
    };
    let Some(program) = ferrosync_tests::require("strelaysrv", "syncthing-relaysrv") else {
        return;
    };
    let relay = RelayProcess::strelaysrv(&program, None);
    let st = Syncthing::start(Options {
        binary,
        listen: Listen::Tcp,
        relay: Some(relay.uri.clone()),
        ..Options::default()
    });
    let (a, a_id) = Device::init("ferro");
    a.isolate();
    a.ok(&["config", "set", "relays", &relay.uri]);
    let (ra, rs) = share_with_syncthing(&a, &a_id, &st, Some(&relay.uri));
    let started = Instant::now();
    let mut da = a.start();
    let s = da.wait_until("connected to Syncthing", Duration::from_secs(60), |s| {
        peer(s)["connected"] == true
    });
    eprintln!(
        "connected through strelaysrv {:?} after start",
        started.elapsed()
    );
    assert_eq!(peer(&s)["transport"], "relay", "{s:#}");
    assert_eq!(peer(&s)["relay"], relay.uri.as_str(), "{s:#}");
    wait_files(
        [&ra, &rs],
        &["from-ferrosync.txt", "from-syncthing.txt"],
        &da,
        &st.log_tail(80),
    );
    let c = st.connections();
    let entry = &c["connections"][a_id.as_str()];
    assert!(
        entry["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("relay")),
        "Syncthing's side: {entry}"
    );
    da.stop();
}
