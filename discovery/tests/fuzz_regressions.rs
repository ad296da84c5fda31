//! Announcement bodies the fuzzer found a fault with
//! (`fuzz/regressions/discovery_announce/`): what the server would store
//! from them must be dialable by others.

use std::path::PathBuf;

#[test]
fn announce_inputs_store_only_dialable_addresses() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/discovery_announce");
    let inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/discovery_announce")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(!inputs.is_empty());
    let remote = "198.51.100.7:40000".parse().expect("addr");
    for path in inputs {
        let body = std::fs::read(&path).expect("read");
        if path.ends_with("unspecified-host-not-an-ip") {
            // `quic://*0.0.0.0:22000` was stored as announced: no one can dial it.
            assert_eq!(
                ferrosync_discovery::http::announced_addresses(&body, remote),
                None
            );
        }
        let Some(stored) = ferrosync_discovery::http::announced_addresses(&body, remote) else {
            continue;
        };
        for a in &stored {
            let parsed = proto::addr::parse(a)
                .unwrap_or_else(|e| panic!("{}: stored {a:?}: {e}", path.display()));
            assert!(!parsed.host.is_empty(), "{a}");
            if let Ok(ip) = parsed.host.parse::<std::net::IpAddr>() {
                assert!(
                    !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast(),
                    "{a}"
                );
            }
        }
    }
}
