use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrosync::home::Home;
use ferrosync::net::Net;
use ferrosync_tests::mallory::{file_entry, Mallory, MalloryId};
use ferrosync_tests::Device;
use proto::message::{ClusterConfig, Compression, Folder, FolderDevice, Hello, Message};
use proto::message::{FileInfo, FileKind};
use proto::{frame, wire, DeviceId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hand-built peer: a configured device that sends an index naming a
/// file outside the folder. The daemon must drop the connection with a
/// logged reason and write nothing outside the folder root.
#[test]
fn a_peer_sending_escaping_names_is_disconnected_and_nothing_is_written() {
    for bad in ["../escape", "/tmp/absolute-escape", "a//b"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (ident, _) =
            ferrosync::identity::load_or_create(&Home::new(tmp.path().join("m"))).expect("id");
        let (a, a_id) = Device::on_loopback("victim");
        let m_id = ident.device_id.to_string();
        a.ok(&["device", "add", &m_id, "--name", "mallory"]);
        let root = a.scratch().join("data");
        a.ok(&[
            "folder",
            "add",
            "f",
            root.to_str().expect("utf-8"),
            "--create",
            "--share",
            &m_id,
        ]);
        let daemon = a.start();
        let url = daemon.listen_url("tcp");
        let a_dev: DeviceId = a_id.parse().expect("id");

        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let closed = rt.block_on(async {
            let (net, _rx) = Net::start(&ident, &[]).await.expect("net");
            let mut c = net.dial(&url, a_dev).await.expect("dial");
            let hello = Hello {
                device_name: "mallory".into(),
                client_name: "evil".into(),
                ..Hello::default()
            };
            c.writer
                .write_all(&frame::encode_hello(&hello))
                .await
                .expect("hello");
            let mut me = FolderDevice::new(ident.device_id);
            me.index_id = 1;
            me.max_sequence = 1;
            let cc = ClusterConfig {
                folders: vec![Folder {
                    id: "f".into(),
                    devices: vec![me, FolderDevice::new(a_dev)],
                    ..Folder::default()
                }],
                secondary: false,
            };
            let mut out = frame::encode_message(&Message::ClusterConfig(cc), Compression::Never);
            // The domain types cannot even hold such a name: build the wire form.
            let idx = wire::Index {
                folder: "f".into(),
                files: vec![wire::FileInfo {
                    name: bad.into(),
                    size: 5,
                    sequence: 1,
                    blocks: vec![wire::BlockInfo {
                        offset: 0,
                        size: 5,
                        hash: vec![1; 32],
                        weak_hash: 0,
                    }],
                    version: Some(wire::Vector {
                        counters: vec![wire::Counter { id: 1, value: 1 }],
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let body = prost::Message::encode_to_vec(&idx);
            out.extend_from_slice(&[0, 2, 0x08, 0x01]);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
            c.writer.write_all(&out).await.expect("send");
            c.writer.flush().await.expect("flush");
            // Read until the daemon hangs up (its Hello and CC come first).
            let mut buf = BytesMut::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, c.reader.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue,
                    Err(_) => return false,
                }
            }
        });
        assert!(
            closed,
            "{bad:?}: the daemon kept the connection open; log:\n{}",
            daemon.log()
        );
        let logged = |l: &str| l.contains("protocol error") && l.contains("invalid FileInfo");
        assert!(
            ferrosync_tests::poll(Duration::from_secs(10), || logged(&daemon.log())
                .then_some(()))
            .is_some(),
            "{bad:?}: no reason logged:\n{}",
            daemon.log()
        );
        assert!(
            !a.scratch().join("escape").exists()
                && !std::path::Path::new("/tmp/absolute-escape").exists()
        );
        assert!(!root.join("a").exists());
        daemon.stop();
    }
}

/// A configured device that is not shared a folder gets no index for it,
/// and its requests for the folder's files are refused with GENERIC.
#[test]
fn a_device_not_sharing_a_folder_gets_nothing_from_it() {
    use proto::message::{ErrorCode, Request};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ident, _) =
        ferrosync::identity::load_or_create(&Home::new(tmp.path().join("m"))).expect("id");
    let (a, a_id) = Device::on_loopback("owner");
    a.ok(&[
        "device",
        "add",
        &ident.device_id.to_string(),
        "--name",
        "outsider",
    ]);
    let root = a.scratch().join("data");
    a.ok(&[
        "folder",
        "add",
        "private",
        root.to_str().expect("utf-8"),
        "--create",
    ]);
    std::fs::write(root.join("secret.txt"), "not for you").expect("write");
    let mut daemon = a.start();
    daemon.wait_scanned("private");
    let url = daemon.listen_url("tcp");
    let a_dev: DeviceId = a_id.parse().expect("id");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (their_cc, answer, got_index) = rt.block_on(async {
        let (net, _rx) = Net::start(&ident, &[]).await.expect("net");
        let mut c = net.dial(&url, a_dev).await.expect("dial");
        c.writer
            .write_all(&frame::encode_hello(&Hello::default()))
            .await
            .expect("hello");
        // Claim the folder anyway, and ask for its file.
        let cc = ClusterConfig {
            folders: vec![Folder {
                id: "private".into(),
                devices: vec![FolderDevice::new(ident.device_id), FolderDevice::new(a_dev)],
                ..Folder::default()
            }],
            secondary: false,
        };
        let mut out = frame::encode_message(&Message::ClusterConfig(cc), Compression::Never);
        let req = Request {
            id: 7,
            folder: "private".into(),
            name: proto::Name::parse("secret.txt").expect("name"),
            offset: 0,
            size: 11,
            hash: None,
            from_temporary: false,
            weak_hash: 0,
            block_no: 0,
        };
        frame::encode_message_into(&Message::Request(req), Compression::Never, &mut out);
        c.writer.write_all(&out).await.expect("send");
        c.writer.flush().await.expect("flush");
        let mut buf = BytesMut::new();
        let (mut cc, mut answer, mut got_index) = (None, None, false);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut hello_done = false;
        while answer.is_none() || cc.is_none() {
            if !hello_done {
                hello_done = frame::decode_hello(&mut buf).expect("hello").is_some();
            }
            while let Some(m) = hello_done
                .then(|| frame::decode_message(&mut buf).expect("frame"))
                .flatten()
            {
                match m {
                    Message::ClusterConfig(x) => cc = Some(x),
                    Message::Response(r) => answer = Some(r),
                    Message::Index(_) | Message::IndexUpdate(_) => got_index = true,
                    _ => {}
                }
            }
            if answer.is_some() && cc.is_some() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, c.reader.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
        (cc, answer, got_index)
    });
    let cc = their_cc.expect("a ClusterConfig");
    assert!(cc.folders.is_empty(), "the folder is not offered: {cc:?}");
    let answer = answer.unwrap_or_else(|| panic!("no answer; log:\n{}", daemon.log()));
    assert_eq!((answer.id, answer.code), (7, ErrorCode::Generic));
    assert!(answer.data.is_empty());
    assert!(!got_index, "an index was sent for a folder not shared");
    daemon.stop();
}

/// A victim daemon sharing folder `f` with the hand-built peer `m`; returns
/// the device, its ID and the folder root.
pub(crate) fn victim(m: &MalloryId) -> (Device, String, std::path::PathBuf) {
    let (a, a_id) = Device::on_loopback("victim");
    a.ok(&["device", "add", &m.id(), "--name", "mallory"]);
    let root = a.scratch().join("data");
    a.ok(&[
        "folder",
        "add",
        "f",
        root.to_str().expect("utf-8"),
        "--create",
        "--share",
        &m.id(),
    ]);
    (a, a_id, root)
}

fn scans(d: &ferrosync_tests::daemon::Daemon<'_>) -> u64 {
    d.status()
        .and_then(|s| ferrosync_tests::daemon::folder(&s, "f")?["scans_completed"].as_u64())
        .unwrap_or(0)
}

/// A peer announces a symlink at the temp name of a file it then offers,
/// pointing outside the folder, and entries for our marker and ignore
/// file. The internal names are dropped on receipt, the file itself
/// arrives, nothing outside the folder changes, and no pull/rescan loop
/// starts.
#[test]
fn planted_internal_names_are_dropped_and_nothing_outside_is_written() {
    use std::os::unix::ffi::OsStrExt;
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let outside = a.scratch().join("outside.txt");
    std::fs::write(&outside, "precious").expect("write");
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let mut p = Mallory::connect(&m, &daemon.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    let mut link = FileInfo::new(
        proto::Name::parse(".syncthing.evil.tmp").expect("name"),
        FileKind::Symlink,
    );
    link.symlink_target = outside.as_os_str().as_bytes().to_vec();
    link.no_permissions = true;
    link.version = proto::Vector::new().updated(short, 0);
    link.sequence = 1;
    let files = vec![
        link,
        file_entry(".stfolder", b"x", short, 1, 2),
        file_entry(".stignore", b"*\n", short, 1, 3),
        file_entry(".stversions/v", b"v", short, 1, 4),
        file_entry("evil", b"pwned", short, 1, 5),
    ];
    p.send_index("f", files, true);
    let evil = root.join("evil");
    let (ok, asked) = p.serve_until(
        Duration::from_secs(30),
        |r| (r.name.as_str() == "evil").then(|| bytes::Bytes::from_static(b"pwned")),
        || std::fs::read(&evil).ok().as_deref() == Some(b"pwned".as_slice()),
    );
    assert!(
        ok,
        "the ordinary file never arrived; log:\n{}",
        daemon.log()
    );
    assert!(
        asked.iter().all(|r| r.name.as_str() == "evil"),
        "asked for internal names: {asked:?}"
    );
    assert_eq!(std::fs::read(&outside).expect("read"), b"precious");
    assert!(std::fs::symlink_metadata(root.join(".syncthing.evil.tmp")).is_err());
    assert!(root.join(".stfolder").is_dir(), "the marker was replaced");
    assert!(!root.join(".stignore").exists());
    assert!(!root.join(".stversions").exists());
    // No loop: the scan count stays where it is.
    let before = scans(&daemon);
    let moved = ferrosync_tests::poll(Duration::from_secs(2), || {
        (scans(&daemon) > before + 1).then_some(())
    });
    assert!(
        moved.is_none(),
        "rescans keep coming; log:\n{}",
        daemon.log()
    );
    daemon.stop();
}

/// BEP's block rule: every block but the last has the file's block size.
/// A list with a short block first (whose direct write would have been
/// padded over the next block) is refused at the edge: the connection is
/// closed with a reason, and no file or temp file is made.
#[test]
fn a_block_list_with_a_short_block_before_the_last_is_refused() {
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let mut p = Mallory::connect(&m, &daemon.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    let mut f = file_entry("f.bin", &[7; 5000], short, 1, 1);
    f.blocks.push(proto::message::BlockInfo {
        offset: 5000,
        size: 128 << 10,
        hash: [9; 32],
        weak_hash: 0,
    });
    f.size = 5000 + (128 << 10);
    p.send_index("f", vec![f], true);
    assert!(
        p.closed_within(Duration::from_secs(20)),
        "connection kept; log:\n{}",
        daemon.log()
    );
    let logged = ferrosync_tests::poll(Duration::from_secs(10), || {
        let l = daemon.log();
        (l.contains("protocol error") && l.contains("block 0 of 2 has size 5000")).then_some(())
    });
    assert!(logged.is_some(), "no reason logged:\n{}", daemon.log());
    let names: Vec<_> = std::fs::read_dir(&root)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(".stfolder")]);
    daemon.stop();
}

/// A name longer than the file system takes fails cleanly: an error for
/// that file, no temp file left behind, and the rest of the folder syncs.
#[test]
fn a_name_too_long_for_the_file_system_fails_cleanly() {
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let mut daemon = a.start();
    daemon.wait_scanned("f");
    let mut p = Mallory::connect(&m, &daemon.listen_url("tcp"), &a_id, &["f"]);
    let short = m.identity.device_id.short();
    let long = "n".repeat(300);
    p.send_index(
        "f",
        vec![
            file_entry(&long, b"long", short, 1, 1),
            file_entry("ok.txt", b"ok", short, 1, 2),
        ],
        true,
    );
    let ok = root.join("ok.txt");
    let (done, _) = p.serve_until(
        Duration::from_secs(30),
        |r| {
            Some(bytes::Bytes::from(if r.name.as_str() == "ok.txt" {
                &b"ok"[..]
            } else {
                &b"long"[..]
            }))
        },
        || ok.exists() && daemon.log().contains("name longer than 255 bytes"),
    );
    assert!(done, "log:\n{}", daemon.log());
    let names: Vec<String> = std::fs::read_dir(&root)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".syncthing.")),
        "temp file left: {names:?}"
    );
    // The status says which file is not synced, and why.
    let s = daemon.wait_until("the error in status", Duration::from_secs(10), |s| {
        ferrosync_tests::daemon::folder(s, "f").is_some_and(|f| {
            f["pull_errors"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["name"] == long.as_str() && e["kind"] == "disk")
            })
        })
    });
    let f = ferrosync_tests::daemon::folder(&s, "f").expect("f");
    assert!(f["pull_errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("longer than 255")));
    daemon.stop();
}

/// The block server checks what it read against the request: by its weak
/// hash when one is given (SHA-256 only when that differs), so a file
/// changed since it was indexed is refused either way.
#[test]
fn served_blocks_are_checked_by_weak_hash_then_sha256() {
    use sha2::Digest;
    let m = MalloryId::new();
    let (a, a_id, root) = victim(&m);
    let content = b"the block as indexed".to_vec();
    std::fs::write(root.join("b.bin"), &content).expect("write");
    let mut d = a.start();
    d.wait_scanned("f");
    let mut p = Mallory::connect(&m, &d.listen_url("tcp"), &a_id, &["f"]);
    let sha: [u8; 32] = sha2::Sha256::digest(&content).into();
    let weak = {
        // Adler-32, as the scanner computes it.
        let (mut x, mut y) = (1u32, 0u32);
        for &c in &content {
            x = (x + u32::from(c)) % 65521;
            y = (y + x) % 65521;
        }
        (y << 16) | x
    };
    let size = content.len() as u32;
    let mut ask = |id: i32, weak_hash: u32| {
        p.ask(id, "f", "b.bin", size, Some(sha), weak_hash)
            .unwrap_or_else(|| panic!("no answer; log:\n{}", d.log()))
    };
    for (id, w) in [(1, weak), (2, weak ^ 1), (3, 0)] {
        let r = ask(id, w);
        assert_eq!(r.code, proto::message::ErrorCode::NoError, "weak {w:#x}");
        assert_eq!(&r.data[..], &content[..]);
    }
    // Same size, other bytes: neither hash matches.
    std::fs::write(root.join("b.bin"), b"the block as CHANGED").expect("write");
    for (id, w) in [(4, weak), (5, 0)] {
        let r = ask(id, w);
        assert_eq!(r.code, proto::message::ErrorCode::NoSuchFile, "weak {w:#x}");
    }
    d.stop();
}
