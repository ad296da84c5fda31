//! BEP message frames after the Hello (header, optional LZ4, protobuf,
//! then the wire → domain checks): everything a connected peer sends.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::frame;
use proto::message::Compression;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // A stream may hold many frames; an error ends it, as it closes a connection.
    while let Ok(Some(msg)) = frame::decode_message(&mut buf) {
        // A message we accepted survives our own encoding, compressed or not.
        for pref in [Compression::Never, Compression::Always] {
            let mut again = BytesMut::from(&frame::encode_message(&msg, pref)[..]);
            let back = frame::decode_message(&mut again).expect("re-decode");
            assert_eq!(back.as_ref(), Some(&msg));
        }
    }
});
