//! Daemons that know each other by device ID alone, in network namespaces:
//! they find each other through a `ferrosync-discovery` server (and, for
//! later issues, on the LAN) and sync.

use std::time::{Duration, Instant};

use ferrosync_tests::netns::Lab;
use ferrosync_tests::servers::DiscoveryProcess;
use ferrosync_tests::trees::wait_equal;
use ferrosync_tests::Device;

/// Two devices on different subnets (a router between them), LAN
/// discovery off, each given only the other's ID and a discovery server
/// on a third subnet: both announce, one finds the other, they connect
/// and the folder syncs.
#[test]
fn devices_known_by_id_alone_meet_through_the_discovery_server() {
    let Some(mut lab) = Lab::new() else { return };
    let (mut sa, mut sb, mut sc) = (lab.segment(), lab.segment(), lab.segment());
    lab.router(&[&sa, &sb, &sc]);
    let (ha, hb, hs) = (
        lab.host(&mut sa, "a"),
        lab.host(&mut sb, "b"),
        lab.host(&mut sc, "disco"),
    );
    let data = tempfile::tempdir().expect("tempdir");
    let server = DiscoveryProcess::start(data.path(), &format!("{}:0", hs.ip), Some(&hs), &[]);

    let (a, a_id) = Device::in_netns("alpha", &ha);
    let (b, b_id) = Device::in_netns("bravo", &hb);
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    for (d, root, peer) in [(&a, &ra, &b_id), (&b, &rb, &a_id)] {
        d.ok(&["config", "set", "discovery.global", &server.url]);
        let out = d.ok(&["device", "add", peer, "--name", "peer"]);
        assert!(
            out.contains("discovery"),
            "device add by ID alone says how it is found: {out}"
        );
        d.ok(&[
            "folder",
            "add",
            "f",
            root.to_str().expect("utf-8"),
            "--create",
            "--share",
            peer,
        ]);
    }
    std::fs::write(ra.join("hello.txt"), "found by ID alone").expect("write");

    let started = Instant::now();
    let (da, db) = (a.start(), b.start());
    wait_equal(&[&ra, &rb], &[&da, &db], Duration::from_secs(60), "by ID");
    eprintln!(
        "connected and synced {:?} after both daemons started",
        started.elapsed()
    );
    for d in [&da, &db] {
        let s = d.status().expect("status");
        let dev = &s["devices"][0];
        assert_eq!(dev["connected"], true, "{s:#}");
    }
    da.stop();
    db.stop();
    server.stop();
}
