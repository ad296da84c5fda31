//! Syncthing's local discovery v4 packet (UDP 21027) and the receiver's
//! address rules, sans-IO: the daemon's LAN discovery owns the sockets and
//! the timers; this module turns datagrams into checked announcements and
//! back.
//!
//! A datagram is the BEP magic (`0x2EA7D90B`, big-endian) followed by an
//! `Announce` protobuf (device ID, addresses, instance ID), nothing else.

use std::net::{IpAddr, SocketAddr};

use prost::Message as _;

use crate::addr::{self, Transport};
use crate::{wire, DeviceId};

/// The first four bytes of every v4 announcement.
pub const MAGIC: u32 = 0x2EA7_D90B;
/// The magic of the v0.13 format, which Syncthing warns about and ignores.
pub const OLD_MAGIC: u32 = 0x7D79_BC40;
/// The UDP port announcements are sent to and heard on.
pub const PORT: u16 = 21027;
/// The IPv6 multicast group announcements go to.
pub const MULTICAST_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff12, 0, 0, 0, 0, 0, 0, 0x8384);
/// The largest datagram worth reading (Syncthing's receive buffer).
pub const MAX_PACKET: usize = 65_536;

/// One device's announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Who announces.
    pub id: DeviceId,
    /// Where it says it can be reached, as written.
    pub addresses: Vec<String>,
    /// Random at each start of the announcer: a change means it restarted.
    pub instance_id: i64,
}

/// Why a datagram is not an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than the four bytes of the magic.
    #[error("{0} bytes: too short for an announcement")]
    TooShort(usize),
    /// Syncthing v0.13's format.
    #[error("an announcement in the old v0.13 format")]
    OldFormat,
    /// Anything else that is not ours.
    #[error("magic {0:#010x} is not a local discovery announcement")]
    WrongMagic(u32),
    /// Larger than any announcement we read.
    #[error("{0} bytes: larger than an announcement may be")]
    TooLong(usize),
    /// The protobuf does not decode.
    #[error("undecodable announcement: {0}")]
    Decode(String),
    /// The device ID is not 32 bytes.
    #[error("announcement with a device ID of {0} bytes")]
    BadId(usize),
}

impl Announce {
    /// The datagram for this announcement.
    pub fn encode(&self) -> Vec<u8> {
        let body = wire::local::Announce {
            id: self.id.as_bytes().to_vec(),
            addresses: self.addresses.clone(),
            instance_id: self.instance_id,
        };
        let mut out = Vec::with_capacity(4 + body.encoded_len());
        out.extend_from_slice(&MAGIC.to_be_bytes());
        // Encoding into a Vec cannot run out of space.
        let _ = body.encode(&mut out);
        out
    }

    /// Parses one datagram.
    pub fn decode(packet: &[u8]) -> Result<Self, PacketError> {
        if packet.len() > MAX_PACKET {
            return Err(PacketError::TooLong(packet.len()));
        }
        let Some((magic, body)) = packet.split_first_chunk::<4>() else {
            return Err(PacketError::TooShort(packet.len()));
        };
        match u32::from_be_bytes(*magic) {
            MAGIC => {}
            OLD_MAGIC => return Err(PacketError::OldFormat),
            other => return Err(PacketError::WrongMagic(other)),
        }
        let w =
            wire::local::Announce::decode(body).map_err(|e| PacketError::Decode(e.to_string()))?;
        let id = DeviceId::try_from(w.id.as_slice()).map_err(|_| PacketError::BadId(w.id.len()))?;
        Ok(Announce {
            id,
            addresses: w.addresses,
            instance_id: w.instance_id,
        })
    }
}

/// The addresses of an announcement heard from `source`, as the receiver
/// should dial them: an empty or unspecified host becomes the packet's
/// source address (the announcer listens everywhere); an address that does
/// not parse, has port 0, or whose scheme's family does not match the
/// source's is dropped. Relay addresses are kept as written.
pub fn fill_in(addresses: &[String], source: SocketAddr) -> Vec<String> {
    addresses
        .iter()
        .filter_map(|a| {
            let mut a = addr::parse(a).ok()?;
            if a.transport == Transport::Relay {
                return Some(a.to_string());
            }
            if a.port == Some(0) {
                return None;
            }
            let unspecified =
                a.host.is_empty() || a.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
            if unspecified {
                a.host = source.ip().to_string();
            }
            if let Ok(ip) = a.host.parse::<IpAddr>() {
                if !a.family.allows(ip) {
                    return None;
                }
            }
            Some(a.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> DeviceId {
        DeviceId::from_bytes([7; 32])
    }

    #[test]
    fn announcements_round_trip() {
        let a = Announce {
            id: id(),
            addresses: vec!["tcp://0.0.0.0:22000".into(), "quic://:22000".into()],
            instance_id: 1234567,
        };
        let packet = a.encode();
        assert_eq!(&packet[..4], &[0x2E, 0xA7, 0xD9, 0x0B]);
        // Field 1 (the raw ID, 32 bytes), field 2 (each address), field 3
        // (the instance ID as a varint): protobuf's layout, no framing.
        assert_eq!(&packet[4..6], &[0x0A, 32]);
        assert_eq!(&packet[38..40], &[0x12, 19]);
        assert_eq!(&packet[packet.len() - 4..], &[0x18, 0x87, 0xAD, 0x4B]);
        assert_eq!(Announce::decode(&packet), Ok(a));
    }

    #[test]
    fn datagrams_that_are_not_announcements_are_refused() {
        let mut old = OLD_MAGIC.to_be_bytes().to_vec();
        old.extend_from_slice(b"whatever");
        let mut short_id = MAGIC.to_be_bytes().to_vec();
        short_id.extend_from_slice(&[0x0A, 2, 1, 2]);
        let mut garbage = MAGIC.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xFF; 9]);
        type Check = fn(&PacketError) -> bool;
        let cases: [(&[u8], Check); 6] = [
            (&[0x2E, 0xA7], |e| matches!(e, PacketError::TooShort(2))),
            (&old, |e| *e == PacketError::OldFormat),
            (b"GET / HTTP/1.1", |e| {
                matches!(e, PacketError::WrongMagic(_))
            }),
            (&short_id, |e| *e == PacketError::BadId(2)),
            (&garbage, |e| matches!(e, PacketError::Decode(_))),
            (&vec![0; MAX_PACKET + 1], |e| {
                matches!(e, PacketError::TooLong(_))
            }),
        ];
        for (packet, want) in cases {
            let e = Announce::decode(packet).expect_err("refused");
            assert!(want(&e), "{e:?}");
        }
    }

    #[test]
    fn addresses_are_filled_in_from_the_source() {
        let v4: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let v6: SocketAddr = "[2001:db8::7]:40000".parse().expect("addr");
        let heard = |list: &[&str], from| {
            fill_in(
                &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                from,
            )
        };
        assert_eq!(
            heard(
                &[
                    "tcp://0.0.0.0:22000",
                    "quic://:22000",
                    "tcp://[::]:22001",
                    "tcp://198.51.100.1:22000",
                    "tcp://:0",
                    "tcp6://:22000",
                    "not a url",
                    "relay://203.0.113.9:22067/?id=X",
                ],
                v4
            ),
            [
                "tcp://192.0.2.7:22000",
                "quic://192.0.2.7:22000",
                "tcp://192.0.2.7:22001",
                "tcp://198.51.100.1:22000",
                "relay://203.0.113.9:22067/?id=X",
            ]
        );
        assert_eq!(
            heard(&["tcp4://:22000", "quic6://:22000"], v6),
            ["quic6://[2001:db8::7]:22000"]
        );
    }
}
