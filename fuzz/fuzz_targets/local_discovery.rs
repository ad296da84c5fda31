//! A LAN discovery datagram: anyone on the LAN can send one to UDP 21027.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::local_discovery::Announce;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announce::decode(data) {
        let back = Announce::decode(&a.encode()).expect("re-decode");
        assert_eq!(back, a);
    }
});
