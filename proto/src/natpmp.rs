//! NAT-PMP (RFC 6886), sans-IO: the external-address request and the
//! TCP/UDP mapping requests a device sends to its gateway's UDP port 5351,
//! and their answers. The daemon's port mapper owns the socket and the
//! retries; this module turns them into bytes and back, and never panics.

use std::net::Ipv4Addr;

/// The gateway's NAT-PMP port.
pub const PORT: u16 = 5351;

const VERSION: u8 = 0;
const OP_EXTERNAL: u8 = 0;
const OP_MAP_UDP: u8 = 1;
const OP_MAP_TCP: u8 = 2;
const ANSWER: u8 = 128;

/// Which protocol a mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// UDP (QUIC).
    Udp,
    /// TCP.
    Tcp,
}

impl Protocol {
    fn opcode(self) -> u8 {
        match self {
            Self::Udp => OP_MAP_UDP,
            Self::Tcp => OP_MAP_TCP,
        }
    }
}

/// A mapping the gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Our port.
    pub internal_port: u16,
    /// The gateway's port that forwards to it.
    pub external_port: u16,
    /// Seconds the mapping lasts (0: removed).
    pub lifetime: u32,
}

/// Why an answer is not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PmpError {
    /// Too short, another version, or the answer to another request.
    #[error("not a NAT-PMP answer to this request")]
    Unexpected,
    /// The gateway refused (RFC 6886 result codes: 1 unsupported version,
    /// 2 not authorized, 3 network failure, 4 out of resources, 5
    /// unsupported opcode).
    #[error("the gateway refused (NAT-PMP result {0})")]
    Refused(u16),
}

/// Asks for the gateway's external address.
pub fn external_address_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL]
}

/// Asks for `internal_port` to be mapped (to `suggested` outside, if the
/// gateway can) for `lifetime` seconds; lifetime 0 with `suggested` 0
/// removes the mapping.
pub fn map_request(
    protocol: Protocol,
    internal_port: u16,
    suggested: u16,
    lifetime: u32,
) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[0] = VERSION;
    m[1] = protocol.opcode();
    m[4..6].copy_from_slice(&internal_port.to_be_bytes());
    m[6..8].copy_from_slice(&suggested.to_be_bytes());
    m[8..12].copy_from_slice(&lifetime.to_be_bytes());
    m
}

/// The result code of an answer to `opcode`, after the checks.
fn result(p: &[u8], opcode: u8, len: usize) -> Result<(), PmpError> {
    if p.len() < 4 || p[0] != VERSION || p[1] != ANSWER + opcode {
        return Err(PmpError::Unexpected);
    }
    let code = u16::from_be_bytes([p[2], p[3]]);
    if code != 0 {
        return Err(PmpError::Refused(code));
    }
    if p.len() < len {
        return Err(PmpError::Unexpected);
    }
    Ok(())
}

/// The external address in an answer to [`external_address_request`].
pub fn parse_external_address(p: &[u8]) -> Result<Ipv4Addr, PmpError> {
    result(p, OP_EXTERNAL, 12)?;
    Ok(Ipv4Addr::new(p[8], p[9], p[10], p[11]))
}

/// The mapping in an answer to [`map_request`] for `protocol`.
pub fn parse_map(p: &[u8], protocol: Protocol) -> Result<Mapped, PmpError> {
    result(p, protocol.opcode(), 16)?;
    Ok(Mapped {
        internal_port: u16::from_be_bytes([p[8], p[9]]),
        external_port: u16::from_be_bytes([p[10], p[11]]),
        lifetime: u32::from_be_bytes([p[12], p[13], p[14], p[15]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_laid_out_as_rfc_6886_says() {
        assert_eq!(external_address_request(), [0, 0]);
        assert_eq!(
            map_request(Protocol::Tcp, 22000, 22001, 3600),
            [0, 2, 0, 0, 0x55, 0xF0, 0x55, 0xF1, 0, 0, 0x0E, 0x10]
        );
        assert_eq!(map_request(Protocol::Udp, 1, 0, 0)[1], 1);
    }

    #[test]
    fn answers_read_and_refusals_say_why() {
        let ext = [0, 128, 0, 0, 0, 0, 0, 9, 198, 51, 100, 7];
        assert_eq!(
            parse_external_address(&ext),
            Ok(Ipv4Addr::new(198, 51, 100, 7))
        );
        let map = [
            0, 130, 0, 0, 0, 0, 0, 9, 0x55, 0xF0, 0x9C, 0x40, 0, 0, 0x0E, 0x10,
        ];
        assert_eq!(
            parse_map(&map, Protocol::Tcp),
            Ok(Mapped {
                internal_port: 22000,
                external_port: 40000,
                lifetime: 3600
            })
        );
        // The UDP answer is not the TCP one.
        assert_eq!(parse_map(&map, Protocol::Udp), Err(PmpError::Unexpected));
        let refused = [0, 130, 0, 2, 0, 0, 0, 9];
        assert_eq!(
            parse_map(&refused, Protocol::Tcp),
            Err(PmpError::Refused(2))
        );
        for n in 0..map.len() {
            let _ = parse_map(&map[..n], Protocol::Tcp);
            let _ = parse_external_address(&ext[..n.min(ext.len())]);
        }
    }
}
