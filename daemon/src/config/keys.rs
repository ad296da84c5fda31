//! `config get|set KEY [VALUE]`: the settings addressable by dotted key, each
//! parsed and checked before anything changes.

use std::net::SocketAddr;

use proto::addr::Transport;

use super::{Config, ConfigError};

/// Every key `get` and `set` accept.
pub const KEYS: &[&str] = &[
    "name",
    "listen",
    "relays",
    "nat",
    "stun",
    "max_watches",
    "index_cache_mib",
    "api.address",
    "api.key",
    "api.metrics_without_auth",
    "discovery.local",
    "discovery.global",
    "transport.prefer",
];

/// The transports a device listens on directly.
const LISTEN: &[Transport] = &[Transport::Tcp, Transport::Quic];

impl Config {
    /// The value of `key` as text (lists joined by commas).
    pub fn get(&self, key: &str) -> Result<String, ConfigError> {
        Ok(match key {
            "name" => self.name.clone(),
            "listen" => self.listen.join(","),
            "relays" => self.relays.join(","),
            "nat" => self.nat.to_string(),
            "stun" => self.stun.join(","),
            "max_watches" => self.max_watches.to_string(),
            "index_cache_mib" => self.index_cache_mib.to_string(),
            "api.address" => self.api.address.clone(),
            "api.key" => self.api.key.clone(),
            "api.metrics_without_auth" => self.api.metrics_without_auth.to_string(),
            "discovery.local" => self.discovery.local.to_string(),
            "discovery.global" => self.discovery.global.join(","),
            "transport.prefer" => self.transport.prefer.as_str().to_string(),
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        })
    }

    /// Sets `key` from text; on error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::BadValue {
            key: key.to_string(),
            reason,
        };
        match key {
            "name" => {
                let v = value.trim();
                if v.is_empty() {
                    return Err(bad("the name must not be empty".into()));
                }
                self.name = v.to_string();
            }
            "listen" => {
                self.listen = list(value, |s| check_sync_url(s, LISTEN)).map_err(bad)?;
            }
            "relays" => {
                // A relay, or a relay pool to choose one from.
                self.relays = list(value, |s| {
                    if s.starts_with("dynamic+") {
                        check_url(s, &["dynamic+https", "dynamic+http"])
                    } else {
                        check_sync_url(s, &[Transport::Relay])
                    }
                })
                .map_err(bad)?;
            }
            "nat" => self.nat = parse_bool(value).map_err(bad)?,
            "stun" => self.stun = list(value, check_host_port).map_err(bad)?,
            "max_watches" => {
                self.max_watches = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not a whole number")))?
            }
            "index_cache_mib" => {
                self.index_cache_mib = match value.trim().parse() {
                    Ok(n) if (1..=65_536).contains(&n) => n,
                    _ => {
                        return Err(bad(format!(
                            "{value:?} is not a whole number of MiB from 1 to 65536"
                        )))
                    }
                }
            }
            "api.address" => {
                let addr: SocketAddr = value.trim().parse().map_err(|_| {
                    bad(format!(
                        "{value:?} is not an IP address and port, e.g. 127.0.0.1:8384"
                    ))
                })?;
                self.api.address = addr.to_string();
            }
            "api.key" => {
                let v = value.trim();
                if v.len() < 16 || !v.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(bad("use at least 16 printable ASCII characters".into()));
                }
                self.api.key = v.to_string();
            }
            "api.metrics_without_auth" => {
                self.api.metrics_without_auth = parse_bool(value).map_err(bad)?
            }
            "discovery.local" => self.discovery.local = parse_bool(value).map_err(bad)?,
            "discovery.global" => {
                self.discovery.global =
                    list(value, |s| check_url(s, &["https", "http"])).map_err(bad)?
            }
            "transport.prefer" => {
                self.transport.prefer = match value.trim() {
                    "auto" => super::TransportPrefer::Auto,
                    "tcp" => super::TransportPrefer::Tcp,
                    "quic" => super::TransportPrefer::Quic,
                    v => return Err(bad(format!("{v:?} is not auto, tcp or quic"))),
                }
            }
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }
}

/// `host:port` (a name, an IPv4 address, or `[IPv6]`), as STUN servers
/// are given.
fn check_host_port(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not host:port, e.g. stun.example.org:3478");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains([':', '/', ' ', '[', ']']),
    };
    if !ok {
        return Err(bad());
    }
    port.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(bad)?;
    Ok(())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

/// A comma-separated list, each item passing `check`; empty means none.
fn list(value: &str, check: impl Fn(&str) -> Result<(), String>) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| check(s).map(|()| s.to_string()))
        .collect()
}

/// Checks that `s` is a sync address (`proto::addr`) of one of `allow`,
/// with an explicit port: a configured address says where it is.
pub(super) fn check_sync_url(s: &str, allow: &[Transport]) -> Result<(), String> {
    let a = proto::addr::parse(s).map_err(|e| e.to_string())?;
    if !allow.contains(&a.transport) {
        let names: Vec<_> = allow.iter().map(|t| t.as_str()).collect();
        return Err(format!(
            "{s:?}: a {} address does not belong here (use {})",
            a.transport,
            names.join(" or ")
        ));
    }
    if a.port.is_none() {
        return Err(format!("{s:?} has no port"));
    }
    Ok(())
}

/// Checks that `s` is a URL with one of `schemes` and a host (servers,
/// not sync addresses).
fn check_url(s: &str, schemes: &[&str]) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "{s:?}: scheme {:?} is not one of {}",
            url.scheme(),
            schemes.join(", ")
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_what_was_set() {
        let mut c = Config::new_for("a");
        let cases = [
            ("name", "my laptop"),
            ("listen", "tcp://127.0.0.1:2200,quic://[::1]:2200"),
            (
                "relays",
                "relay://10.0.0.1:22067/?id=X,dynamic+https://relays.example.org/endpoint",
            ),
            ("nat", "false"),
            ("stun", "stun.example.org:3478,[2001:db8::1]:3478"),
            ("max_watches", "5000"),
            ("index_cache_mib", "64"),
            ("api.address", "127.0.0.1:9000"),
            ("api.key", "0123456789abcdef0123"),
            ("api.metrics_without_auth", "true"),
            ("discovery.local", "false"),
            ("discovery.global", "https://127.0.0.1:8443/v2/?id=X"),
            ("transport.prefer", "quic"),
        ];
        for (k, v) in cases {
            c.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
            assert_eq!(c.get(k).expect("get"), v, "{k}");
        }
        assert_eq!(cases.len(), KEYS.len());
    }

    #[test]
    fn empty_lists_mean_none() {
        let mut c = Config::new_for("a");
        for k in ["relays", "discovery.global", "listen", "stun"] {
            c.set(k, "").expect("empty");
            assert_eq!(c.get(k).expect("get"), "");
        }
        assert!(c.relays.is_empty() && c.discovery.global.is_empty() && c.listen.is_empty());
    }

    #[test]
    fn bad_values_change_nothing() {
        let mut c = Config::new_for("a");
        let before = c.clone();
        for (k, v) in [
            ("listen", "http://x:1"),
            ("listen", "tcp://127.0.0.1"),
            ("listen", "not a url"),
            ("listen", "tcp://127.0.0.1:1,bogus"),
            ("nat", "maybe"),
            ("stun", "stun.example.org"),
            ("stun", "host:0"),
            ("stun", "::1:3478"),
            ("api.address", "localhost"),
            ("api.key", "short"),
            ("name", "  "),
            ("discovery.global", "ftp://x"),
            ("relays", "tcp://x:1"),
            ("relays", "relay://:22067"),
            ("listen", "relay://x:22067"),
            ("transport.prefer", "carrier-pigeon"),
            ("nope", "1"),
        ] {
            let e = c.set(k, v).expect_err(k);
            assert!(!e.to_string().is_empty());
            assert_eq!(c, before, "{k}={v} changed the config");
        }
        assert!(matches!(c.get("nope"), Err(ConfigError::UnknownKey(_))));
    }
}
