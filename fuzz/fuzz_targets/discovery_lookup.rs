//! A discovery server's lookup answer, as the daemon reads it, and each
//! address in it as the dialler parses it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(addresses) = ferrosync::discovery::global::lookup_addresses(data) {
        for a in addresses.iter().take(1000) {
            let _ = proto::addr::parse(a);
        }
    }
});
