//! Daemons that know each other by device ID alone, in network namespaces:
//! they find each other through a `ferrosync-discovery` server (and, for
//! later issues, on the LAN) and sync.

use std::time::{Duration, Instant};

use ferrosync_tests::daemon::Daemon;
use ferrosync_tests::netns::{Host, Lab};
use ferrosync_tests::servers::DiscoveryProcess;
use ferrosync_tests::trees::wait_equal;
use ferrosync_tests::Device;

/// Two devices in lab hosts, each told only the other's ID, with
/// `key = value` set on both, sharing folder "f".
struct Pair {
    a: Device,
    b: Device,
    ra: std::path::PathBuf,
    rb: std::path::PathBuf,
}

impl Pair {
    /// `says` is what `device add` must print about how the peer will
    /// be found.
    fn new(ha: &Host, hb: &Host, key: &str, value: &str, says: &str) -> Self {
        let (a, a_id) = Device::in_netns("alpha", ha);
        let (b, b_id) = Device::in_netns("bravo", hb);
        let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
        for (d, root, peer) in [(&a, &ra, &b_id), (&b, &rb, &a_id)] {
            d.ok(&["config", "set", key, value]);
            let out = d.ok(&["device", "add", peer, "--name", "peer"]);
            assert!(out.contains(says), "device add: {out}");
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
        Self { a, b, ra, rb }
    }

    /// Writes a file on A, starts both daemons and waits until B has it.
    fn sync(&self, what: &str) -> (Daemon<'_>, Daemon<'_>) {
        std::fs::write(self.ra.join("hello.txt"), what).expect("write");
        let started = Instant::now();
        let (da, db) = (self.a.start(), self.b.start());
        wait_equal(
            &[&self.ra, &self.rb],
            &[&da, &db],
            Duration::from_secs(60),
            what,
        );
        eprintln!(
            "{what}: connected and synced {:?} after both daemons started",
            started.elapsed()
        );
        (da, db)
    }
}

/// Two devices on different subnets (a router between them), LAN
/// discovery off, each given only the other's ID and a discovery server
/// on a third subnet: both announce, one finds the other, they connect
/// and the folder syncs.
#[test]
fn devices_known_by_id_alone_meet_through_the_discovery_server() {
    let Some(mut lab) = Lab::new() else { return };
    let [ha, hb, hs] = lab.three_subnets(["a", "b", "disco"]);
    let data = tempfile::tempdir().expect("tempdir");
    let server = DiscoveryProcess::start(data.path(), &format!("{}:0", hs.ip), Some(&hs), &[]);

    let p = Pair::new(&ha, &hb, "discovery.global", &server.url, "discovery");
    let (da, db) = p.sync("found by ID alone");
    // Status says where the address in use came from, and that the
    // server works.
    let mut sources = Vec::new();
    for d in [&da, &db] {
        let s = d.status().expect("status");
        let dev = &s["devices"][0];
        assert_eq!(dev["connected"], true, "{s:#}");
        sources.push(dev["source"].as_str().unwrap_or_default().to_string());
        let disco = s["discovery"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["source"] == "global"))
            .expect("a global source");
        assert_eq!(disco["server"], server.url.as_str(), "{s:#}");
        assert_eq!(disco["ok"], true, "{s:#}");
    }
    sources.sort();
    assert!(
        sources == ["global", "incoming"] || sources == ["global", "global"],
        "{sources:?}"
    );
    da.stop();
    db.stop();
    server.stop();
}

/// Waits until `server` (any v3 server) answers a lookup of `id` with an
/// address.
fn wait_announced(rt: &tokio::runtime::Runtime, server: std::net::SocketAddr, id: &str, who: &str) {
    let id: proto::DeviceId = id.parse().expect("device ID");
    let found = ferrosync_tests::poll(Duration::from_secs(60), || {
        let r = rt
            .block_on(ferrosync_discovery::testing::lookup(server, &id))
            .ok()?;
        (r.status == 200).then_some(())
    });
    assert!(found.is_some(), "{who} never announced to {server}");
}

fn url_addr(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("https://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not a server URL: {url}"))
}

/// Which side must do the finding.
#[derive(Clone, Copy, PartialEq)]
enum Finder {
    Ferrosync,
    Syncthing,
}

/// A ferrosync device and a real Syncthing on different subnets, each
/// knowing only the other's ID and the server at `url`; the side that is
/// not `finder` only announces (`nolookup`), so `finder` must look the
/// other up and dial. Both files end on both sides.
fn meet_syncthing(
    hosts: (ferrosync_tests::netns::Host, ferrosync_tests::netns::Host),
    url: &str,
    finder: Finder,
) {
    use ferrosync_tests::syncthing::{FolderType, Listen, Options, Syncthing};
    let Some(binary) = ferrosync_tests::require("syncthing", "syncthing") else {
        return;
    };
    let (ha, hb) = hosts;
    let only_announce = |u: &str| format!("{u}&nolookup");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (a, a_id) = Device::in_netns("ferro", &ha);
    let ra = a.scratch().join("data");
    a.ok(&[
        "config",
        "set",
        "discovery.global",
        &if finder == Finder::Ferrosync {
            url.to_string()
        } else {
            only_announce(url)
        },
    ]);
    std::fs::create_dir_all(&ra).expect("mkdir");
    std::fs::write(ra.join("from-ferrosync.txt"), "ferrosync's").expect("write");
    let st_url = if finder == Finder::Syncthing {
        url.to_string()
    } else {
        only_announce(url)
    };
    let start_st = || {
        Syncthing::start(Options {
            binary: binary.clone(),
            listen: Listen::Tcp,
            netns: Some(hb.clone()),
            global_discovery: Some(st_url.clone()),
            ..Options::default()
        })
    };
    let mut st = start_st();
    let rb = st.scratch().join("data");
    std::fs::create_dir_all(&rb).expect("mkdir");
    std::fs::write(rb.join("from-syncthing.txt"), "Syncthing's").expect("write");
    st.add_device(&a_id, "ferro", &[]);
    st.add_folder("f", &rb, &[&a_id], FolderType::SendReceive);
    a.ok(&["device", "add", st.device_id(), "--name", "st"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--share",
        st.device_id(),
    ]);
    // The side to be found has announced before the finder looks: a
    // "not found" answer would hold the finder off for its Retry-After.
    let da = if finder == Finder::Ferrosync {
        wait_announced(&rt, url_addr(url), st.device_id(), "Syncthing");
        a.start()
    } else {
        let da = a.start();
        wait_announced(&rt, url_addr(url), &a_id, "ferrosync");
        // Syncthing looks configured devices up as it starts.
        st.restart();
        da
    };
    let both = ferrosync_tests::poll(Duration::from_secs(120), || {
        ["from-ferrosync.txt", "from-syncthing.txt"]
            .iter()
            .all(|f| ra.join(f).exists() && rb.join(f).exists())
            .then_some(())
    });
    if both.is_none() {
        panic!(
            "no sync through discovery; ferrosync log:\n{}\nSyncthing log:\n{}",
            da.log(),
            st.log_tail(80)
        );
    }
    let s = da.status().expect("status");
    let want = if finder == Finder::Ferrosync {
        "global"
    } else {
        "incoming"
    };
    assert_eq!(s["devices"][0]["source"], want, "{s:#}");
    da.stop();
}

/// A real Syncthing announces to `ferrosync-discovery`; a ferrosync device
/// finds it there, dials it and syncs.
#[test]
fn a_ferrosync_device_finds_syncthing_through_ferrosync_discovery() {
    let Some(mut lab) = Lab::new() else { return };
    let [ha, hb, hs] = lab.three_subnets(["a", "st", "disco"]);
    let data = tempfile::tempdir().expect("tempdir");
    let server = DiscoveryProcess::start(data.path(), &format!("{}:0", hs.ip), Some(&hs), &[]);
    let url = server.url.replace("/?id=", "/v2/?id=");
    meet_syncthing((ha, hb), &url, Finder::Ferrosync);
    server.stop();
}

/// A ferrosync device announces to Syncthing's own `stdiscosrv`; a real
/// Syncthing finds it there, dials it and syncs.
#[test]
fn syncthing_finds_a_ferrosync_device_through_stdiscosrv() {
    let Some(program) = ferrosync_tests::require("stdiscosrv", "syncthing-discosrv") else {
        return;
    };
    let Some(mut lab) = Lab::new() else { return };
    let [ha, hb, hs] = lab.three_subnets(["a", "st", "disco"]);
    let server = ferrosync_tests::servers::StDiscosrv::start(&program, &hs);
    let url = server.url.clone();
    meet_syncthing((ha, hb), &url, Finder::Syncthing);
}

/// Two devices on one LAN segment, each given only the other's ID, no
/// discovery server: they hear each other's beacons, connect and sync.
#[test]
fn devices_known_by_id_alone_meet_on_the_lan() {
    let Some(mut lab) = Lab::new() else { return };
    let mut seg = lab.segment();
    let (ha, hb) = (lab.host(&mut seg, "a"), lab.host(&mut seg, "b"));
    let p = Pair::new(&ha, &hb, "discovery.local", "true", "on the LAN");
    let (da, db) = p.sync("heard on the LAN");
    let mut sources = Vec::new();
    for d in [&da, &db] {
        let s = d.status().expect("status");
        sources.push(
            s["devices"][0]["source"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        assert_eq!(s["discovery"][0]["source"], "lan", "{s:#}");
        assert_eq!(s["discovery"][0]["ok"], true, "{s:#}");
    }
    assert!(sources.iter().any(|s| s == "lan"), "{sources:?}");
    da.stop();
    db.stop();
}

/// A real Syncthing on the same LAN hears our beacons (it lists our
/// device in `/rest/system/discovery`) and we hear its: with no address
/// configured on either side, they connect and sync.
#[test]
fn syncthing_on_the_lan_hears_us_and_syncs() {
    use ferrosync_tests::syncthing::{FolderType, Listen, Options, Syncthing};
    let Some(binary) = ferrosync_tests::require("syncthing", "syncthing") else {
        return;
    };
    let Some(mut lab) = Lab::new() else { return };
    let mut seg = lab.segment();
    let (ha, hb) = (lab.host(&mut seg, "a"), lab.host(&mut seg, "st"));
    let st = Syncthing::start(Options {
        binary,
        listen: Listen::Tcp,
        netns: Some(hb),
        local_discovery: true,
        ..Options::default()
    });
    let (a, a_id) = Device::in_netns("ferro", &ha);
    let ra = a.scratch().join("data");
    let rb = st.scratch().join("data");
    std::fs::create_dir_all(&rb).expect("mkdir");
    std::fs::write(rb.join("from-syncthing.txt"), "Syncthing's").expect("write");
    st.add_device(&a_id, "ferro", &[]);
    st.add_folder("f", &rb, &[&a_id], FolderType::SendReceive);
    a.ok(&["config", "set", "discovery.local", "true"]);
    a.ok(&["device", "add", st.device_id(), "--name", "st"]);
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--create",
        "--share",
        st.device_id(),
    ]);
    std::fs::write(ra.join("from-ferrosync.txt"), "ferrosync's").expect("write");
    let da = a.start();
    let listed = ferrosync_tests::poll(Duration::from_secs(60), || {
        let (code, body) = st.request("GET", "/rest/system/discovery", None).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v.get(a_id.as_str()).is_some()).then_some(v)
    });
    let Some(listed) = listed else {
        panic!(
            "Syncthing never heard us; its log:\n{}\nours:\n{}",
            st.log_tail(60),
            da.log()
        );
    };
    eprintln!("Syncthing lists us: {}", listed[a_id.as_str()]);
    let both = ferrosync_tests::poll(Duration::from_secs(120), || {
        ["from-ferrosync.txt", "from-syncthing.txt"]
            .iter()
            .all(|f| ra.join(f).exists() && rb.join(f).exists())
            .then_some(())
    });
    if both.is_none() {
        panic!(
            "no sync on the LAN; ours:\n{}\nSyncthing's:\n{}",
            da.log(),
            st.log_tail(80)
        );
    }
    da.stop();
}

/// A device added by ID while the daemon runs is found (here on the LAN)
/// and connected without a restart.
#[test]
fn a_device_added_by_id_while_running_is_found_without_a_restart() {
    let Some(mut lab) = Lab::new() else { return };
    let mut seg = lab.segment();
    let (ha, hb) = (lab.host(&mut seg, "a"), lab.host(&mut seg, "b"));
    let (a, a_id) = Device::in_netns("alpha", &ha);
    let (b, b_id) = Device::in_netns("bravo", &hb);
    let (ra, rb) = (a.scratch().join("data"), b.scratch().join("data"));
    for d in [&a, &b] {
        d.ok(&["config", "set", "discovery.local", "true"]);
    }
    a.ok(&[
        "folder",
        "add",
        "f",
        ra.to_str().expect("utf-8"),
        "--create",
    ]);
    b.ok(&[
        "folder",
        "add",
        "f",
        rb.to_str().expect("utf-8"),
        "--create",
    ]);
    std::fs::write(ra.join("late.txt"), "added while running").expect("write");
    let (da, db) = (a.start(), b.start());
    // Both running, neither knows the other: now each is told.
    for (d, peer) in [(&a, &b_id), (&b, &a_id)] {
        d.ok(&["device", "add", peer, "--name", "peer"]);
        d.ok(&["folder", "share", "f", peer]);
    }
    wait_equal(
        &[&ra, &rb],
        &[&da, &db],
        Duration::from_secs(60),
        "added while running",
    );
    da.stop();
    db.stop();
}

/// Where beacons are filtered (UDP 21027 dropped on both hosts), two
/// ferrosync devices still find each other on the LAN through mDNS.
#[test]
fn devices_meet_through_mdns_when_beacons_are_filtered() {
    let Some(mut lab) = Lab::new() else { return };
    let mut seg = lab.segment();
    let (ha, hb) = (lab.host(&mut seg, "a"), lab.host(&mut seg, "b"));
    for h in [&ha, &hb] {
        let out = h
            .command("iptables")
            .args([
                "-A", "OUTPUT", "-p", "udp", "--dport", "21027", "-j", "DROP",
            ])
            .output()
            .expect("iptables");
        assert!(out.status.success(), "iptables: {out:?}");
    }
    let p = Pair::new(&ha, &hb, "discovery.local", "true", "on the LAN");
    let (da, db) = p.sync("found by mDNS");
    // The beacons were sent, and dropped: it was mDNS.
    for h in [&ha, &hb] {
        let out = h
            .command("iptables")
            .args(["-L", "OUTPUT", "-v", "-n", "-x"])
            .output()
            .expect("iptables");
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        let dropped: u64 = table
            .lines()
            .find(|l| l.contains("dpt:21027"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(dropped > 0, "no beacon was dropped:\n{table}");
    }
    da.stop();
    db.stop();
}
