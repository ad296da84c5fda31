//! A FileInfo protobuf (as the index stores it and peers send it) and the
//! checks that turn it into a domain entry: names, sizes, blocks, versions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::message::FileInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = FileInfo::decode(data) {
        let back = FileInfo::decode(&f.encode()).expect("re-decode");
        assert_eq!(back, f);
    }
});
