//! Writes the fuzz targets' seed corpora (`fuzz/seeds/TARGET/`): the BEP
//! Hello, frames and FileInfos captured from real traffic (a hand-built
//! peer connected to our daemon and, when `syncthing` is installed, to
//! Syncthing, which compresses its metadata with LZ4), and for the other
//! decoders what our own encoders make from typical values.
//!
//! `cargo run -p ferrosync-tests --bin fuzz-seeds [DIR]` (default
//! `fuzz/seeds`); seeds are named by content, so re-running adds only
//! what is new.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrosync_tests::mallory::{save_seed, Mallory, MalloryId, CAPTURE_ENV};
use ferrosync_tests::syncthing::{FolderType, Options, Syncthing};
use ferrosync_tests::Device;

/// Files whose index entries and blocks make varied frames.
fn fill(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    std::fs::write(root.join("small.txt"), "hello\n").expect("write");
    std::fs::write(root.join("sub/empty"), "").expect("write");
    let big: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("sub/deeper/big.bin"), big).expect("write");
    std::fs::write(root.join("ünïcödé name.txt"), "x".repeat(5000)).expect("write");
    let _ = std::os::unix::fs::symlink("small.txt", root.join("link"));
}

/// Reads what the peer sends for a few seconds (the captures are saved
/// by [`Mallory`] as they are decoded).
fn listen(m: &mut Mallory) -> usize {
    let mut n = 0;
    while m.recv(Duration::from_secs(3)).is_ok() {
        n += 1;
    }
    n
}

fn from_our_daemon() {
    let me = MalloryId::new();
    let (a, a_id) = Device::on_loopback("seed-source");
    a.ok(&["device", "add", &me.id(), "--name", "mallory"]);
    let root = a.scratch().join("data");
    fill(&root);
    let root_s = root.to_str().expect("utf-8");
    a.ok(&["folder", "add", "f", root_s, "--share", &me.id()]);
    let mut d = a.start();
    d.wait_scanned("f");
    let mut m = Mallory::connect(&me, &d.listen_url("tcp"), &a_id, &["f"]);
    let n = listen(&mut m);
    // A Response frame too.
    let _ = m.ask(1, "f", "small.txt", 6, None, 0);
    eprintln!("ferrosync: {n} messages captured");
}

fn from_syncthing() {
    if ferrosync_tests::require("syncthing", "syncthing").is_none() {
        return;
    }
    let me = MalloryId::new();
    let st = Syncthing::start(Options::default());
    let root = st.scratch().join("f");
    fill(&root);
    st.add_device(&me.id(), "mallory", &[]);
    st.add_folder("f", &root, &[&me.id()], FolderType::SendReceive);
    st.rescan("f");
    let addr = st.tcp_address().expect("syncthing's tcp address");
    let mut m = Mallory::connect(&me, &addr, st.device_id(), &["f"]);
    let n = listen(&mut m);
    eprintln!("syncthing: {n} messages captured");
}

fn from_encoders(dir: &Path) {
    use proto::relay::Message as R;
    let id = proto::DeviceId::from_bytes([7; 32]);
    let announce = proto::local_discovery::Announce {
        id,
        addresses: vec![
            "tcp://0.0.0.0:22000".into(),
            "quic://192.0.2.1:22000".into(),
        ],
        instance_id: 1234567,
    };
    save_seed(dir, "local_discovery", &announce.encode());
    for m in [
        R::Ping,
        R::Pong,
        R::RelayFull,
        R::JoinRelayRequest {
            token: "secret".into(),
        },
        R::JoinSessionRequest { key: vec![1; 32] },
        R::response(0),
        R::ConnectRequest {
            id: id.as_bytes().to_vec(),
        },
        R::SessionInvitation {
            from: id.as_bytes().to_vec(),
            key: vec![2; 32],
            address: vec![192, 0, 2, 1],
            port: 22067,
            server_socket: true,
        },
    ] {
        save_seed(dir, "relay_message", &m.encode().expect("encode"));
    }
    let tx = [9u8; 12];
    save_seed(dir, "stun_natpmp", &proto::stun::binding_request(&tx));
    save_seed(
        dir,
        "stun_natpmp",
        &proto::stun::binding_response(&tx, "203.0.113.5:40001".parse().expect("addr")),
    );
    save_seed(
        dir,
        "stun_natpmp",
        &proto::natpmp::external_address_request(),
    );
    for body in [
        r#"{"addresses":["tcp://:22000","quic://0.0.0.0:22000","relay://192.0.2.9:22067/?id=x"]}"#,
        r#"{"addresses":[]}"#,
    ] {
        save_seed(dir, "discovery_announce", body.as_bytes());
        save_seed(dir, "discovery_lookup", body.as_bytes());
    }
    for text in [
        "a/b\n*.tmp\n!keep.tmp\n(?d).DS_Store\n/build/\n**/cache\n// comment\n#include other",
        "x\n(?i)photos/*.JPG\n[a-z]?.txt\n{a,b}/c\n#escape=\\\n",
    ] {
        save_seed(dir, "stignore", text.as_bytes());
    }
    let (dev, _) = Device::on_loopback("seed-config");
    let root = dev.scratch().join("f");
    dev.ok(&[
        "folder",
        "add",
        "f",
        root.to_str().expect("utf-8"),
        "--create",
    ]);
    let config = std::fs::read(dev.home().join("config.toml")).expect("config");
    save_seed(dir, "config_toml", &config);
    for a in [
        "tcp://192.0.2.1:22000",
        "quic6://[2001:db8::1]:22000",
        "dynamic",
        "relay://relay.example.org:22067/?id=LYXKCHX-VI3NYZR-ALCJBHF-WMZYSPK-QG6QJA3-MPFYMSO-U56GTUK-NA2MIAW&token=t&networkTimeout=2m0s",
    ] {
        save_seed(dir, "sync_addr", a.as_bytes());
    }
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds"));
    std::fs::create_dir_all(&dir).expect("seed dir");
    // Mallory saves what it decodes while this is set.
    std::env::set_var(CAPTURE_ENV, &dir);
    from_our_daemon();
    from_syncthing();
    from_encoders(&dir);
    for e in std::fs::read_dir(&dir).expect("read").flatten() {
        let n = std::fs::read_dir(e.path()).map_or(0, |d| d.count());
        println!("{:20} {n} seeds", e.file_name().to_string_lossy());
    }
}
