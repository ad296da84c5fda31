use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferrosync::home::Home;
use ferrosync::net::Net;
use ferrosync_tests::Device;
use proto::message::{ClusterConfig, Compression, Folder, FolderDevice, Hello, Message};
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
