//! The address fix-ups of an announcement (Syncthing's `fixupAddresses`,
//! with the sync-address grammar of `proto::addr`): what a device says it
//! listens on becomes what others can dial.
//!
//! - unparseable addresses, and those without a port, are dropped;
//! - loopback and multicast hosts are dropped (no one else can use them);
//! - an empty or unspecified host (`tcp://:22000`, `tcp://0.0.0.0:22000`)
//!   becomes the address the announcement came from, unless that is
//!   itself unusable or of the wrong family for a `tcp4`/`tcp6` scheme;
//! - port 0 becomes the port the announcement came from, if known;
//! - the result is sorted and each address kept once, at most
//!   [`MAX_ADDRESSES`] of them.

use std::net::{IpAddr, SocketAddr};

use proto::addr::parse;

/// Addresses kept per device: bounds what one announcement can store.
pub const MAX_ADDRESSES: usize = 64;

/// Longest address kept, in bytes.
pub const MAX_ADDRESS_LEN: usize = 512;

/// The addresses to store for an announcement from `remote` (its port is
/// `None` when not known).
pub fn fix_up(addresses: &[String], remote: IpAddr, remote_port: Option<u16>) -> Vec<String> {
    let remote = remote.to_canonical();
    let mut out: Vec<String> = addresses
        .iter()
        .filter(|a| a.len() <= MAX_ADDRESS_LEN)
        .filter_map(|a| one(a, remote, remote_port))
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    out
}

fn one(address: &str, remote: IpAddr, remote_port: Option<u16>) -> Option<String> {
    let mut a = parse(address).ok()?;
    let port = a.port?;
    let ip = if a.host.is_empty() {
        Some(IpAddr::from([0, 0, 0, 0]))
    } else {
        a.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    };
    match ip {
        Some(ip) if ip.is_loopback() || ip.is_multicast() => return None,
        Some(ip) if ip.is_unspecified() => {
            if !usable(remote) || !a.family.allows(remote) {
                return None;
            }
            a.host = remote.to_string();
        }
        // A host name is kept as announced (others resolve it).
        _ => {}
    }
    if port == 0 {
        a.port = Some(remote_port.filter(|&p| p != 0)?);
    }
    Some(a.to_string())
}

/// Whether a source address can stand in for an unspecified host.
fn usable(ip: IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified())
}

/// The remote a request came from, split as [`fix_up`] takes it.
pub fn remote_parts(remote: SocketAddr) -> (IpAddr, Option<u16>) {
    (remote.ip(), Some(remote.port()).filter(|&p| p != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(addrs: &[&str], remote: &str, port: Option<u16>) -> Vec<String> {
        let addrs: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
        fix_up(&addrs, remote.parse().expect("ip"), port)
    }

    #[test]
    fn unspecified_hosts_take_the_source_address() {
        assert_eq!(
            fix(
                &["tcp://0.0.0.0:22000", "quic://:22001", "tcp://[::]:22002"],
                "192.0.2.7",
                Some(4000)
            ),
            [
                "quic://192.0.2.7:22001",
                "tcp://192.0.2.7:22000",
                "tcp://192.0.2.7:22002"
            ]
        );
        // An IPv4 source reached over an IPv6 socket counts as IPv4.
        assert_eq!(
            fix(&["tcp4://0.0.0.0:1"], "::ffff:192.0.2.7", None),
            ["tcp4://192.0.2.7:1"]
        );
    }

    #[test]
    fn unusable_addresses_are_dropped() {
        let kept = fix(
            &[
                "tcp://127.0.0.1:22000",
                "tcp://[::1]:22000",
                "tcp://224.0.0.1:22000",
                "tcp://192.0.2.1",
                "garbage",
                "http://192.0.2.1:80",
                "tcp6://0.0.0.0:22000",
                "tcp://198.51.100.1:22000",
            ],
            "192.0.2.7",
            None,
        );
        assert_eq!(kept, ["tcp://198.51.100.1:22000"]);
        // From loopback, an unspecified host has nothing to become.
        assert!(fix(&["tcp://0.0.0.0:22000"], "127.0.0.1", Some(9)).is_empty());
    }

    #[test]
    fn port_zero_takes_the_source_port_or_goes() {
        assert_eq!(
            fix(&["tcp://0.0.0.0:0"], "192.0.2.7", Some(4000)),
            ["tcp://192.0.2.7:4000"]
        );
        assert!(fix(&["tcp://198.51.100.1:0"], "192.0.2.7", None).is_empty());
    }

    #[test]
    fn relays_and_names_are_kept_sorted_once_and_bounded() {
        let relay = "relay://198.51.100.9:22067/?id=ABC";
        assert_eq!(
            fix(
                &[relay, "tcp://sync.example.org:22000", relay],
                "192.0.2.7",
                None
            ),
            [relay, "tcp://sync.example.org:22000"]
        );
        let many: Vec<String> = (0..200)
            .map(|i| format!("tcp://198.51.100.1:{}", 1000 + i))
            .collect();
        assert_eq!(
            fix_up(&many, "192.0.2.7".parse().expect("ip"), None).len(),
            MAX_ADDRESSES
        );
        let long = format!("tcp://{}.example:1", "a".repeat(MAX_ADDRESS_LEN));
        assert!(fix(&[&long], "192.0.2.7", None).is_empty());
    }
}
