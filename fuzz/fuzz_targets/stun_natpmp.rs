//! STUN and NAT-PMP datagrams: answers from whatever is on the other end
//! of UDP (a router, a STUN server, or someone spoofing them).
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::{natpmp, stun};

fuzz_target!(|data: &[u8]| {
    let tx = [7u8; 12];
    let _ = stun::is_stun(data);
    let _ = stun::parse_binding_request(data);
    let _ = stun::parse_binding_response(data, &tx);
    let _ = natpmp::parse_external_address(data);
    let _ = natpmp::parse_map(data, natpmp::Protocol::Tcp);
    let _ = natpmp::parse_map(data, natpmp::Protocol::Udp);
});
