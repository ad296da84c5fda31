//! Sync addresses: the one grammar for where a device listens or can be
//! reached, shared by the config checks, the listeners, the dialler and
//! (later) discovery, so that they never disagree on what an address means.
//!
//! ```text
//! address   = "dynamic" | url
//! url       = scheme "://" authority ["/"] ["?" query]     (query: relay only)
//! scheme    = "tcp" | "tcp4" | "tcp6" | "quic" | "quic4" | "quic6" | "relay"
//! authority = host [":" port] | "[" ipv6 "]" [":" port] | ":" port
//! ```
//!
//! Schemes are case-insensitive (Syncthing writes them in lower case); a
//! trailing `/` is allowed because Syncthing's addresses may carry one. The
//! port may be left out; what that means is the caller's rule
//! ([`SyncAddr::port_or_default`] for dialling, as Syncthing does).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The port a sync address without one means (Syncthing's default).
pub const DEFAULT_PORT: u16 = 22000;

/// The word for "find this device by discovery".
pub const DYNAMIC: &str = "dynamic";

/// Which transport an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TLS over TCP.
    Tcp,
    /// QUIC (TLS inside), one bidirectional stream.
    Quic,
    /// A relay server (relay protocol v1), TLS to the peer inside.
    Relay,
}

impl Transport {
    /// `"tcp"`, `"quic"` or `"relay"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            Transport::Relay => "relay",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which IP family a scheme allows (`tcp4`, `quic6`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Either family.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    /// Whether `ip` belongs to this family.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// A parsed sync URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncAddr {
    /// The transport the scheme names.
    pub transport: Transport,
    /// The family the scheme allows.
    pub family: Family,
    /// The scheme as written, lowercased (kept for the URLs we report).
    pub scheme: String,
    /// Without brackets; empty means "any address" (listening only).
    pub host: String,
    /// The port, if the address has one.
    pub port: Option<u16>,
    /// The query of a relay URL (`id=…&token=…`), without the `?`.
    pub query: Option<String>,
}

impl SyncAddr {
    /// The port, or [`DEFAULT_PORT`] when the address has none.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

impl fmt::Display for SyncAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(q) = &self.query {
            write!(f, "/?{q}")?;
        }
        Ok(())
    }
}

/// A device address as configured: a URL, or `dynamic`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Found by discovery.
    Dynamic,
    /// Dialled as written.
    Url(SyncAddr),
}

/// What is wrong with an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// A scheme that is not a sync transport.
    #[error("{url:?}: scheme {scheme:?} is not one of tcp, tcp4, tcp6, quic, quic4, quic6, relay")]
    UnsupportedScheme {
        /// The address as given.
        url: String,
        /// Its scheme, lowercased.
        scheme: String,
    },
    /// Anything else.
    #[error("{url:?}: {reason}")]
    Malformed {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AddrError {
    fn malformed(url: &str, reason: impl Into<String>) -> Self {
        AddrError::Malformed {
            url: url.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses a device address: `dynamic` or a sync URL.
pub fn parse_address(s: &str) -> Result<Address, AddrError> {
    if s.trim().eq_ignore_ascii_case(DYNAMIC) {
        return Ok(Address::Dynamic);
    }
    parse(s).map(Address::Url)
}

/// Parses a sync URL (see the module doc for the grammar).
pub fn parse(url: &str) -> Result<SyncAddr, AddrError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(AddrError::malformed(url, "expected scheme://host:port"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let (transport, family) = match scheme.as_str() {
        "tcp" => (Transport::Tcp, Family::Any),
        "tcp4" => (Transport::Tcp, Family::V4),
        "tcp6" => (Transport::Tcp, Family::V6),
        "quic" => (Transport::Quic, Family::Any),
        "quic4" => (Transport::Quic, Family::V4),
        "quic6" => (Transport::Quic, Family::V6),
        "relay" => (Transport::Relay, Family::Any),
        _ => {
            return Err(AddrError::UnsupportedScheme {
                url: url.to_string(),
                scheme,
            })
        }
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) if transport == Transport::Relay => (r, Some(q.to_string())),
        Some(_) => {
            return Err(AddrError::malformed(
                url,
                "only a relay address may have a query",
            ))
        }
        None => (rest, None),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '#', '@']) || url.chars().any(char::is_whitespace) {
        return Err(AddrError::malformed(
            url,
            "only host and port may follow the scheme",
        ));
    }
    let (host, port) = split_authority(url, authority)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !family.allows(ip) {
            return Err(AddrError::malformed(
                url,
                format!("{ip} is not an address of the family {scheme} allows"),
            ));
        }
    } else if !host.is_empty() && !is_host_name(host) {
        return Err(AddrError::malformed(
            url,
            format!("{host:?} is neither an IP address nor a host name"),
        ));
    }
    if transport == Transport::Relay && host.is_empty() {
        return Err(AddrError::malformed(url, "a relay address needs a host"));
    }
    Ok(SyncAddr {
        transport,
        family,
        scheme,
        host: host.to_string(),
        port,
        query,
    })
}

/// A DNS name as a dialler can resolve it: dot-separated labels of ASCII
/// letters, digits, '-' (not first or last) and '_' (seen in the wild),
/// none empty (a final dot aside), 253 bytes at most.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `host[:port]`, `[v6][:port]` or `:port`.
fn split_authority<'a>(url: &str, authority: &'a str) -> Result<(&'a str, Option<u16>), AddrError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(AddrError::malformed(url, "unclosed '[' in IPv6 address"));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(AddrError::malformed(
                url,
                format!("{host:?} is not an IPv6 address"),
            ));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(AddrError::malformed(url, "expected ':port' after ']'")),
            },
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(AddrError::malformed(
                    url,
                    "write an IPv6 address in brackets: [addr]:port",
                ))
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| AddrError::malformed(url, format!("{p:?} is not a port number")))
        })
        .transpose()?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_hosts_and_ports() {
        let a = parse("tcp://1.2.3.4").expect("parse");
        assert_eq!(
            (a.transport, a.family, a.host.as_str(), a.port),
            (Transport::Tcp, Family::Any, "1.2.3.4", None)
        );
        assert_eq!(a.port_or_default(), DEFAULT_PORT);
        let a = parse("QUIC6://[::1]:5/").expect("parse");
        assert_eq!(
            (
                a.transport,
                a.family,
                a.host.as_str(),
                a.port,
                a.scheme.as_str()
            ),
            (Transport::Quic, Family::V6, "::1", Some(5), "quic6")
        );
        assert_eq!(a.to_string(), "quic6://[::1]:5");
        let a = parse("tcp://:0").expect("parse");
        assert_eq!((a.host.as_str(), a.port), ("", Some(0)));
        let a = parse("relay://10.0.0.1:22067/?id=ABC&token=x").expect("parse");
        assert_eq!(
            (a.transport, a.port, a.query.as_deref()),
            (Transport::Relay, Some(22067), Some("id=ABC&token=x"))
        );
        assert_eq!(a.to_string(), "relay://10.0.0.1:22067/?id=ABC&token=x");
    }

    #[test]
    fn dynamic_is_an_address() {
        assert_eq!(parse_address("dynamic"), Ok(Address::Dynamic));
        assert!(matches!(
            parse_address("tcp://h:1"),
            Ok(Address::Url(SyncAddr { port: Some(1), .. }))
        ));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let cases = [
            ("http://x:1", "scheme \"http\""),
            ("x:1", "expected scheme://"),
            ("tcp://[::1]x", "expected ':port'"),
            ("tcp://::1:5", "brackets"),
            ("tcp://h:99999", "not a port number"),
            ("tcp4://[::1]:5", "family"),
            ("tcp://h:1/p", "only host and port"),
            ("tcp://h:1?x=1", "only a relay"),
            ("tcp://u@h:1", "only host and port"),
            ("relay://:5", "needs a host"),
        ];
        for (url, want) in cases {
            let e = parse(url).expect_err(url).to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
    }
}
