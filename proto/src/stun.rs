//! STUN Binding (RFC 5389), sans-IO: just enough for a device to learn the
//! address its NAT maps its QUIC socket to, and for the discovery server
//! to tell it. A packet is STUN when its first two bits are zero and it
//! carries the magic cookie (RFC 7983): QUIC packets always have the
//! second bit set, so both share one UDP socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed cookie in every STUN header.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The header's length.
pub const HEADER_LEN: usize = 20;
/// A transaction ID.
pub type TxId = [u8; 12];

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Why a packet is not the answer we wait for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Not a STUN message at all.
    #[error("not a STUN message")]
    NotStun,
    /// Another kind of message than a Binding success.
    #[error("STUN message type {0:#06x}, not a Binding success")]
    Type(u16),
    /// An answer to another request.
    #[error("an answer to another transaction")]
    Transaction,
    /// No (readable) mapped address in it.
    #[error("no mapped address in the answer")]
    NoAddress,
}

/// Whether `p` looks like a STUN message (header, cookie, length).
pub fn is_stun(p: &[u8]) -> bool {
    p.len() >= HEADER_LEN
        && p[0] & 0xC0 == 0
        && p[4..8] == MAGIC_COOKIE.to_be_bytes()
        && usize::from(u16::from_be_bytes([p[2], p[3]])) == p.len() - HEADER_LEN
        && p.len() % 4 == 0
}

fn header(kind: u16, len: usize, tx: &TxId) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN + len);
    h.extend_from_slice(&kind.to_be_bytes());
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    h.extend_from_slice(tx);
    h
}

/// A Binding request with no attributes.
pub fn binding_request(tx: &TxId) -> Vec<u8> {
    header(BINDING_REQUEST, 0, tx)
}

/// The transaction of a Binding request (what a server answers), or
/// `None` for anything else.
pub fn parse_binding_request(p: &[u8]) -> Option<TxId> {
    if !is_stun(p) || u16::from_be_bytes([p[0], p[1]]) != BINDING_REQUEST {
        return None;
    }
    p[8..20].try_into().ok()
}

/// The Binding success answer telling the requester it was seen at
/// `mapped` (as XOR-MAPPED-ADDRESS).
pub fn binding_response(tx: &TxId, mapped: SocketAddr) -> Vec<u8> {
    let ip = mapped.ip().to_canonical();
    let (family, addr_len) = if ip.is_ipv4() { (1u8, 4) } else { (2u8, 16) };
    let mut out = header(BINDING_SUCCESS, 4 + 4 + addr_len, tx);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&((4 + addr_len) as u16).to_be_bytes());
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&(mapped.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    let key = xor_key(tx);
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    out.extend(bytes.iter().zip(key.iter()).map(|(b, k)| b ^ k));
    out
}

/// The cookie followed by the transaction ID: what addresses are XORed
/// with.
fn xor_key(tx: &TxId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    k[4..].copy_from_slice(tx);
    k
}

/// The mapped address in a Binding success for transaction `tx`
/// (XOR-MAPPED-ADDRESS, or the older MAPPED-ADDRESS). Never panics.
pub fn parse_binding_response(p: &[u8], tx: &TxId) -> Result<SocketAddr, StunError> {
    if !is_stun(p) {
        return Err(StunError::NotStun);
    }
    let kind = u16::from_be_bytes([p[0], p[1]]);
    if kind != BINDING_SUCCESS {
        return Err(StunError::Type(kind));
    }
    if p[8..20] != tx[..] {
        return Err(StunError::Transaction);
    }
    let mut plain = None;
    let mut rest = &p[HEADER_LEN..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let Some(value) = rest.get(4..4 + len) else {
            break;
        };
        match kind {
            XOR_MAPPED_ADDRESS => {
                if let Some(a) = address(value, Some(&xor_key(tx))) {
                    return Ok(a);
                }
            }
            MAPPED_ADDRESS => plain = plain.or_else(|| address(value, None)),
            _ => {}
        }
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    plain.ok_or(StunError::NoAddress)
}

fn address(v: &[u8], key: Option<&[u8; 16]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let raw = v.get(4..)?;
    let unxor = |bytes: &[u8]| -> Vec<u8> {
        match key {
            Some(k) => bytes.iter().zip(k.iter()).map(|(b, k)| b ^ k).collect(),
            None => bytes.to_vec(),
        }
    };
    if key.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match family {
        1 => {
            let b: [u8; 4] = unxor(raw.get(..4)?).try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(b))
        }
        2 => {
            let b: [u8; 16] = unxor(raw.get(..16)?).try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: TxId = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn a_request_is_answered_with_the_address_it_came_from() {
        for seen in ["198.51.100.7:40123", "[2001:db8::9]:22000"] {
            let seen: SocketAddr = seen.parse().expect("addr");
            let req = binding_request(&TX);
            assert!(is_stun(&req));
            let tx = parse_binding_request(&req).expect("a request");
            let resp = binding_response(&tx, seen);
            assert!(is_stun(&resp));
            assert_eq!(parse_binding_response(&resp, &TX), Ok(seen));
            assert_eq!(
                parse_binding_response(&resp, &[0; 12]),
                Err(StunError::Transaction)
            );
            assert_eq!(parse_binding_request(&resp), None);
        }
    }

    /// RFC 5769 §2.2's sample IPv4 response (XOR-MAPPED-ADDRESS
    /// 192.0.2.1:32853), its other attributes skipped.
    #[test]
    fn the_rfc_5769_sample_response_reads() {
        let hex = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220\
                   002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
                   80280004c07d4c96";
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let tx: TxId = bytes[8..20].try_into().expect("tx");
        assert_eq!(
            parse_binding_response(&bytes, &tx),
            Ok("192.0.2.1:32853".parse().expect("addr"))
        );
    }

    #[test]
    fn quic_packets_and_garbage_are_not_stun_and_nothing_panics() {
        // A QUIC long header (0xC0..) and short header (0x40..).
        let mut quic = binding_request(&TX);
        quic[0] = 0xC3;
        assert!(!is_stun(&quic));
        quic[0] = 0x41;
        assert!(!is_stun(&quic));
        let resp = binding_response(&TX, "192.0.2.1:9".parse().expect("addr"));
        for n in 0..resp.len() {
            let _ = parse_binding_response(&resp[..n], &TX);
            let _ = parse_binding_request(&resp[..n]);
            let mut flipped = resp.clone();
            flipped[n] ^= 0xFF;
            let _ = parse_binding_response(&flipped, &TX);
        }
        let mut no_attr = header(BINDING_SUCCESS, 0, &TX);
        assert_eq!(
            parse_binding_response(&no_attr, &TX),
            Err(StunError::NoAddress)
        );
        no_attr[1] = 0x11;
        assert_eq!(
            parse_binding_response(&no_attr, &TX),
            Err(StunError::Type(0x0111))
        );
    }
}
