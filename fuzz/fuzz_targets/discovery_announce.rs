//! The body of an announcement to our discovery server (any device on the
//! internet may send one), with the address fix-up that follows: what is
//! stored must be dialable by others.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let remote = "198.51.100.7:40000".parse().expect("addr");
    if let Some(addresses) = ferrosync_discovery::http::announced_addresses(data, remote) {
        assert!(!addresses.is_empty());
        for a in &addresses {
            let parsed = proto::addr::parse(a).unwrap_or_else(|e| panic!("stored {a:?}: {e}"));
            assert!(!parsed.host.is_empty(), "{a}");
            if let Ok(ip) = parsed.host.parse::<std::net::IpAddr>() {
                assert!(!ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast(), "{a}");
            }
        }
    }
});
