//! Sync addresses (`tcp://`, `quic://`, `relay://…?id=&token=`): from the
//! config, the CLI, discovery answers and peers' announcements.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = proto::addr::parse_address(s);
    if let Ok(a) = proto::addr::parse(s) {
        let _ = a.port_or_default();
    }
    let _ = ferrosync::net::relay::RelayUri::parse(s);
});
