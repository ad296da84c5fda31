//! Every input the fuzzers found a fault with (`fuzz/regressions/TARGET/`),
//! run through the same checks as its fuzz target, on stable.

use std::path::PathBuf;

use bytes::BytesMut;
use ferrosync_proto as proto;
use proto::message::{Compression, FileInfo};

/// The saved inputs of `target` (none yet is fine).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn file_info_inputs_decode_to_what_they_encode_back_to() {
    let all = inputs("file_info");
    assert!(
        !all.is_empty(),
        "the directory-block-size finding is missing"
    );
    for (path, data) in all {
        if let Ok(f) = FileInfo::decode(&data) {
            let back = FileInfo::decode(&f.encode()).expect("re-decode");
            assert_eq!(back, f, "{}", path.display());
        }
    }
}

#[test]
fn bep_message_inputs_decode_to_what_they_encode_back_to() {
    for (path, data) in inputs("bep_message") {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(msg)) = proto::frame::decode_message(&mut buf) {
            for pref in [Compression::Never, Compression::Always] {
                let mut again = BytesMut::from(&proto::frame::encode_message(&msg, pref)[..]);
                let back = proto::frame::decode_message(&mut again).expect("re-decode");
                assert_eq!(back.as_ref(), Some(&msg), "{}", path.display());
            }
        }
    }
}

/// The announce finding's addresses: hosts that are neither an IP address
/// nor a host name are refused where every address is parsed.
#[test]
fn hosts_that_are_not_names_or_addresses_are_refused() {
    for bad in [
        "quic://*0.0.0.0:22000",
        "tcp://a..b:22000",
        "tcp://ünï.example:22000",
        "relay://-/?id=x",
    ] {
        let e = proto::addr::parse(bad).expect_err(bad);
        assert!(
            e.to_string()
                .contains("neither an IP address nor a host name"),
            "{e}"
        );
    }
    for good in [
        "tcp://sync.example.org:22000",
        "tcp://sync.example.org.:22000",
        "quic://my_host:22000",
        "tcp://192.0.2.1:22000",
        "tcp://:22000",
    ] {
        proto::addr::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}
