//! The BEP Hello: the first bytes any device that reaches our port sends.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(hello)) = frame::decode_hello(&mut buf) {
        // What we decode we must encode back to the same Hello.
        let mut again = BytesMut::from(&frame::encode_hello(&hello)[..]);
        let back = frame::decode_hello(&mut again).expect("re-decode");
        assert_eq!(back, Some(hello));
    }
});
