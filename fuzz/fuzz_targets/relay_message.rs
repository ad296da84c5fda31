//! The relay protocol's XDR messages, through the streaming decoder a
//! relay and its clients both use, fed in uneven pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::relay::{Decoder, Message};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    // Split where the first byte says, so partial frames are exercised.
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoded: Vec<Message> = Vec::new();
    for piece in [&data[..cut], &data[cut..]] {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => decoded.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        if decoded.len() > 10_000 {
            break;
        }
    }
    for m in decoded {
        if let Ok(bytes) = m.encode() {
            let mut d = Decoder::new();
            d.push(&bytes);
            assert_eq!(d.next_message().expect("re-decode"), Some(m));
        }
    }
});
