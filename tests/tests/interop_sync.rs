use std::fs;
use std::time::{Duration, Instant};

use ferrosync_tests::syncthing::{FolderType, Listen, Options, Syncthing};
use ferrosync_tests::trees::tree;
use ferrosync_tests::{poll, require, Device};

/// A ferrosync device and a Syncthing device share a folder over one
/// transport; each starts with files of its own and both must end with the
/// union, byte for byte.
fn folder_converges_with_syncthing_over(listen: Listen, scheme: &str) {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        listen,
        ..Options::default()
    });
    let (fs_dev, fs_id) = Device::on_loopback("ferro");
    let root = fs_dev.scratch().join("data");
    fs::create_dir_all(root.join("from-ferrosync")).expect("mkdir");
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    fs::write(root.join("from-ferrosync/big.bin"), &big).expect("write");
    for i in 0..80 {
        fs::write(
            root.join(format!("from-ferrosync/f{i}.txt")),
            format!("ferrosync file {i}"),
        )
        .expect("write");
    }
    let st_addr = match scheme {
        "tcp" => st.tcp_address(),
        _ => st.quic_address(),
    }
    .expect("syncthing address");
    fs_dev.ok(&[
        "device",
        "add",
        st.device_id(),
        "--name",
        "syncthing",
        "--address",
        &st_addr,
    ]);
    fs_dev.ok(&[
        "folder",
        "add",
        "shared",
        root.to_str().expect("utf-8"),
        "--share",
        st.device_id(),
    ]);
    let mut daemon = fs_dev.start();
    daemon.wait_scanned("shared");

    let st_root = st.scratch().join("shared");
    fs::create_dir_all(st_root.join("from-syncthing")).expect("mkdir");
    for i in 0..60 {
        fs::write(
            st_root.join(format!("from-syncthing/s{i}.txt")),
            format!("syncthing file {i}"),
        )
        .expect("write");
    }
    st.add_device(&fs_id, "ferro", &[&daemon.listen_url(scheme)]);
    st.add_folder("shared", &st_root, &[&fs_id], FolderType::SendReceive);

    let converge = |daemon: &ferrosync_tests::daemon::Daemon, what: &str, want: usize| {
        let converged = poll(Duration::from_secs(60), || {
            let (a, b) = (tree(&root), tree(&st_root));
            (a == b && a.len() == want).then_some(())
        });
        if converged.is_none() {
            panic!(
                "{what}: no convergence\nferrosync: {:#?}\nsyncthing: {:#?}\nferrosync log:\n{}\nsyncthing log:\n{}",
                tree(&root),
                tree(&st_root),
                daemon.log(),
                st.log_tail(80)
            );
        }
    };
    converge(&daemon, "union", 143);
    // Syncthing sees us on the expected transport, as ferrosync.
    let conns = st.connections();
    let c = &conns["connections"][fs_id.as_str()];
    assert_eq!(c["connected"], true, "{conns}");
    assert!(
        c["type"].as_str().is_some_and(|t| t.starts_with(scheme)),
        "{c}"
    );
    assert!(
        c["clientVersion"]
            .as_str()
            .is_some_and(|v| v.contains("ferrosync")),
        "{c}"
    );

    // An append on the Syncthing side and a delete on ours both propagate.
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(st_root.join("from-syncthing/s1.txt"))
            .expect("open");
        f.write_all(b" and more").expect("append");
    }
    st.rescan("shared");
    fs::remove_file(root.join("from-ferrosync/f2.txt")).expect("rm");
    fs_dev.ok(&["folder", "rescan", "shared"]);
    converge(&daemon, "append and delete", 142);
    assert_eq!(
        fs::read_to_string(root.join("from-syncthing/s1.txt")).expect("read"),
        "syncthing file 1 and more"
    );

    // Metadata round-trips both ways: empty files and directories, a
    // symlink, an executable.
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root.join("meta/empty-dir")).expect("mkdir");
    fs::write(root.join("meta/empty"), b"").expect("write");
    fs::write(root.join("meta/tool.sh"), b"#!/bin/sh\n").expect("write");
    fs::set_permissions(root.join("meta/tool.sh"), fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("tool.sh", root.join("meta/link")).expect("symlink");
    // Names typed in NFD on either side travel, and land, as NFC.
    fs::write(root.join("meta/cafe\u{301}.txt"), b"nfd on ferrosync").expect("write");
    fs::write(root.join("meta/\u{fc}ber.txt"), b"nfc on ferrosync").expect("write");
    // An old modification time that must survive the trip.
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(root.join("meta/tool.sh"))
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    fs_dev.ok(&["folder", "rescan", "shared"]);
    fs::create_dir_all(st_root.join("st-meta/empty-dir")).expect("mkdir");
    fs::write(st_root.join("st-meta/empty"), b"").expect("write");
    fs::write(st_root.join("st-meta/run"), b"x").expect("write");
    fs::set_permissions(
        st_root.join("st-meta/run"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("run", st_root.join("st-meta/link")).expect("symlink");
    fs::write(
        st_root.join("st-meta/nai\u{308}ve.txt"),
        b"nfd on syncthing",
    )
    .expect("write");
    fs::File::options()
        .write(true)
        .open(st_root.join("st-meta/run"))
        .expect("open")
        .set_modified(old)
        .expect("mtime");
    st.rescan("shared");
    converge(&daemon, "metadata", 155);
    for (side, path) in [
        ("syncthing", st_root.join("meta/tool.sh")),
        ("ferrosync", root.join("st-meta/run")),
    ] {
        let mtime = fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime");
        assert_eq!(
            mtime,
            old,
            "{side} did not keep the modification time of {}",
            path.display()
        );
    }
    for name in [
        "meta/caf\u{e9}.txt",
        "meta/\u{fc}ber.txt",
        "st-meta/na\u{ef}ve.txt",
    ] {
        assert!(
            root.join(name).exists() && st_root.join(name).exists(),
            "{name} not NFC on both sides"
        );
    }
    for (side, path) in [
        ("syncthing", st_root.join("meta/tool.sh")),
        ("ferrosync", root.join("st-meta/run")),
    ] {
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(
            mode,
            0o755,
            "{side} lost the executable bit of {}",
            path.display()
        );
    }

    // A concurrent edit while we are stopped: one conflict copy, the same
    // on both sides, and Syncthing settles instead of re-syncing it.
    daemon.stop();
    fs::write(st_root.join("from-syncthing/s3.txt"), "edited by syncthing").expect("write");
    st.rescan("shared");
    fs::write(
        root.join("from-syncthing/s3.txt"),
        "edited by ferrosync, later",
    )
    .expect("write");
    let daemon = fs_dev.start();
    converge(&daemon, "conflict", 156);
    let t = tree(&root);
    let copies: Vec<_> = t
        .iter()
        .filter(|(n, _)| n.contains(".sync-conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{t:#?}");
    assert!(
        copies[0].0.starts_with("from-syncthing/s3.sync-conflict-")
            && copies[0].0.ends_with(".txt")
    );
    let mut both = [
        fs::read_to_string(root.join("from-syncthing/s3.txt")).expect("read"),
        fs::read_to_string(root.join(&copies[0].0)).expect("read"),
    ];
    both.sort();
    assert_eq!(
        both,
        [
            "edited by ferrosync, later".to_string(),
            "edited by syncthing".to_string()
        ]
    );
    let seq = || st.db_status("shared")["sequence"].as_i64().unwrap_or(-1);
    let settled = seq();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            seq(),
            settled,
            "Syncthing keeps changing its index: a sync loop"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Syncthing has nothing to complain about: no warning names us.
    let short = &fs_id[..7];
    let complaints: Vec<String> = st
        .log_tail(2000)
        .lines()
        .filter(|l| l.contains("WARNING") && l.contains(short))
        .map(str::to_string)
        .collect();
    assert!(
        complaints.is_empty(),
        "Syncthing warned about us: {complaints:#?}"
    );
    daemon.stop();
}

#[test]
fn a_folder_converges_with_syncthing_over_tcp() {
    folder_converges_with_syncthing_over(Listen::Tcp, "tcp");
}

#[test]
fn a_folder_converges_with_syncthing_over_quic() {
    folder_converges_with_syncthing_over(Listen::Quic, "quic");
}

/// A Syncthing device we do not know shows up in `ferrosync pending`.
#[test]
fn an_unknown_syncthing_device_is_pending() {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let (fs_dev, fs_id) = Device::on_loopback("ferro");
    let daemon = fs_dev.start();
    let st = Syncthing::start(Options {
        listen: Listen::Tcp,
        ..Options::default()
    });
    st.add_device(&fs_id, "ferro", &[&daemon.listen_url("tcp")]);
    let pending = || -> serde_json::Value {
        serde_json::from_str(&fs_dev.ok(&["pending", "--json"])).expect("json")
    };
    let d = poll(Duration::from_secs(60), || {
        pending()["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == st.device_id()).cloned())
    })
    .unwrap_or_else(|| {
        panic!(
            "not pending: {}\nlog:\n{}\nsyncthing:\n{}",
            pending(),
            daemon.log(),
            st.log_tail(40)
        )
    });
    assert!(
        d["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{d}"
    );
    daemon.stop();
}

/// With TCP and QUIC both configured on both sides, both connect; one
/// connection wins on each side and it stays put (no replacing loop).
#[test]
fn with_both_transports_one_connection_settles() {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options::default());
    let (fs_dev, fs_id) = Device::on_loopback("ferro");
    let root = fs_dev.scratch().join("data");
    fs::create_dir_all(&root).expect("mkdir");
    fs::write(root.join("hello.txt"), "both transports").expect("write");
    let (tcp, quic) = (
        st.tcp_address().expect("tcp"),
        st.quic_address().expect("quic"),
    );
    fs_dev.ok(&[
        "device",
        "add",
        st.device_id(),
        "--address",
        &tcp,
        "--address",
        &quic,
    ]);
    fs_dev.ok(&[
        "folder",
        "add",
        "shared",
        root.to_str().expect("utf-8"),
        "--share",
        st.device_id(),
    ]);
    let mut daemon = fs_dev.start();
    daemon.wait_scanned("shared");
    let st_root = st.scratch().join("shared");
    st.add_device(
        &fs_id,
        "ferro",
        &[&daemon.listen_url("tcp"), &daemon.listen_url("quic")],
    );
    st.add_folder("shared", &st_root, &[&fs_id], FolderType::SendReceive);
    assert!(
        poll(Duration::from_secs(60), || (tree(&st_root) == tree(&root))
            .then_some(()))
        .is_some(),
        "no sync\n{}\n{}",
        daemon.log(),
        st.log_tail(60)
    );
    // Both ends agree on one connection, and it does not change for a while.
    let address =
        |st: &Syncthing| st.connections()["connections"][fs_id.as_str()]["address"].clone();
    let first = address(&st);
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let s = daemon.status().expect("status");
        assert_eq!(
            s["devices"][0]["connected"],
            true,
            "dropped: {s}\n{}",
            st.log_tail(40)
        );
        assert_eq!(
            address(&st),
            first,
            "Syncthing switched connections\n{}",
            st.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    daemon.stop();
}

/// A ferrosync device Syncthing does not know shows up in its pending
/// devices, under the name we told it.
#[test]
fn an_unknown_ferrosync_device_is_pending_in_syncthing() {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        listen: Listen::Tcp,
        ..Options::default()
    });
    let (fs_dev, fs_id) = Device::on_loopback("ferro-pending");
    fs_dev.ok(&[
        "device",
        "add",
        st.device_id(),
        "--address",
        &st.tcp_address().expect("tcp"),
    ]);
    let daemon = fs_dev.start();
    let v = st.wait_for(
        Instant::now() + Duration::from_secs(60),
        "our device pending",
        |st| {
            let p = st.pending_devices();
            p.get(fs_id.as_str()).is_some().then_some(p)
        },
    );
    assert!(
        v[fs_id.as_str()]["address"]
            .as_str()
            .is_some_and(|a| a.contains("127.0.0.1")),
        "{v}"
    );
    assert_eq!(
        v[fs_id.as_str()]["name"],
        "ferro-pending",
        "our Hello's name: {v}"
    );
    daemon.stop();
}

/// Three devices: a real Syncthing that ignores `x` and `y`, a ferrosync
/// device (`editor`) that has and edits them, and a ferrosync device
/// (`receiver`) that met Syncthing first, so Syncthing's entries sort first
/// in its index. Syncthing announces the ignored files invalid at the
/// editor's versions; the receiver must take them from the editor, whole,
/// and never apply Syncthing's empty entry.
#[test]
fn a_syncthing_device_that_ignores_a_file_is_never_its_source() {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        listen: Listen::Tcp,
        ..Options::default()
    });
    let st_url = st.tcp_address().expect("syncthing address");
    let (rx, rx_id) = Device::on_loopback("receiver");
    let (ed, ed_id) = Device::on_loopback("editor");
    let (r_rx, r_ed) = (rx.scratch().join("data"), ed.scratch().join("data"));
    let st_root = st.scratch().join("f");

    // The receiver and Syncthing first, alone.
    rx.ok(&[
        "device",
        "add",
        st.device_id(),
        "--name",
        "st",
        "--address",
        &st_url,
    ]);
    rx.ok(&[
        "folder",
        "add",
        "f",
        r_rx.to_str().expect("utf-8"),
        "--create",
        "--share",
        st.device_id(),
    ]);
    fs::write(r_rx.join("plain.txt"), "plain").expect("write");
    let mut d_rx = rx.start();
    d_rx.wait_scanned("f");
    fs::create_dir_all(&st_root).expect("mkdir");
    fs::write(st_root.join(".stignore"), "x\ny\n").expect("stignore");
    st.add_device(&rx_id, "receiver", &[&d_rx.listen_url("tcp")]);
    st.add_folder("f", &st_root, &[&rx_id], FolderType::SendReceive);
    let met = poll(Duration::from_secs(60), || {
        fs::read_to_string(st_root.join("plain.txt")).ok()
    });
    assert!(
        met.is_some(),
        "syncthing never synced; log:\n{}",
        st.log_tail(40)
    );

    // The editor joins with x (and later y), shared with both.
    fs::create_dir_all(&r_ed).expect("mkdir");
    fs::write(r_ed.join("x"), "x from the editor, version 1").expect("write");
    ed.ok(&[
        "device",
        "add",
        st.device_id(),
        "--name",
        "st",
        "--address",
        &st_url,
    ]);
    ed.ok(&["device", "add", &rx_id, "--name", "receiver"]);
    ed.ok(&[
        "folder",
        "add",
        "f",
        r_ed.to_str().expect("utf-8"),
        "--share",
        st.device_id(),
        "--share",
        &rx_id,
    ]);
    let mut d_ed = ed.start();
    d_ed.wait_scanned("f");
    st.add_device(&ed_id, "editor", &[&d_ed.listen_url("tcp")]);
    st.add_folder("f", &st_root, &[&rx_id, &ed_id], FolderType::SendReceive);
    // Syncthing has recorded x as ignored, and the receiver has its index
    // up to that, before the receiver hears of the editor.
    let ignored = poll(Duration::from_secs(60), || {
        let (code, body) = st
            .request("GET", "/rest/db/file?folder=f&file=x", None)
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        (v["local"]["invalid"] == true || v["local"]["ignored"] == true).then_some(())
    });
    assert!(
        ignored.is_some(),
        "syncthing never ignored x; log:\n{}",
        st.log_tail(60)
    );
    let st_seq = st.db_status("f")["sequence"].as_i64().expect("sequence");
    d_rx.wait_until(
        "the receiver has Syncthing's index",
        Duration::from_secs(60),
        |s| {
            ferrosync_tests::daemon::folder(s, "f")
                .and_then(|f| f["remote_sequences"][st.device_id()].as_i64())
                .is_some_and(|n| n >= st_seq)
        },
    );
    assert!(
        !st_root.join("x").exists(),
        "syncthing pulled an ignored file"
    );
    rx.ok(&[
        "device",
        "add",
        &ed_id,
        "--name",
        "editor",
        "--address",
        &d_ed.listen_url("tcp"),
    ]);
    rx.ok(&["folder", "share", "f", &ed_id]);

    let same = |name: &str, want: &str| {
        poll(Duration::from_secs(60), || {
            (fs::read_to_string(r_rx.join(name)).ok()? == want).then_some(())
        })
        .is_some()
    };
    let fail = |what: &str| -> ! {
        panic!(
            "{what}\nreceiver log:\n{}\neditor log:\n{}\nsyncthing log:\n{}",
            d_rx.log(),
            d_ed.log(),
            st.log_tail(60)
        )
    };
    if !same("x", "x from the editor, version 1") {
        fail("x never reached the receiver whole");
    }
    // An edit and a new ignored file: again from the editor, whole.
    fs::write(r_ed.join("x"), "x from the editor, version 2, longer").expect("write");
    fs::write(r_ed.join("y"), "y is new").expect("write");
    ed.ok(&["folder", "rescan", "f"]);
    if !same("x", "x from the editor, version 2, longer") || !same("y", "y is new") {
        fail("the edit or the new file never reached the receiver whole");
    }
    // Nothing spread back: the editor still has its content.
    assert_eq!(
        fs::read_to_string(r_ed.join("x")).expect("read"),
        "x from the editor, version 2, longer"
    );
    let s = d_rx.wait_until("receiver settled", Duration::from_secs(30), |s| {
        ferrosync_tests::daemon::folder(s, "f").is_some_and(|f| f["need_files"] == 0)
    });
    drop(s);
    d_rx.stop();
    d_ed.stop();
}

/// A Syncthing device offers a folder we do not have: it shows in
/// `ferrosync pending` with its label and the offering device; once we add
/// it, shared with that device, it syncs and is no longer pending.
#[test]
fn a_folder_offered_by_syncthing_is_pending_until_added() {
    let Some(_) = require("syncthing", "syncthing") else {
        return;
    };
    let st = Syncthing::start(Options {
        listen: Listen::Tcp,
        ..Options::default()
    });
    let (fs_dev, fs_id) = Device::on_loopback("ferro");
    fs_dev.ok(&[
        "device",
        "add",
        st.device_id(),
        "--name",
        "st",
        "--address",
        &st.tcp_address().expect("address"),
    ]);
    let daemon = fs_dev.start();
    st.add_device(&fs_id, "ferro", &[&daemon.listen_url("tcp")]);
    let st_root = st.scratch().join("photos");
    fs::create_dir_all(&st_root).expect("mkdir");
    fs::write(st_root.join("pic.jpg"), "not really a picture").expect("write");
    st.add_folder("photos-1", &st_root, &[&fs_id], FolderType::SendReceive);
    let pending = || -> serde_json::Value {
        serde_json::from_str(&fs_dev.ok(&["pending", "--json"])).expect("json")
    };
    let offered = poll(Duration::from_secs(60), || {
        pending()["folders"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["id"] == "photos-1").cloned())
    })
    .unwrap_or_else(|| {
        panic!(
            "not pending: {}\nlog:\n{}\nsyncthing:\n{}",
            pending(),
            daemon.log(),
            st.log_tail(40)
        )
    });
    assert_eq!(offered["device"], st.device_id(), "{offered}");
    assert_eq!(offered["label"], "photos-1", "{offered}");
    assert!(fs_dev.ok(&["pending"]).contains("photos-1"));

    let root = fs_dev.scratch().join("photos");
    fs_dev.ok(&[
        "folder",
        "add",
        "photos-1",
        root.to_str().expect("utf-8"),
        "--create",
        "--share",
        st.device_id(),
    ]);
    let got = poll(Duration::from_secs(60), || {
        fs::read_to_string(root.join("pic.jpg")).ok()
    });
    assert!(
        got.is_some(),
        "never synced; log:\n{}\nsyncthing:\n{}",
        daemon.log(),
        st.log_tail(40)
    );
    assert_eq!(pending()["folders"], serde_json::json!([]));
    daemon.stop();
}
